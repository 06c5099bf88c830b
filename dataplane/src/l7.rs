//! The L7 rule engine: pure functions from (compiled policies, request head)
//! to the first matching policy's action.
//!
//! Semantics follow Octavia's haproxy rendering:
//! * policies are tried in `position` order; the first whose rules all match wins;
//! * disabled policies, disabled rules and policies with no enabled rule are skipped;
//! * `HOST_NAME` compares the `Host` header (or the `:authority` of h2 requests)
//!   without its port, case-insensitively;
//! * `PATH` compares the path without the query string;
//! * `FILE_TYPE` compares the extension of the last path segment (`jpg` for
//!   `/a/b.jpg`; a leading `.` in the rule value is ignored);
//! * `HEADER` matches when any value of header `key` matches; `COOKIE` compares
//!   the value of cookie `key`;
//! * a rule on something the request lacks does not match (so `invert` makes it match);
//! * `REGEX` is an unanchored search.

use http::{HeaderMap, HeaderName, Uri};
use memchr::memmem;
use regex::{Regex, RegexBuilder};

use crate::config::{L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType};
use crate::error::DataplaneError;

/// The parts of a request the rules look at, borrowed from the request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestView<'a> {
    pub(crate) host: Option<&'a str>,
    /// The request has more than one `Host` header (refused before routing).
    pub(crate) second_host: bool,
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    pub(crate) fn new(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let first = hosts.next();
        let second_host = hosts.next().is_some();
        let host = first
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .map(strip_port);
        Self {
            host,
            second_host,
            path: uri.path(),
            headers,
        }
    }

    fn file_type(&self) -> Option<&'a str> {
        let segment = self.path.rsplit('/').next().unwrap_or(self.path);
        segment.rsplit_once('.').map(|(_, ext)| ext)
    }

    fn cookie(&self, name: &str) -> Option<&'a str> {
        crate::http_headers::request_cookie(self.headers, name)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

#[derive(Debug)]
enum Matcher {
    Regex(Regex),
    StartsWith(String),
    EndsWith(String),
    /// The value, lowercased when the comparison ignores case.
    Contains(Box<memmem::Finder<'static>>),
    EqualTo(String),
}

impl Matcher {
    fn new(
        compare: L7CompareType,
        value: &str,
        case_insensitive: bool,
    ) -> Result<Self, DataplaneError> {
        let value = if case_insensitive {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        Ok(match compare {
            L7CompareType::Regex => Self::Regex(
                RegexBuilder::new(&value)
                    .case_insensitive(case_insensitive)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| DataplaneError::InvalidConfig {
                        field: "l7rule.value",
                        reason: format!("bad regex {value:?}: {e}"),
                    })?,
            ),
            L7CompareType::StartsWith => Self::StartsWith(value),
            L7CompareType::EndsWith => Self::EndsWith(value),
            L7CompareType::Contains => {
                Self::Contains(Box::new(memmem::Finder::new(value.as_bytes()).into_owned()))
            }
            L7CompareType::EqualTo => Self::EqualTo(value),
        })
    }

    fn is_match(&self, s: &str, ci: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if ci {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let s = s.as_bytes();
        match self {
            Self::Regex(re) => re.is_match(std::str::from_utf8(s).unwrap_or_default()),
            Self::StartsWith(v) => s.len() >= v.len() && eq(&s[..v.len()], v.as_bytes()),
            Self::EndsWith(v) => s.len() >= v.len() && eq(&s[s.len() - v.len()..], v.as_bytes()),
            Self::EqualTo(v) => eq(s, v.as_bytes()),
            Self::Contains(f) if ci && s.iter().any(u8::is_ascii_uppercase) => {
                f.find(&s.to_ascii_lowercase()).is_some()
            }
            Self::Contains(f) => f.find(s).is_some(),
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    rule_type: L7RuleType,
    key: Option<HeaderName>,
    cookie: Option<String>,
    matcher: Matcher,
    invert: bool,
}

impl CompiledRule {
    pub(crate) fn compile(cfg: &L7RuleConfig) -> Result<Self, DataplaneError> {
        let key_required = || DataplaneError::InvalidConfig {
            field: "l7rule.key",
            reason: format!("rule {} of type {:?} needs a key", cfg.id, cfg.rule_type),
        };
        let mut value = cfg.value.as_str();
        let (mut key, mut cookie) = (None, None);
        match cfg.rule_type {
            L7RuleType::Header => {
                let k = cfg.key.as_deref().ok_or_else(key_required)?;
                key = Some(HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    DataplaneError::InvalidConfig {
                        field: "l7rule.key",
                        reason: format!("{k:?} is not a header name"),
                    }
                })?);
            }
            L7RuleType::Cookie => cookie = Some(cfg.key.clone().ok_or_else(key_required)?),
            L7RuleType::FileType if cfg.compare_type != L7CompareType::Regex => {
                value = value.strip_prefix('.').unwrap_or(value);
            }
            _ => {}
        }
        let ci = cfg.rule_type == L7RuleType::HostName;
        Ok(Self {
            rule_type: cfg.rule_type,
            key,
            cookie,
            matcher: Matcher::new(cfg.compare_type, value, ci)?,
            invert: cfg.invert,
        })
    }

    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        let ci = self.rule_type == L7RuleType::HostName;
        let hit = match self.rule_type {
            L7RuleType::HostName => req.host.is_some_and(|h| self.matcher.is_match(h, ci)),
            L7RuleType::Path => self.matcher.is_match(req.path, false),
            L7RuleType::FileType => req
                .file_type()
                .is_some_and(|e| self.matcher.is_match(e, false)),
            L7RuleType::Header => self.key.as_ref().is_some_and(|k| {
                req.headers.get_all(k).iter().any(|v| {
                    std::str::from_utf8(v.as_bytes()).is_ok_and(|v| self.matcher.is_match(v, false))
                })
            }),
            L7RuleType::Cookie => self
                .cookie
                .as_deref()
                .and_then(|c| req.cookie(c))
                .is_some_and(|v| self.matcher.is_match(v, false)),
        };
        hit != self.invert
    }
}

/// A compiled policy carrying a resolved action `A`.
#[derive(Debug)]
pub(crate) struct CompiledPolicy<A> {
    pub(crate) id: String,
    rules: Vec<CompiledRule>,
    pub(crate) action: A,
}

/// Compiles the enabled policies with at least one enabled rule, sorted by
/// position; `resolve` turns each config action into the runtime action.
pub(crate) fn compile_policies<A>(
    policies: &[L7PolicyConfig],
    mut resolve: impl FnMut(&L7PolicyConfig) -> Result<A, DataplaneError>,
) -> Result<Vec<CompiledPolicy<A>>, DataplaneError> {
    let mut sorted: Vec<&L7PolicyConfig> = policies.iter().filter(|p| p.admin_state_up).collect();
    sorted.sort_by(|a, b| a.position.cmp(&b.position).then_with(|| a.id.cmp(&b.id)));
    let mut out = Vec::with_capacity(sorted.len());
    for p in sorted {
        let rules = p
            .rules
            .iter()
            .filter(|r| r.admin_state_up)
            .map(CompiledRule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            continue;
        }
        out.push(CompiledPolicy {
            id: p.id.clone(),
            rules,
            action: resolve(p)?,
        });
    }
    Ok(out)
}

/// The first policy whose rules all match the request.
pub(crate) fn first_match<'p, A>(
    policies: &'p [CompiledPolicy<A>],
    req: &RequestView<'_>,
) -> Option<&'p CompiledPolicy<A>> {
    policies
        .iter()
        .find(|p| p.rules.iter().all(|r| r.matches(req)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::L7Action;

    const TYPES: [L7RuleType; 5] = [
        L7RuleType::HostName,
        L7RuleType::Path,
        L7RuleType::FileType,
        L7RuleType::Header,
        L7RuleType::Cookie,
    ];

    fn rule(t: L7RuleType, c: L7CompareType, value: &str, invert: bool) -> L7RuleConfig {
        L7RuleConfig {
            id: "r".into(),
            rule_type: t,
            compare_type: c,
            key: match t {
                L7RuleType::Header => Some("X-Env".into()),
                L7RuleType::Cookie => Some("env".into()),
                _ => None,
            },
            value: value.into(),
            invert,
            admin_state_up: true,
        }
    }

    /// A request whose inspected value (for every rule type) is `v`.
    fn request(v: &str) -> (Uri, HeaderMap) {
        let uri: Uri = format!("/dir/{v}.{v}?q={v}").parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, format!("{v}:8080").parse().unwrap());
        h.insert("x-env", v.parse().unwrap());
        h.insert(
            http::header::COOKIE,
            format!("a=1; env={v}; b=2").parse().unwrap(),
        );
        (uri, h)
    }

    /// What the rule type inspects in `request(v)`.
    fn inspected(t: L7RuleType, v: &str) -> String {
        match t {
            L7RuleType::Path => format!("/dir/{v}.{v}"),
            _ => v.to_string(),
        }
    }

    fn check(t: L7RuleType, c: L7CompareType, value: &str, req: &str, invert: bool) -> bool {
        let r = CompiledRule::compile(&rule(t, c, value, invert)).unwrap();
        let (uri, h) = request(req);
        r.matches(&RequestView::new(&uri, &h))
    }

    #[test]
    fn every_rule_type_by_every_compare_type_and_invert() {
        for t in TYPES {
            let subject = inspected(t, "staging");
            // (compare, value, expected match against "staging")
            let cases: Vec<(L7CompareType, String, bool)> = vec![
                (L7CompareType::EqualTo, subject.clone(), true),
                (L7CompareType::EqualTo, format!("{subject}x"), false),
                (L7CompareType::StartsWith, subject[..3].to_string(), true),
                (L7CompareType::StartsWith, "zz".into(), false),
                (
                    L7CompareType::EndsWith,
                    subject[subject.len() - 3..].to_string(),
                    true,
                ),
                (L7CompareType::EndsWith, "zz".into(), false),
                (L7CompareType::Contains, subject[2..5].to_string(), true),
                (L7CompareType::Contains, "zz".into(), false),
                (L7CompareType::Regex, "ag.n".into(), true),
                (L7CompareType::Regex, "^prod".into(), false),
            ];
            for (c, value, expect) in cases {
                for invert in [false, true] {
                    assert_eq!(
                        check(t, c, &value, "staging", invert),
                        expect != invert,
                        "{t:?} {c:?} {value:?} invert={invert}"
                    );
                }
            }
        }
    }

    #[test]
    fn host_name_is_case_insensitive_and_ignores_port() {
        for c in [
            L7CompareType::EqualTo,
            L7CompareType::StartsWith,
            L7CompareType::Regex,
        ] {
            assert!(check(L7RuleType::HostName, c, "Staging", "sTaging", false));
        }
        assert!(check(
            L7RuleType::HostName,
            L7CompareType::EndsWith,
            "GING",
            "staging",
            false
        ));
        assert!(check(
            L7RuleType::HostName,
            L7CompareType::Contains,
            "AGI",
            "staging",
            false
        ));
        assert!(check(
            L7RuleType::HostName,
            L7CompareType::Contains,
            "agi",
            "STAGING",
            false
        ));
        // Other types are case-sensitive.
        assert!(!check(
            L7RuleType::Header,
            L7CompareType::EqualTo,
            "Staging",
            "staging",
            false
        ));
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
    }

    #[test]
    fn missing_subject_does_not_match_and_inverted_does() {
        let uri: Uri = "/noext".parse().unwrap();
        let h = HeaderMap::new();
        let view = RequestView::new(&uri, &h);
        for t in [
            L7RuleType::HostName,
            L7RuleType::FileType,
            L7RuleType::Header,
            L7RuleType::Cookie,
        ] {
            for invert in [false, true] {
                let r =
                    CompiledRule::compile(&rule(t, L7CompareType::Regex, ".*", invert)).unwrap();
                assert_eq!(r.matches(&view), invert, "{t:?} invert={invert}");
            }
        }
    }

    #[test]
    fn h2_authority_is_the_host_and_path_excludes_query() {
        let uri: Uri = "http://api.example.com:81/v1/x.json?y=1".parse().unwrap();
        let h = HeaderMap::new();
        let view = RequestView::new(&uri, &h);
        assert_eq!(view.host, Some("api.example.com"));
        assert_eq!(view.path, "/v1/x.json");
        assert_eq!(view.file_type(), Some("json"));
        let r = CompiledRule::compile(&rule(
            L7RuleType::FileType,
            L7CompareType::EqualTo,
            ".json",
            false,
        ))
        .unwrap();
        assert!(r.matches(&view));
    }

    #[test]
    fn header_any_value_and_cookie_by_name() {
        let uri: Uri = "/".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append("x-env", "prod".parse().unwrap());
        h.append("x-env", "canary".parse().unwrap());
        h.append(http::header::COOKIE, "x=1".parse().unwrap());
        h.append(http::header::COOKIE, "envx=no; env=blue".parse().unwrap());
        let view = RequestView::new(&uri, &h);
        assert!(CompiledRule::compile(&rule(
            L7RuleType::Header,
            L7CompareType::EqualTo,
            "canary",
            false
        ))
        .unwrap()
        .matches(&view));
        assert!(CompiledRule::compile(&rule(
            L7RuleType::Cookie,
            L7CompareType::EqualTo,
            "blue",
            false
        ))
        .unwrap()
        .matches(&view));
        assert!(!CompiledRule::compile(&rule(
            L7RuleType::Cookie,
            L7CompareType::EqualTo,
            "no",
            false
        ))
        .unwrap()
        .matches(&view));
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(
            CompiledRule::compile(&rule(L7RuleType::Path, L7CompareType::Regex, "(", false))
                .is_err()
        );
        let mut r = rule(L7RuleType::Header, L7CompareType::EqualTo, "x", false);
        r.key = None;
        assert!(CompiledRule::compile(&r).is_err());
        r.key = Some("bad header".into());
        assert!(CompiledRule::compile(&r).is_err());
        let mut r = rule(L7RuleType::Cookie, L7CompareType::EqualTo, "x", false);
        r.key = None;
        assert!(CompiledRule::compile(&r).is_err());
    }

    fn policy(id: &str, position: u32, rules: Vec<L7RuleConfig>) -> L7PolicyConfig {
        L7PolicyConfig {
            id: id.into(),
            position,
            admin_state_up: true,
            rules,
            action: L7Action::Reject,
        }
    }

    #[test]
    fn policies_by_position_all_rules_anded_first_match_wins() {
        let path = |v: &str| rule(L7RuleType::Path, L7CompareType::StartsWith, v, false);
        let header = |v: &str| rule(L7RuleType::Header, L7CompareType::EqualTo, v, false);
        let mut disabled = policy("disabled", 0, vec![path("/")]);
        disabled.admin_state_up = false;
        let mut disabled_rule = path("/");
        disabled_rule.admin_state_up = false;
        let policies = vec![
            policy("api-canary", 2, vec![path("/api"), header("canary")]),
            policy("api", 3, vec![path("/api")]),
            policy("empty", 1, vec![]),
            policy("only-disabled-rules", 1, vec![disabled_rule]),
            disabled,
        ];
        let compiled = compile_policies(&policies, |p| Ok(p.id.clone())).unwrap();
        assert_eq!(
            compiled.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["api-canary", "api"]
        );
        let hit = |path: &str, env: Option<&str>| {
            let uri: Uri = path.parse().unwrap();
            let mut h = HeaderMap::new();
            if let Some(e) = env {
                h.insert("x-env", e.parse().unwrap());
            }
            first_match(&compiled, &RequestView::new(&uri, &h)).map(|p| p.action.clone())
        };
        assert_eq!(hit("/api/x", Some("canary")).as_deref(), Some("api-canary"));
        assert_eq!(hit("/api/x", Some("prod")).as_deref(), Some("api"));
        assert_eq!(hit("/api/x", None).as_deref(), Some("api"));
        assert_eq!(hit("/web", Some("canary")), None);
    }
}
