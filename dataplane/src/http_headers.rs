//! What the L7 proxy changes in the headers of requests and responses on
//! their way through: hop-by-hop headers out (RFC 9110 §7.6.1),
//! `X-Forwarded-For` appended, the persistence cookies read, removed and
//! learnt, and whether a request asks for an upgrade.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Removes cookie `name` from the request's `Cookie` headers (HAProxy's
/// `cookie ... insert indirect`: the member never sees the persistence cookie).
pub(crate) fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let has = |v: &HeaderValue| {
        v.to_str().is_ok_and(|v| {
            v.split(';')
                .any(|p| p.trim().split_once('=').is_some_and(|(k, _)| k == name))
        })
    };
    if !headers.get_all(header::COOKIE).iter().any(has) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| {
            let Ok(s) = v.to_str() else {
                return Some(v.clone());
            };
            let rest: Vec<&str> = s
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty() && p.split_once('=').is_none_or(|(k, _)| k != name))
                .collect();
            (!rest.is_empty())
                .then(|| HeaderValue::try_from(rest.join("; ")).ok())
                .flatten()
        })
        .collect();
    headers.remove(header::COOKIE);
    for v in kept {
        headers.append(header::COOKIE, v);
    }
}

/// The value of cookie `name` set by a response, if any.
pub(crate) fn response_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

pub(crate) fn upgrade_requested<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::try_from(format!("{prev}, {}", ip.to_str().unwrap_or_default()))
            .unwrap_or_else(|_| ip.clone()),
        None => ip.clone(),
    };
    headers.insert(name, value);
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
///
/// Nothing is allocated or removed when no hop-by-hop header is present (the
/// common request); a typical response (`Connection: keep-alive`) costs one
/// scan of the names, one lookup and one removal. Only a `Connection` header naming other
/// headers (rare) allocates, for the list of those names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names; remember which hop-by-hop names are there.
    let mut present = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    // Names listed in `Connection` besides the standard tokens (rare: only
    // those allocate). Read, then removed below: `entry` would be one lookup
    // but reserves room for an insert, which can grow the map.
    let mut named: Vec<HeaderName> = Vec::new();
    if present[0] {
        for value in headers.get_all(header::CONNECTION) {
            let tokens = value.to_str().unwrap_or_default().split(',');
            for token in tokens.map(str::trim) {
                let standard = ["keep-alive", "close", "upgrade", "te", ""]
                    .iter()
                    .any(|s| token.eq_ignore_ascii_case(s));
                if !standard {
                    if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                        named.push(n);
                    }
                }
            }
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if present[3] {
        // Transfer-Encoding framed the message, not a Content-Length next to
        // it (RFC 9112 §6.3); hyper re-frames what it forwards by the length.
        headers.remove(header::CONTENT_LENGTH);
    }
    for n in named {
        headers.remove(n);
    }
}

/// Where `name` stands in [`HOP_BY_HOP`]: one match on the lower-case name
/// (a length switch and a compare), cheaper than comparing with each entry.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "te" => 1,
        "trailer" => 2,
        "transfer-encoding" => 3,
        "upgrade" => 4,
        "proxy-authenticate" => 5,
        "keep-alive" => 6,
        "proxy-connection" => 7,
        _ => return None,
    })
}

/// Hop-by-hop header names (RFC 9110 §7.6.1 and the legacy ones), `Connection`
/// first, in the order of [`hop_by_hop_index`].
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn hop_by_hop_index_matches_the_table() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
        assert_eq!(hop_by_hop_index(&HeaderName::from_static("x-te")), None);
    }

    #[test]
    fn forwarded_for_appends() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9, 10.0.0.9");
    }
}
