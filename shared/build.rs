//! Compiles `proto/` with protox (pure Rust), so no system `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("..")
        .join("proto");
    // Rerun on any change below proto/, including new files.
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
    tonic_prost_build::configure()
        // Hand-written so a whole snapshot can carry its config pre-encoded.
        .extern_path(".switchyard.v1.Snapshot", "crate::wire::Snapshot")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
