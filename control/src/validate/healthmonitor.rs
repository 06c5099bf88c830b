//! Health monitor rules (Octavia §1.5, §2.2).

use fulcrum_proto::v1::{HealthMonitor, HealthMonitorType, HttpMethod, Protocol};
use std::sync::OnceLock;

use super::common::*;
use crate::error::{ModelError, ModelResult};

/// Field rules of a health monitor.
pub fn healthmonitor(hm: &HealthMonitor) -> ModelResult<()> {
    check_name("name", &hm.name)?;
    check_tags(&hm.tags)?;
    let kind = HealthMonitorType::try_from(hm.r#type).unwrap_or(HealthMonitorType::Unspecified);
    if kind == HealthMonitorType::Unspecified {
        return Err(ModelError::invalid(
            "type",
            "is required: HTTP, HTTPS, PING, TCP, TLS-HELLO or UDP-CONNECT",
        ));
    }
    if kind == HealthMonitorType::Sctp {
        return Err(ModelError::invalid(
            "type",
            "SCTP monitors are not supported by Fulcrum",
        ));
    }
    let min_delay = if kind == HealthMonitorType::UdpConnect {
        3
    } else {
        1
    };
    check_range("delay", hm.delay.into(), min_delay, 86_400)?;
    check_range("timeout", hm.timeout.into(), 1, 86_400)?;
    check_range("max_retries", hm.max_retries.into(), 1, 10)?;
    check_range("max_retries_down", hm.max_retries_down.into(), 1, 10)?;
    let http = matches!(kind, HealthMonitorType::Http | HealthMonitorType::Https);
    let not_http = "is only valid for HTTP and HTTPS monitors";
    if !http {
        check_absent(
            "http_method",
            HttpMethod::try_from(hm.http_method).is_ok_and(|m| m != HttpMethod::Unspecified),
            not_http,
        )?;
        check_absent("url_path", !hm.url_path.is_empty(), not_http)?;
        check_absent("expected_codes", !hm.expected_codes.is_empty(), not_http)?;
        check_absent("http_version", hm.http_version != 0.0, not_http)?;
        check_absent("domain_name", !hm.domain_name.is_empty(), not_http)?;
        return Ok(());
    }
    check_url_path(&hm.url_path)?;
    check_expected_codes(&hm.expected_codes)?;
    if hm.http_version != 0.0 && hm.http_version != 1.0 && hm.http_version != 1.1 {
        return Err(ModelError::invalid(
            "http_version",
            format!("must be 1.0 or 1.1, got {}", hm.http_version),
        ));
    }
    if !hm.domain_name.is_empty() {
        static DOMAIN: OnceLock<regex::Regex> = OnceLock::new();
        let re = DOMAIN.get_or_init(|| {
            regex::Regex::new(
                r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$",
            )
            .expect("static regex")
        });
        if hm.domain_name.len() > 255 || !re.is_match(&hm.domain_name) {
            return Err(ModelError::invalid(
                "domain_name",
                format!("'{}' is not a valid domain name", hm.domain_name),
            ));
        }
        if hm.http_version != 1.1 {
            return Err(ModelError::invalid("domain_name", "needs http_version 1.1"));
        }
    }
    Ok(())
}

fn check_url_path(path: &str) -> ModelResult<()> {
    if !path.starts_with('/')
        || path.starts_with("//")
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ModelError::invalid(
            "url_path",
            format!("'{path}' must be a path starting with '/', without spaces, scheme or host"),
        ));
    }
    check_len("url_path", path, 2048)
}

/// `200`, `200,202` or `200-204`.
fn check_expected_codes(codes: &str) -> ModelResult<()> {
    static CODES: OnceLock<regex::Regex> = OnceLock::new();
    let re = CODES.get_or_init(|| {
        regex::Regex::new(r"^(\d{3}(\s*,\s*\d{3})*)$|^(\d{3}-\d{3})$").expect("static regex")
    });
    if !re.is_match(codes) {
        return Err(ModelError::invalid(
            "expected_codes",
            format!("'{codes}' must be a code (200), a list (200,202) or a range (200-204)"),
        ));
    }
    if let Some((lo, hi)) = codes.split_once('-') {
        if lo > hi {
            return Err(ModelError::invalid(
                "expected_codes",
                format!("range '{codes}' is empty"),
            ));
        }
    }
    Ok(())
}

/// Whether a monitor type can check members of a pool of this protocol (Octavia §2.2).
pub fn healthmonitor_fits_pool(kind: HealthMonitorType, pool: Protocol) -> bool {
    use HealthMonitorType as T;
    match pool {
        Protocol::Udp => matches!(kind, T::Http | T::Tcp | T::UdpConnect),
        _ => matches!(kind, T::Http | T::Https | T::Ping | T::Tcp | T::TlsHello),
    }
}
