//! Listener rules (Octavia §1.2, §2.1, §2.3).

use fulcrum_proto::v1::{ClientAuthentication, Listener, Protocol};

use super::common::*;
use crate::error::{ModelError, ModelResult};
use crate::names::protocol_name;

/// Protocols a listener may use. SCTP and PROMETHEUS are Octavia protocols Fulcrum does not
/// serve; they are refused at once rather than left to fail later.
pub const LISTENER_PROTOCOLS: [Protocol; 5] = [
    Protocol::Tcp,
    Protocol::Http,
    Protocol::Https,
    Protocol::TerminatedHttps,
    Protocol::Udp,
];

/// Headers a listener may insert, and the protocols they need.
const INSERT_HEADERS: [&str; 6] = [
    "X-Forwarded-For",
    "X-Forwarded-Port",
    "X-Forwarded-Proto",
    "X-Forwarded-IP",
    "X-Client-IP",
    "X-Real-IP",
];
const SSL_INSERT_HEADERS: [&str; 8] = [
    "X-SSL-Client-Verify",
    "X-SSL-Client-Has-Cert",
    "X-SSL-Client-DN",
    "X-SSL-Client-CN",
    "X-SSL-Issuer",
    "X-SSL-Client-SHA1",
    "X-SSL-Client-Not-Before",
    "X-SSL-Client-Not-After",
];

/// Longest timeout Octavia accepts: 24 days in milliseconds.
pub const MAX_TIMEOUT_MS: i64 = 2_073_600_000;

/// Field rules of a listener.
pub fn listener(l: &Listener) -> ModelResult<()> {
    check_name("name", &l.name)?;
    check_name("description", &l.description)?;
    check_tags(&l.tags)?;
    let protocol = Protocol::try_from(l.protocol).unwrap_or(Protocol::Unspecified);
    if protocol == Protocol::Unspecified {
        return Err(ModelError::invalid("protocol", "is required"));
    }
    if !LISTENER_PROTOCOLS.contains(&protocol) {
        return Err(ModelError::invalid(
            "protocol",
            format!(
                "{} is not a listener protocol Fulcrum supports (TCP, HTTP, HTTPS, TERMINATED_HTTPS, UDP)",
                protocol_name(protocol)
            ),
        ));
    }
    check_port("protocol_port", l.protocol_port)?;
    if l.connection_limit < -1 {
        return Err(ModelError::invalid(
            "connection_limit",
            format!("must be -1 (unlimited) or more, got {}", l.connection_limit),
        ));
    }
    for (field, value) in [
        ("timeout_client_data", l.timeout_client_data),
        ("timeout_member_connect", l.timeout_member_connect),
        ("timeout_member_data", l.timeout_member_data),
        ("timeout_tcp_inspect", l.timeout_tcp_inspect),
    ] {
        check_range(field, value.into(), 0, MAX_TIMEOUT_MS)?;
    }
    let http = matches!(protocol, Protocol::Http | Protocol::TerminatedHttps);
    let terminated = protocol == Protocol::TerminatedHttps;
    let pname = protocol_name(protocol);
    for (key, value) in &l.insert_headers {
        check_absent(
            "insert_headers",
            !http,
            &format!("insert_headers is not a valid option for a {pname} protocol listener"),
        )?;
        let ssl = SSL_INSERT_HEADERS.contains(&key.as_str());
        if !INSERT_HEADERS.contains(&key.as_str()) && !ssl {
            return Err(ModelError::invalid(
                "insert_headers",
                format!(
                    "'{key}' is not a header Fulcrum can insert; allowed: {}, {}",
                    INSERT_HEADERS.join(", "),
                    SSL_INSERT_HEADERS.join(", ")
                ),
            ));
        }
        check_absent(
            "insert_headers",
            ssl && !terminated,
            &format!("'{key}' needs a TERMINATED_HTTPS listener"),
        )?;
        check_len("insert_headers", value, MAX_STRING)?;
    }
    check_len(
        "default_tls_container_ref",
        &l.default_tls_container_ref,
        MAX_STRING,
    )?;
    for r in &l.sni_container_refs {
        check_len("sni_container_refs", r, MAX_STRING)?;
    }
    let has_cert = !l.default_tls_container_ref.is_empty() || !l.sni_container_refs.is_empty();
    let not_terminated = format!("is only valid for TERMINATED_HTTPS listeners, not {pname}");
    if terminated {
        if !has_cert {
            return Err(ModelError::invalid(
                "default_tls_container_ref",
                "a TERMINATED_HTTPS listener needs default_tls_container_ref or sni_container_refs",
            ));
        }
    } else {
        check_absent("default_tls_container_ref", has_cert, &not_terminated)?;
        check_absent(
            "client_ca_tls_container_ref",
            !l.client_ca_tls_container_ref.is_empty(),
            &not_terminated,
        )?;
        check_absent("tls_ciphers", !l.tls_ciphers.is_empty(), &not_terminated)?;
        check_absent("hsts_max_age", l.hsts_max_age.is_some(), &not_terminated)?;
    }
    let client_auth = ClientAuthentication::try_from(l.client_authentication)
        .unwrap_or(ClientAuthentication::Unspecified);
    if !matches!(
        client_auth,
        ClientAuthentication::None | ClientAuthentication::Unspecified
    ) && l.client_ca_tls_container_ref.is_empty()
    {
        return Err(ModelError::invalid(
            "client_authentication",
            "OPTIONAL or MANDATORY needs client_ca_tls_container_ref",
        ));
    }
    if !l.client_crl_container_ref.is_empty() && l.client_ca_tls_container_ref.is_empty() {
        return Err(ModelError::invalid(
            "client_crl_container_ref",
            "needs client_ca_tls_container_ref",
        ));
    }
    for cidr in &l.allowed_cidrs {
        parse_cidr("allowed_cidrs", cidr)?;
    }
    check_ciphers("tls_ciphers", &l.tls_ciphers)?;
    check_members_of("tls_versions", &l.tls_versions, &TLS_VERSIONS)?;
    check_members_of("alpn_protocols", &l.alpn_protocols, &ALPN_PROTOCOLS)?;
    if terminated && l.tls_versions.is_empty() {
        return Err(ModelError::invalid("tls_versions", "must not be empty"));
    }
    if let Some(age) = l.hsts_max_age {
        check_range("hsts_max_age", age.into(), 0, i32::MAX.into())?;
    } else if l.hsts_include_subdomains || l.hsts_preload {
        return Err(ModelError::invalid(
            "hsts_max_age",
            "hsts_include_subdomains and hsts_preload need hsts_max_age",
        ));
    }
    Ok(())
}

/// Whether a pool of protocol `pool` may serve a listener of protocol `listener` (Octavia's
/// listener/pool protocol matrix).
pub fn pool_fits_listener(listener: Protocol, pool: Protocol) -> bool {
    use Protocol::*;
    match listener {
        Http | TerminatedHttps => matches!(pool, Http | Proxy | Proxyv2),
        Https => matches!(pool, Https | Proxy | Proxyv2 | Tcp),
        Tcp => matches!(pool, Http | Https | Proxy | Proxyv2 | Tcp),
        Udp => pool == Udp,
        Sctp => pool == Sctp,
        _ => false,
    }
}
