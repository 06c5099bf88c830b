//! Rules shared by several resources.

use std::net::IpAddr;

use crate::error::{ModelError, ModelResult};

/// Longest name, description, tag or reference Octavia accepts.
pub const MAX_STRING: usize = 255;

/// A string field of at most 255 characters.
pub fn check_len(field: &str, value: &str, max: usize) -> ModelResult<()> {
    if value.chars().count() > max {
        return Err(ModelError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Name or description: at most 255 characters, no control characters.
pub fn check_name(field: &str, value: &str) -> ModelResult<()> {
    check_len(field, value, MAX_STRING)?;
    if value.chars().any(|c| c.is_control()) {
        return Err(ModelError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Tags: each 1-255 characters, no commas (lists of tags are comma separated in filters).
pub fn check_tags(tags: &[String]) -> ModelResult<()> {
    for tag in tags {
        if tag.is_empty() {
            return Err(ModelError::invalid("tags", "a tag must not be empty"));
        }
        check_len("tags", tag, MAX_STRING)?;
        if tag.contains(',') || tag.chars().any(|c| c.is_control()) {
            return Err(ModelError::invalid(
                "tags",
                format!("tag '{tag}' must not contain commas or control characters"),
            ));
        }
    }
    Ok(())
}

/// An IPv4 or IPv6 address.
pub fn parse_ip(field: &str, value: &str) -> ModelResult<IpAddr> {
    value.parse().map_err(|_| {
        ModelError::invalid(
            field,
            format!("'{value}' is not a valid IPv4 or IPv6 address"),
        )
    })
}

/// A CIDR such as 10.0.0.0/8 (host bits are allowed and cleared, as Octavia does).
pub fn parse_cidr(field: &str, value: &str) -> ModelResult<ipnet::IpNet> {
    value
        .parse::<ipnet::IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| ModelError::invalid(field, format!("'{value}' is not a valid CIDR")))
}

/// A port number 1-65535.
pub fn check_port(field: &str, port: i32) -> ModelResult<()> {
    if !(1..=65535).contains(&port) {
        return Err(ModelError::invalid(
            field,
            format!("must be between 1 and 65535, got {port}"),
        ));
    }
    Ok(())
}

/// An integer within an inclusive range.
pub fn check_range(field: &str, value: i64, min: i64, max: i64) -> ModelResult<()> {
    if value < min || value > max {
        return Err(ModelError::invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// A field that must be empty for this configuration.
pub fn check_absent(field: &str, present: bool, why: &str) -> ModelResult<()> {
    if present {
        return Err(ModelError::invalid(field, why));
    }
    Ok(())
}

/// TLS versions a listener or pool may offer.
pub const TLS_VERSIONS: [&str; 5] = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
/// ALPN protocols a listener or pool may offer.
pub const ALPN_PROTOCOLS: [&str; 3] = ["h2", "http/1.1", "http/1.0"];

/// Every value must be one of `allowed`.
pub fn check_members_of(field: &str, values: &[String], allowed: &[&str]) -> ModelResult<()> {
    for v in values {
        if !allowed.contains(&v.as_str()) {
            return Err(ModelError::invalid(
                field,
                format!("'{v}' is not one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// OpenSSL cipher string: at most 2048 characters of `[A-Za-z0-9-+!:@=_.]`.
pub fn check_ciphers(field: &str, value: &str) -> ModelResult<()> {
    check_len(field, value, 2048)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-+!:@=_.".contains(c))
    {
        return Err(ModelError::invalid(
            field,
            "may contain only letters, digits and -+!:@=_.",
        ));
    }
    Ok(())
}
