//! Compiles proto/relief/v1 with protox (pure Rust, no protoc) and generates prost messages
//! and tonic stubs, plus the descriptor set served by gRPC reflection. The stubs use
//! relief-wire's codec (`crate::Codec`), which checks each request against that descriptor
//! set before decoding it and needs each message's `prost::Name` to find it there.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("relief/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("relief_descriptor.bin"), fds.encode_to_vec())?;
    let mut prost = prost_build::Config::new();
    prost.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::Codec")
        .compile_fds_with_config(fds, prost)?;
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    Ok(())
}
