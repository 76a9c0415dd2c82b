//! Encodes the proto file descriptor set (with imports) for gRPC server
//! reflection, with protox (no system `protoc`).
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("..")
        .join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "switchyard/v1/config.proto",
        "switchyard/v1/sync.proto",
        "switchyard/v1/admin.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let fds = protox::compile(files.iter().map(|f| root.join(f)), [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("switchyard_descriptor.bin");
    std::fs::write(out, fds.encode_to_vec())?;
    Ok(())
}
