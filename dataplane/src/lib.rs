//! Fulcrum data plane.
