//! L7 policy and rule rules (Octavia §1.6, §1.7).

use std::sync::OnceLock;

use fulcrum_proto::v1::{CompareType, L7Policy, L7PolicyAction, L7Rule, L7RuleType};
use regex::Regex;

use super::common::*;
use crate::error::{ModelError, ModelResult};

/// Redirect codes a policy may answer with.
const REDIRECT_CODES: [i32; 5] = [301, 302, 303, 307, 308];

/// Field rules of an L7 policy (after Octavia's sanitising of the action).
pub fn l7policy(p: &L7Policy) -> ModelResult<()> {
    check_name("name", &p.name)?;
    check_name("description", &p.description)?;
    check_tags(&p.tags)?;
    check_range("position", p.position.into(), 1, i32::MAX.into())?;
    let action = L7PolicyAction::try_from(p.action).unwrap_or(L7PolicyAction::Unspecified);
    let (pool, url, prefix) = (
        !p.redirect_pool_id.is_empty(),
        !p.redirect_url.is_empty(),
        !p.redirect_prefix.is_empty(),
    );
    let code_allowed = match action {
        L7PolicyAction::Unspecified => {
            return Err(ModelError::invalid(
                "action",
                "is required: REJECT, REDIRECT_TO_URL, REDIRECT_TO_POOL or REDIRECT_PREFIX",
            ))
        }
        L7PolicyAction::Reject => {
            check_absent("redirect_pool_id", pool, "is not valid with action REJECT")?;
            check_absent("redirect_url", url, "is not valid with action REJECT")?;
            check_absent("redirect_prefix", prefix, "is not valid with action REJECT")?;
            false
        }
        L7PolicyAction::RedirectToPool => {
            if !pool {
                return Err(ModelError::invalid(
                    "redirect_pool_id",
                    "is required with action REDIRECT_TO_POOL",
                ));
            }
            check_absent(
                "redirect_url",
                url,
                "is not valid with action REDIRECT_TO_POOL",
            )?;
            check_absent(
                "redirect_prefix",
                prefix,
                "is not valid with action REDIRECT_TO_POOL",
            )?;
            false
        }
        L7PolicyAction::RedirectToUrl => {
            if !url {
                return Err(ModelError::invalid(
                    "redirect_url",
                    "is required with action REDIRECT_TO_URL",
                ));
            }
            check_absent(
                "redirect_pool_id",
                pool,
                "is not valid with action REDIRECT_TO_URL",
            )?;
            check_absent(
                "redirect_prefix",
                prefix,
                "is not valid with action REDIRECT_TO_URL",
            )?;
            check_url("redirect_url", &p.redirect_url)?;
            true
        }
        L7PolicyAction::RedirectPrefix => {
            if !prefix {
                return Err(ModelError::invalid(
                    "redirect_prefix",
                    "is required with action REDIRECT_PREFIX",
                ));
            }
            check_absent(
                "redirect_pool_id",
                pool,
                "is not valid with action REDIRECT_PREFIX",
            )?;
            check_absent(
                "redirect_url",
                url,
                "is not valid with action REDIRECT_PREFIX",
            )?;
            check_url("redirect_prefix", &p.redirect_prefix)?;
            true
        }
    };
    if code_allowed {
        if !REDIRECT_CODES.contains(&p.redirect_http_code) {
            return Err(ModelError::invalid(
                "redirect_http_code",
                format!(
                    "must be one of 301, 302, 303, 307, 308, got {}",
                    p.redirect_http_code
                ),
            ));
        }
    } else {
        check_absent(
            "redirect_http_code",
            p.redirect_http_code != 0,
            "is only valid with REDIRECT_TO_URL and REDIRECT_PREFIX",
        )?;
    }
    Ok(())
}

/// An absolute http(s) URL with a host and no spaces or control characters.
fn check_url(field: &str, url: &str) -> ModelResult<()> {
    check_len(field, url, MAX_STRING)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    if host.is_none_or(str::is_empty) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ModelError::invalid(
            field,
            format!("'{url}' must be an http or https URL with a host, without spaces"),
        ));
    }
    Ok(())
}

fn regex_of(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

fn header_name_ok(key: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex_of(&RE, r"\A[a-zA-Z0-9!#$%&'*+\-.^_`|~]+\z").is_match(key)
}

fn header_value_ok(value: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    static QUOTED: OnceLock<Regex> = OnceLock::new();
    regex_of(
        &RE,
        r##"\A[a-zA-Z0-9!"#$%&'()*+,\-./:;<=>?@\[\]^_`{|}~\\]+\z"##,
    )
    .is_match(value)
        || regex_of(&QUOTED, r#"\A"[^"\r\n]*"\z"#).is_match(value)
}

fn cookie_value_ok(value: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    regex_of(&RE, r"\A[a-zA-Z0-9!#$%&'()*+\-./:<=>?@\[\]^_`{|}~]+\z").is_match(value)
}

/// Field rules of an L7 rule (Octavia's per-type table).
pub fn l7rule(r: &L7Rule) -> ModelResult<()> {
    check_tags(&r.tags)?;
    let kind = L7RuleType::try_from(r.r#type).unwrap_or(L7RuleType::Unspecified);
    let compare = CompareType::try_from(r.compare_type).unwrap_or(CompareType::Unspecified);
    if kind == L7RuleType::Unspecified {
        return Err(ModelError::invalid(
            "type",
            "is required: HOST_NAME, PATH, FILE_TYPE, HEADER or COOKIE",
        ));
    }
    if compare == CompareType::Unspecified {
        return Err(ModelError::invalid(
            "compare_type",
            "is required: REGEX, STARTS_WITH, ENDS_WITH, CONTAINS or EQUAL_TO",
        ));
    }
    if r.value.is_empty() {
        return Err(ModelError::invalid("value", "is required"));
    }
    check_len("value", &r.value, MAX_STRING)?;
    check_len("key", &r.key, MAX_STRING)?;
    for (field, v) in [("value", &r.value), ("key", &r.key)] {
        if v.contains(['\r', '\n']) {
            return Err(ModelError::invalid(field, "must not contain CR or LF"));
        }
    }
    let regex = compare == CompareType::Regex;
    if regex {
        Regex::new(&r.value).map_err(|e| {
            ModelError::invalid("value", format!("'{}' is not a valid regex: {e}", r.value))
        })?;
    }
    match kind {
        L7RuleType::HostName | L7RuleType::Path | L7RuleType::FileType => {
            if kind == L7RuleType::FileType
                && !matches!(compare, CompareType::Regex | CompareType::EqualTo)
            {
                return Err(ModelError::invalid(
                    "compare_type",
                    "FILE_TYPE rules accept only REGEX and EQUAL_TO",
                ));
            }
            if !regex && !header_value_ok(&r.value) {
                return Err(ModelError::invalid(
                    "value",
                    format!("'{}' contains characters not allowed in this rule (quote values with spaces)", r.value),
                ));
            }
        }
        L7RuleType::Header | L7RuleType::Cookie => {
            let kind_name = if kind == L7RuleType::Header {
                "HEADER"
            } else {
                "COOKIE"
            };
            if r.key.is_empty() {
                return Err(ModelError::invalid(
                    "key",
                    format!("is required for {kind_name} rules"),
                ));
            }
            if !header_name_ok(&r.key) {
                return Err(ModelError::invalid(
                    "key",
                    format!(
                        "'{}' is not a valid {} name",
                        r.key,
                        kind_name.to_lowercase()
                    ),
                ));
            }
            let ok = regex
                || if kind == L7RuleType::Header {
                    header_value_ok(&r.value)
                } else {
                    cookie_value_ok(&r.value)
                };
            if !ok {
                return Err(ModelError::invalid(
                    "value",
                    format!(
                        "'{}' is not a valid {} value",
                        r.value,
                        kind_name.to_lowercase()
                    ),
                ));
            }
        }
        L7RuleType::SslConnHasCert
        | L7RuleType::SslVerifyResult
        | L7RuleType::SslDnField
        | L7RuleType::Unspecified => {
            return Err(ModelError::invalid(
                "type",
                "SSL_* rules need TLS-terminating listeners, which Fulcrum does not offer yet",
            ))
        }
    }
    Ok(())
}
