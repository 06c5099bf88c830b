//! Multi-node fault tests for Fulcrum (network namespaces). Harness to come with the HA issue.
