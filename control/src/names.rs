//! Octavia's spelling of the API's enums (PROTOCOL_TCP -> TCP, HEALTH_MONITOR_TYPE_TLS_HELLO ->
//! TLS-HELLO), for messages.

use fulcrum_proto::v1::{HealthMonitorType, Protocol};

/// "TCP", "HTTP", "PROXYV2", ...
pub fn protocol_name(p: Protocol) -> &'static str {
    p.as_str_name().trim_start_matches("PROTOCOL_")
}

/// "HTTP", "TLS-HELLO", "UDP-CONNECT", ...
pub fn healthmonitor_type_name(t: HealthMonitorType) -> String {
    t.as_str_name()
        .trim_start_matches("HEALTH_MONITOR_TYPE_")
        .replace('_', "-")
}
