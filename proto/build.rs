//! Compiles the admin API .proto files (and the internal replicated-command file) with protox,
//! so no system protoc is needed, and writes the descriptor set that gRPC reflection serves.
use std::path::{Path, PathBuf};

fn protos(dir: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    Ok(files)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = protos("fulcrum/v1")?;
    files.extend(protos("fulcrum/internal/v1")?);
    let fds = protox::compile(&files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection serves only the public API.
    let mut public = fds.clone();
    public.file.retain(|f| f.package() == "fulcrum.v1");
    std::fs::write(
        Path::new(&out).join("fulcrum_descriptor.bin"),
        prost::Message::encode_to_vec(&public),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=fulcrum");
    Ok(())
}
