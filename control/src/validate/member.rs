//! Member rules (Octavia §1.4).

use fulcrum_proto::v1::Member;

use super::common::*;
use crate::error::{ModelError, ModelResult};

/// Addresses no member may use (the cloud metadata address, as Octavia reserves it).
const RESERVED_IPS: [&str; 1] = ["169.254.169.254"];

/// Field rules of a member.
pub fn member(m: &Member) -> ModelResult<()> {
    check_name("name", &m.name)?;
    check_tags(&m.tags)?;
    if m.address.is_empty() {
        return Err(ModelError::invalid("address", "is required"));
    }
    let address = parse_ip("address", &m.address)?;
    if RESERVED_IPS.iter().any(|r| r.parse() == Ok(address)) {
        return Err(ModelError::invalid(
            "address",
            format!("{address} is a reserved address and cannot be a member"),
        ));
    }
    check_port("protocol_port", m.protocol_port)?;
    check_range("weight", m.weight.into(), 0, 256)?;
    if !m.monitor_address.is_empty() {
        parse_ip("monitor_address", &m.monitor_address)?;
    }
    if let Some(port) = m.monitor_port {
        check_port("monitor_port", port)?;
    }
    check_len("subnet_id", &m.subnet_id, MAX_STRING)?;
    Ok(())
}
