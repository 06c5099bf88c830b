//! Fulcrum's admin API (package `fulcrum.v1`): generated messages, clients and servers, the
//! replicated command format (package `fulcrum.internal.v1`), and the file descriptor set that
//! the server registers for gRPC reflection.

/// Generated code, nested as the proto packages are.
#[allow(clippy::all, missing_docs)]
pub mod fulcrum {
    /// The public admin API, package `fulcrum.v1`.
    pub mod v1 {
        tonic::include_proto!("fulcrum.v1");
    }
    /// Replicated commands, package `fulcrum.internal.v1`.
    pub mod internal {
        pub mod v1 {
            tonic::include_proto!("fulcrum.internal.v1");
        }
    }
}

pub use fulcrum::internal::v1 as internal;
pub use fulcrum::v1;

/// Encoded `FileDescriptorSet` of the public API files, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fulcrum_descriptor.bin"));
