//! Fulcrum's admin API (package `fulcrum.v1`): generated messages, clients and servers, and the
//! file descriptor set that the server registers for gRPC reflection.

#![allow(clippy::all, missing_docs)]

/// Generated code for package `fulcrum.v1`.
pub mod v1 {
    tonic::include_proto!("fulcrum.v1");
}

/// Encoded `FileDescriptorSet` of every admin API file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fulcrum_descriptor.bin"));
