//! The values the `method` and `district` labels may take. Every value of a label is a series
//! of its own in the metrics, kept for the life of the process, and both come from the caller
//! (the request path, the token's or header's district): left open, a caller could grow the
//! metrics without bound. Anything not known here is counted as [`OTHER`].

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prost::Message as _;

/// The label value of every method and district not known.
pub const OTHER: &str = "other";
/// The district label of calls with no district: unauthenticated ones, reflection.
pub const NO_DISTRICT: &str = "-";
/// The district label of city-wide calls.
pub const CITY: &str = "city";

/// The reflection services' one method each, served by the backends and forwarded by the
/// gateway; their descriptor sets are not needed to name them.
const REFLECTION_METHODS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The known methods and districts of one server. Cheap to clone; the districts are shared,
/// so a district created after start-up is added where every clone sees it.
#[derive(Debug, Clone, Default)]
pub struct KnownLabels {
    methods: Arc<HashSet<String>>,
    districts: Arc<RwLock<HashSet<String>>>,
}

impl KnownLabels {
    /// Every method of relief's services, the health service and reflection; no district yet.
    pub fn relief() -> anyhow::Result<Self> {
        let mut methods: HashSet<String> =
            REFLECTION_METHODS.iter().map(|m| (*m).to_owned()).collect();
        for set in [
            relief_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            methods.extend(method_paths(set)?);
        }
        Ok(Self {
            methods: Arc::new(methods),
            districts: Arc::default(),
        })
    }

    /// Adds districts to the known ones.
    pub fn add_districts<I, S>(&self, districts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if let Ok(mut known) = self.districts.write() {
            for d in districts {
                if !known.contains(d.as_ref()) {
                    known.insert(d.as_ref().to_owned());
                }
            }
        }
    }

    /// The label of a method path.
    pub(crate) fn method<'a>(&self, path: &'a str) -> &'a str {
        if self.methods.contains(path) {
            path
        } else {
            OTHER
        }
    }

    /// The label of a district code (or `city`, or `-`).
    pub(crate) fn district<'a>(&self, district: &'a str) -> &'a str {
        let known = district == CITY
            || district == NO_DISTRICT
            || self
                .districts
                .read()
                .map(|d| d.contains(district))
                .unwrap_or(false);
        if known { district } else { OTHER }
    }
}

/// `/package.Service/Method` of every method in an encoded descriptor set.
fn method_paths(encoded: &[u8]) -> anyhow::Result<Vec<String>> {
    let set = prost_types::FileDescriptorSet::decode(encoded)?;
    let mut paths = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let service_name = if package.is_empty() {
                    service.name().to_owned()
                } else {
                    format!("{package}.{}", service.name())
                };
                paths.push(format!("/{service_name}/{}", method.name()));
            }
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_known_values_are_labels() {
        let known = KnownLabels::relief().unwrap();
        known.add_districts(["430112"]);
        let cases = [
            (
                "/relief.v1.CaseService/GetCase",
                "/relief.v1.CaseService/GetCase",
            ),
            (
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Check",
            ),
            (REFLECTION_METHODS[0], REFLECTION_METHODS[0]),
            ("/relief.v1.CaseService/NoSuchCall", OTHER),
            ("/anything/else", OTHER),
        ];
        for (path, label) in cases {
            assert_eq!(known.method(path), label, "{path}");
        }
        let cases = [
            ("430112", "430112"),
            ("430113", OTHER),
            (CITY, CITY),
            (NO_DISTRICT, NO_DISTRICT),
        ];
        for (district, label) in cases {
            assert_eq!(known.district(district), label, "{district}");
        }
        // A clone shares the districts.
        known.clone().add_districts(["430113"]);
        assert_eq!(known.district("430113"), "430113");
    }
}
