//! The wire contract, generated from `proto/relief/v1`. Only the API edge and clients use
//! these types; the domain converts to and from them at the boundary.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("relief.v1");
}

/// The encoded descriptor set of every relief proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/relief_descriptor.bin"));
