//! Fulcrum control plane.
