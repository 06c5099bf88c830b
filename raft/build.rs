//! Compiles raft/proto/raft.proto (package `fulcrum.raft.v1`) with protox, so no system
//! `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [PathBuf::from("proto/raft.proto")];
    let fds = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
