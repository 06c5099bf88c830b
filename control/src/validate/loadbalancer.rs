//! Load balancer rules (Octavia §1.1).

use fulcrum_proto::v1::LoadBalancer;

use super::common::*;
use crate::error::{ModelError, ModelResult};

/// Field rules of a load balancer.
pub fn loadbalancer(lb: &LoadBalancer) -> ModelResult<()> {
    check_name("name", &lb.name)?;
    check_name("description", &lb.description)?;
    check_tags(&lb.tags)?;
    if lb.vip_address.is_empty() {
        return Err(ModelError::invalid(
            "vip_address",
            "VIP must contain one of: vip_address, vip_subnet_id",
        ));
    }
    parse_ip("vip_address", &lb.vip_address)?;
    if lb.project_id.is_empty() {
        return Err(ModelError::invalid("project_id", "is required"));
    }
    check_len("project_id", &lb.project_id, MAX_STRING)?;
    for (field, value) in [
        ("vip_subnet_id", &lb.vip_subnet_id),
        ("vip_network_id", &lb.vip_network_id),
        ("vip_port_id", &lb.vip_port_id),
        ("vip_qos_policy_id", &lb.vip_qos_policy_id),
        ("availability_zone", &lb.availability_zone),
    ] {
        check_len(field, value, MAX_STRING)?;
    }
    Ok(())
}
