//! Rules versions, kept in memory once read: a version is written once and never changed,
//! so every replica may keep what it has read without asking the database again.

use std::collections::HashMap;
use std::sync::RwLock;

use relief_domain::DistrictId;

use crate::records::RulesVersionRecord;

/// At most this many versions are kept; past it the cache starts over.
const KEPT: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct RulesVersions(RwLock<HashMap<(String, i64), RulesVersionRecord>>);

impl RulesVersions {
    pub(crate) fn get(&self, district: &DistrictId, version: i64) -> Option<RulesVersionRecord> {
        let kept = self.0.read().ok()?;
        kept.get(&(district.as_str().to_owned(), version)).cloned()
    }

    /// Keeps a version read outside any write: one a write has inserted is kept only once
    /// it was committed and read again.
    pub(crate) fn put(&self, record: &RulesVersionRecord) {
        if let Ok(mut kept) = self.0.write() {
            if kept.len() >= KEPT {
                kept.clear();
            }
            kept.insert(
                (record.district_id.as_str().to_owned(), record.version),
                record.clone(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Utc;
    use relief_domain::defaults::seed_rules;

    fn record(district: &str, version: i64) -> RulesVersionRecord {
        RulesVersionRecord {
            district_id: DistrictId::parse(district).unwrap(),
            version,
            rules: seed_rules(2025),
            created_by: "admin".to_owned(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn keeps_by_district_and_version_and_stays_bounded() {
        let cache = RulesVersions::default();
        let a = DistrictId::parse("430102").unwrap();
        let b = DistrictId::parse("430103").unwrap();
        cache.put(&record("430102", 1));
        assert_eq!(cache.get(&a, 1).map(|r| r.version), Some(1));
        assert!(cache.get(&a, 2).is_none());
        assert!(cache.get(&b, 1).is_none());
        for v in 2..=(KEPT as i64 + 1) {
            cache.put(&record("430102", v));
        }
        assert!(cache.0.read().unwrap().len() <= KEPT);
    }
}
