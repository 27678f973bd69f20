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
    std::fs::write(out.join("rpcs.rs"), rpc_impls(&fds))?;
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

/// `impl Rpc` for each unary method's request type, read off the descriptors: the method's
/// service and name and its response type, so that no handler types a method name by hand.
fn rpc_impls(fds: &prost_types::FileDescriptorSet) -> String {
    let rust_type = |proto: &str| -> Option<String> {
        proto
            .strip_prefix(".relief.v1.")
            .map(|name| format!("v1::{name}"))
    };
    let mut uses = std::collections::HashMap::<String, usize>::new();
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                *uses.entry(method.input_type().to_owned()).or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    for file in &fds.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    continue;
                }
                let (Some(request), Some(response)) = (
                    rust_type(method.input_type()),
                    rust_type(method.output_type()),
                ) else {
                    continue;
                };
                if uses.get(method.input_type()) != Some(&1) {
                    continue;
                }
                out.push_str(&format!(
                    "impl crate::Rpc for {request} {{\n    const SERVICE: &'static str = \"{package}.{service}\";\n    const METHOD: &'static str = \"{method}\";\n    type Response = {response};\n}}\n",
                    service = service.name(),
                    method = method.name(),
                ));
            }
        }
    }
    out
}
