//! The audit trail's hash chain: each district's events are linked by a SHA-256 over the
//! previous event's hash and this event's fields, so editing or removing any stored event is
//! detectable by recomputing the chain.

use sha2::{Digest, Sha256};

/// The hash that precedes a district's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of one event that the chain protects, exactly as stored.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub district_id: &'a str,
    pub seq: i64,
    pub occurred_at_us: i64,
    pub actor_subject: &'a str,
    pub actor_name: &'a str,
    pub actor_role: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub request_id: Option<&'a str>,
    /// The person's written opinion or reason, where the action has one.
    pub note: Option<&'a str>,
    pub before_json: Option<&'a str>,
    pub after_json: Option<&'a str>,
}

/// The hash of an event given its predecessor's. Every field is length-prefixed so no two
/// different events encode to the same bytes.
pub fn chain_hash(prev_hash: &str, e: &EventFields<'_>) -> String {
    let mut h = Sha256::new();
    let mut put = |s: Option<&str>| match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
    };
    put(Some(prev_hash));
    put(Some(e.district_id));
    put(Some(&e.seq.to_string()));
    put(Some(&e.occurred_at_us.to_string()));
    put(Some(e.actor_subject));
    put(Some(e.actor_name));
    put(Some(e.actor_role));
    put(e.on_behalf_of);
    put(Some(e.action));
    put(Some(e.resource_type));
    put(Some(e.resource_id));
    put(e.request_id);
    put(e.note);
    put(e.before_json);
    put(e.after_json);
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Where a recomputed chain first disagrees with what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: &'static str,
}

/// A stored event as the verifier sees it.
pub trait StoredEvent {
    fn fields(&self) -> EventFields<'_>;
    fn prev_hash(&self) -> &str;
    fn hash(&self) -> &str;
}

/// Walks events in sequence order and returns the first that does not match.
pub fn verify_chain<'a, E: StoredEvent + 'a>(
    events: impl IntoIterator<Item = &'a E>,
) -> Result<u64, ChainBreak> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut count = 0;
    for (expected_seq, e) in (1..).zip(events) {
        let f = e.fields();
        if f.seq != expected_seq {
            return Err(ChainBreak {
                seq: f.seq,
                reason: "sequence gap: an event is missing",
            });
        }
        if e.prev_hash() != prev {
            return Err(ChainBreak {
                seq: f.seq,
                reason: "does not link to the previous event",
            });
        }
        let h = chain_hash(&prev, &f);
        if h != e.hash() {
            return Err(ChainBreak {
                seq: f.seq,
                reason: "content does not match its hash",
            });
        }
        prev = h;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E {
        seq: i64,
        action: String,
        prev: String,
        hash: String,
    }

    impl StoredEvent for E {
        fn fields(&self) -> EventFields<'_> {
            EventFields {
                district_id: "430112",
                seq: self.seq,
                occurred_at_us: 1,
                actor_subject: "u",
                actor_name: "n",
                actor_role: "case_officer",
                on_behalf_of: None,
                action: &self.action,
                resource_type: "case",
                resource_id: "c",
                request_id: None,
                note: None,
                before_json: None,
                after_json: Some("{}"),
            }
        }
        fn prev_hash(&self) -> &str {
            &self.prev
        }
        fn hash(&self) -> &str {
            &self.hash
        }
    }

    fn chain(n: i64) -> Vec<E> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = E {
                    seq,
                    action: format!("a{seq}"),
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = chain_hash(&prev, &e.fields());
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn detects_every_kind_of_tampering() {
        assert_eq!(verify_chain(&chain(5)), Ok(5));
        assert_eq!(verify_chain(&Vec::<E>::new()), Ok(0));

        let mut edited = chain(5);
        edited[2].action = "forged".into();
        assert_eq!(verify_chain(&edited).map_err(|b| b.seq), Err(3));

        let mut removed = chain(5);
        removed.remove(1);
        assert_eq!(verify_chain(&removed).map_err(|b| b.seq), Err(3));

        let mut relinked = chain(5);
        relinked[4].prev = GENESIS_HASH.into();
        assert_eq!(verify_chain(&relinked).map_err(|b| b.seq), Err(5));
    }

    #[test]
    fn optional_fields_are_not_ambiguous() {
        let mut a = chain(1).remove(0);
        let base = chain_hash(GENESIS_HASH, &a.fields());
        a.action = String::new();
        assert_ne!(chain_hash(GENESIS_HASH, &a.fields()), base);
    }
}
