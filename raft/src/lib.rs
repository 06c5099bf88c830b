//! Raft replication for Fulcrum (openraft over gRPC, RocksDB storage).
