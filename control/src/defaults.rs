//! Octavia's defaults for fields a request leaves out, in one place so create, update's
//! `unset` and the API agree.

use fulcrum_proto::v1::{L7Policy, L7PolicyAction, Protocol};

/// Listener connection limit: unlimited.
pub const CONNECTION_LIMIT: i32 = -1;
/// Listener timeouts in milliseconds.
pub const TIMEOUT_CLIENT_DATA: i32 = 50_000;
pub const TIMEOUT_MEMBER_CONNECT: i32 = 5_000;
pub const TIMEOUT_MEMBER_DATA: i32 = 50_000;
pub const TIMEOUT_TCP_INSPECT: i32 = 0;
/// Member weight.
pub const WEIGHT: i32 = 1;
/// Health monitor failures before a member goes ERROR.
pub const MAX_RETRIES_DOWN: i32 = 3;
/// HTTP health monitor request path and accepted codes.
pub const URL_PATH: &str = "/";
pub const EXPECTED_CODES: &str = "200";
/// Redirect status code of URL and prefix redirects.
pub const REDIRECT_HTTP_CODE: i32 = 302;
/// Provider name every load balancer reports.
pub const PROVIDER: &str = "fulcrum";

/// OWASP "Suite B" cipher list Octavia uses for TLS-terminating listeners and pools.
const SUITE_B_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256";

fn terminated(p: Protocol) -> bool {
    p == Protocol::TerminatedHttps
}

/// Default cipher string of a listener (only TLS-terminating ones have one).
pub fn listener_tls_ciphers(p: Protocol) -> String {
    if terminated(p) {
        SUITE_B_CIPHERS.to_string()
    } else {
        String::new()
    }
}

/// Default TLS versions of a listener.
pub fn tls_versions(p: Protocol) -> Vec<String> {
    if terminated(p) {
        pool_tls_versions()
    } else {
        Vec::new()
    }
}

/// Default ALPN protocols of a listener.
pub fn alpn_protocols(p: Protocol) -> Vec<String> {
    if terminated(p) {
        pool_alpn_protocols()
    } else {
        Vec::new()
    }
}

/// Default TLS versions towards members.
pub fn pool_tls_versions() -> Vec<String> {
    vec!["TLSv1.2".into(), "TLSv1.3".into()]
}

/// Default ALPN protocols towards members.
pub fn pool_alpn_protocols() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into(), "http/1.0".into()]
}

/// Octavia's sanitising of a policy: the action decides which redirect fields stay, and URL
/// and prefix redirects default to code 302.
pub fn sanitize_l7policy(p: &mut L7Policy) {
    match L7PolicyAction::try_from(p.action).unwrap_or(L7PolicyAction::Unspecified) {
        L7PolicyAction::Reject => {
            p.redirect_pool_id.clear();
            p.redirect_url.clear();
            p.redirect_prefix.clear();
            p.redirect_http_code = 0;
        }
        L7PolicyAction::RedirectToPool => {
            p.redirect_url.clear();
            p.redirect_prefix.clear();
            p.redirect_http_code = 0;
        }
        L7PolicyAction::RedirectToUrl => {
            p.redirect_pool_id.clear();
            p.redirect_prefix.clear();
            if p.redirect_http_code == 0 {
                p.redirect_http_code = REDIRECT_HTTP_CODE;
            }
        }
        L7PolicyAction::RedirectPrefix => {
            p.redirect_pool_id.clear();
            p.redirect_url.clear();
            if p.redirect_http_code == 0 {
                p.redirect_http_code = REDIRECT_HTTP_CODE;
            }
        }
        L7PolicyAction::Unspecified => {}
    }
}
