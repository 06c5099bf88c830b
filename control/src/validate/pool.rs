//! Pool rules (Octavia §1.3).

use fulcrum_proto::v1::{LbAlgorithm, Pool, Protocol, SessionPersistenceType};

use super::common::*;
use crate::error::{ModelError, ModelResult};
use crate::names::protocol_name;

/// Protocols a pool may use (SCTP is refused: Fulcrum does not serve it).
const POOL_PROTOCOLS: [Protocol; 6] = [
    Protocol::Tcp,
    Protocol::Http,
    Protocol::Https,
    Protocol::Proxy,
    Protocol::Proxyv2,
    Protocol::Udp,
];

/// Field rules of a pool.
pub fn pool(p: &Pool) -> ModelResult<()> {
    check_name("name", &p.name)?;
    check_name("description", &p.description)?;
    check_tags(&p.tags)?;
    let protocol = Protocol::try_from(p.protocol).unwrap_or(Protocol::Unspecified);
    if protocol == Protocol::Unspecified {
        return Err(ModelError::invalid("protocol", "is required"));
    }
    if !POOL_PROTOCOLS.contains(&protocol) {
        return Err(ModelError::invalid(
            "protocol",
            format!(
                "{} is not a pool protocol Fulcrum supports (TCP, HTTP, HTTPS, PROXY, PROXYV2, UDP)",
                protocol_name(protocol)
            ),
        ));
    }
    let algorithm = LbAlgorithm::try_from(p.lb_algorithm).unwrap_or(LbAlgorithm::Unspecified);
    if algorithm == LbAlgorithm::Unspecified {
        return Err(ModelError::invalid(
            "lb_algorithm",
            "is required: ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP or SOURCE_IP_PORT",
        ));
    }
    if let Some(sp) = &p.session_persistence {
        let kind = SessionPersistenceType::try_from(sp.r#type)
            .unwrap_or(SessionPersistenceType::Unspecified);
        let udp = protocol == Protocol::Udp;
        match kind {
            SessionPersistenceType::Unspecified => {
                return Err(ModelError::invalid(
                    "session_persistence.type",
                    "is required: SOURCE_IP, HTTP_COOKIE or APP_COOKIE",
                ))
            }
            SessionPersistenceType::HttpCookie | SessionPersistenceType::AppCookie if udp => {
                return Err(ModelError::invalid(
                    "session_persistence.type",
                    "UDP pools support only SOURCE_IP persistence",
                ))
            }
            _ => {}
        }
        if kind == SessionPersistenceType::AppCookie {
            if sp.cookie_name.is_empty() {
                return Err(ModelError::invalid(
                    "session_persistence.cookie_name",
                    "is required for APP_COOKIE persistence",
                ));
            }
            check_len(
                "session_persistence.cookie_name",
                &sp.cookie_name,
                MAX_STRING,
            )?;
            if !sp.cookie_name.bytes().all(is_cookie_name_byte) {
                return Err(ModelError::invalid(
                    "session_persistence.cookie_name",
                    "must be a cookie token: no spaces, control characters or ()<>@,;:\\\"/[]?={}",
                ));
            }
        } else if !sp.cookie_name.is_empty() {
            return Err(ModelError::invalid(
                "session_persistence.cookie_name",
                "is only valid with APP_COOKIE persistence",
            ));
        }
        if !udp {
            check_absent(
                "session_persistence.persistence_timeout",
                sp.persistence_timeout.is_some(),
                "is only valid for UDP pools",
            )?;
            check_absent(
                "session_persistence.persistence_granularity",
                !sp.persistence_granularity.is_empty(),
                "is only valid for UDP pools",
            )?;
        }
        if let Some(t) = sp.persistence_timeout {
            check_range(
                "session_persistence.persistence_timeout",
                t.into(),
                0,
                i32::MAX.into(),
            )?;
        }
        if !sp.persistence_granularity.is_empty() {
            let mask = parse_ip(
                "session_persistence.persistence_granularity",
                &sp.persistence_granularity,
            )?;
            if !is_netmask(mask) {
                return Err(ModelError::invalid(
                    "session_persistence.persistence_granularity",
                    format!("'{}' is not a netmask", sp.persistence_granularity),
                ));
            }
        }
    }
    for (field, value) in [
        ("tls_container_ref", &p.tls_container_ref),
        ("ca_tls_container_ref", &p.ca_tls_container_ref),
        ("crl_container_ref", &p.crl_container_ref),
    ] {
        check_len(field, value, MAX_STRING)?;
    }
    if !p.crl_container_ref.is_empty() && p.ca_tls_container_ref.is_empty() {
        return Err(ModelError::invalid(
            "crl_container_ref",
            "needs ca_tls_container_ref",
        ));
    }
    check_ciphers("tls_ciphers", &p.tls_ciphers)?;
    check_members_of("tls_versions", &p.tls_versions, &TLS_VERSIONS)?;
    check_members_of("alpn_protocols", &p.alpn_protocols, &ALPN_PROTOCOLS)?;
    Ok(())
}

fn is_cookie_name_byte(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"\"(),/:;<=>?@[\\]{}".contains(&b)
}

fn is_netmask(mask: std::net::IpAddr) -> bool {
    let bits: u128 = match mask {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    bits.leading_ones() + bits.trailing_zeros() >= 128
}
