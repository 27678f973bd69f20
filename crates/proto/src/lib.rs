//! The wire contract, generated from `proto/relief/v1`. Only the API edge and clients use
//! these types; the domain converts to and from them at the boundary. Besides the generated
//! code there is the binding of relief-wire's codec to this contract's descriptor set, and
//! what the backends and the gateway both do with the wire types: page tokens
//! ([`paging`]) and the city's row of the district comparison ([`comparison`]).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("relief.v1");
}

/// The `domain` of the `google.rpc.ErrorInfo` every relief error carries.
pub const ERROR_DOMAIN: &str = relief_wire::status::ERROR_DOMAIN;

impl v1::ErrorReason {
    /// What `google.rpc.ErrorInfo.reason` carries for this value: its name without the
    /// `ERROR_REASON_` prefix (`ERROR_REASON_CASE_STATE` is `"CASE_STATE"`).
    pub fn reason(self) -> &'static str {
        let name = self.as_str_name();
        name.strip_prefix("ERROR_REASON_").unwrap_or(name)
    }

    /// The value whose [`reason`](Self::reason) is `reason`, if any.
    pub fn from_reason(reason: &str) -> Option<Self> {
        if reason.is_empty() || reason == "UNSPECIFIED" {
            return None;
        }
        Self::from_str_name(&format!("ERROR_REASON_{reason}"))
    }
}

pub mod comparison;
pub mod paging;

/// A unary RPC, known by its request type: the service and method it is sent to and what it
/// answers. Implemented for every unary method of the contract by code generated from the
/// descriptors.
pub trait Rpc: prost::Message + Default {
    /// The service's full name, e.g. `relief.v1.CaseService`.
    const SERVICE: &'static str;
    /// The method's name within its service, e.g. `CreateCase`.
    const METHOD: &'static str;
    /// The method's response.
    type Response: prost::Message + Default;
}

include!(concat!(env!("OUT_DIR"), "/rpcs.rs"));

/// The encoded descriptor set of every relief proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/relief_descriptor.bin"));

/// relief's contract, as relief-wire's codec checks requests against it.
#[derive(Debug, Clone, Copy)]
pub struct Contract;

impl relief_wire::Contract for Contract {
    fn schema() -> Result<&'static relief_wire::Schema, &'static relief_wire::SchemaError> {
        static SCHEMA: std::sync::OnceLock<Result<relief_wire::Schema, relief_wire::SchemaError>> =
            std::sync::OnceLock::new();
        relief_wire::schema_once(&SCHEMA, FILE_DESCRIPTOR_SET)
    }
}

/// The codec of every generated service and client: requests of this contract are checked
/// on the wire before they are decoded.
pub type Codec<T, U> = relief_wire::WireCodec<T, U, Contract>;
