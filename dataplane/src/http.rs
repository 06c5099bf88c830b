//! The L7 proxy (HTTP listeners): hyper 1 server (HTTP/1.1 and h2c from
//! clients), pooled HTTP/1.1 connections to members, L7 policies, header
//! insertion, cookie persistence and `Upgrade` pass-through.
//!
//! Answers generated here: 400 malformed request (by hyper, before any member
//! is involved), 403 `REJECT`, 3xx redirects, 502 member failure (reset,
//! garbage), 503 no usable member, 504 member too slow (`timeout_member_data`
//! until response headers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{ListenerTimeouts, SessionPersistence};
use crate::io::{maybe_timeout, Metered};
use crate::l7::{self, RequestView};
use crate::listener::{ListenerShared, RouteAction, Routes};
use crate::pool::{Lease, PoolRuntime};
use crate::status::ActiveGuard;

/// The client towards members: one connection pool per member address.
pub(crate) type HttpClient = Client<HttpConnector, Incoming>;
type Body = Either<Incoming, Full<Bytes>>;

/// Cookie inserted for `HTTP_COOKIE` persistence (the name Octavia's haproxy uses).
const PERSISTENCE_COOKIE: &str = "SRV";
/// How long an idle pooled member connection is kept.
const MEMBER_IDLE: Duration = Duration::from_secs(30);

/// Builds the member client for a listener's timeouts.
pub(crate) fn new_client(t: &ListenerTimeouts) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout((!t.member_connect.is_zero()).then_some(t.member_connect));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(MEMBER_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Accepts connections until `stop` turns true; then open connections finish
/// their in-flight requests and close (graceful shutdown).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Some((routes, guard)) = shared.admit(peer) else { continue };
                tokio::spawn(serve_connection(stream, peer, routes, shared.clone(), stop.clone(), guard));
            }
            _ = crate::io::stopped(&mut stop) => break,
        }
    }
}

struct ConnCtx {
    shared: Arc<ListenerShared>,
    peer: SocketAddr,
    peer_ip: HeaderValue,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    shared: Arc<ListenerShared>,
    mut stop: watch::Receiver<bool>,
    _guard: ActiveGuard,
) {
    let _ = stream.set_nodelay(true);
    let ctx = Arc::new(ConnCtx {
        shared: shared.clone(),
        peer,
        peer_ip: HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    });
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(req, &ctx).await) }
    });
    let client_data = routes.config.timeouts.client_data;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout((!client_data.is_zero()).then_some(client_data));
    builder.http2().timer(TokioTimer::new());
    drop(routes);
    let io = TokioIo::new(Metered::new(stream, Some(shared.stats.clone()), None));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = crate::io::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        // Malformed requests end here (hyper has answered 400 when it could).
        tracing::debug!(%peer, error = %e, "client connection error");
        shared.stats.error();
    }
}

async fn handle(req: Request<Incoming>, ctx: &ConnCtx) -> Response<Body> {
    let routes = ctx.shared.routes.load_full();
    let matched = l7::first_match(
        &routes.policies,
        &RequestView::new(req.uri(), req.headers()),
    )
    .map(|p| {
        tracing::trace!(policy = %p.id, "l7 policy matched");
        &p.action
    });
    let pool = match matched {
        Some(RouteAction::Reject) => return local(StatusCode::FORBIDDEN),
        Some(RouteAction::RedirectUrl { location, code }) => {
            return redirect(*code, location.clone())
        }
        Some(RouteAction::RedirectPrefix { prefix, code }) => {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return match HeaderValue::try_from(format!("{prefix}{pq}")) {
                Ok(location) => redirect(*code, location),
                Err(_) => local(StatusCode::BAD_REQUEST),
            };
        }
        Some(RouteAction::Pool(pool)) => pool,
        None => match &routes.default_pool {
            Some(pool) => pool,
            None => return error(ctx, StatusCode::SERVICE_UNAVAILABLE),
        },
    };
    let Some(client) = routes.client.as_ref() else {
        return error(ctx, StatusCode::SERVICE_UNAVAILABLE);
    };
    let (lease, set_cookie) = match choose_member(pool, &req, ctx.peer) {
        Some(x) => x,
        None => return error(ctx, StatusCode::SERVICE_UNAVAILABLE),
    };
    forward(req, ctx, &routes, client, lease, set_cookie).await
}

/// Picks the member, honouring `HTTP_COOKIE` persistence; returns the cookie
/// to set when a new persistent member was chosen.
fn choose_member(
    pool: &PoolRuntime,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Option<(Lease, Option<HeaderValue>)> {
    let cookie_persistence = matches!(
        pool.config.session_persistence,
        Some(SessionPersistence::HttpCookie)
    );
    if cookie_persistence {
        if let Some(lease) =
            request_cookie(req.headers(), PERSISTENCE_COOKIE).and_then(|id| pool.usable_member(id))
        {
            return Some((lease, None));
        }
    }
    let lease = pool.pick(peer, &mut Vec::new())?;
    let cookie = if cookie_persistence {
        HeaderValue::try_from(format!(
            "{PERSISTENCE_COOKIE}={}; path=/",
            lease.backend.config.id
        ))
        .ok()
    } else {
        None
    };
    Some((lease, cookie))
}

fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn forward(
    mut req: Request<Incoming>,
    ctx: &ConnCtx,
    routes: &Routes,
    client: &HttpClient,
    lease: Lease,
    set_cookie: Option<HeaderValue>,
) -> Response<Body> {
    let member = lease.backend.addr;
    let upgrade = upgrade_requested(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // Host: keep the client's; h2 requests carry it as :authority.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    if let Some(proto) = upgrade
        .then(|| parts.headers.get(header::UPGRADE).cloned())
        .flatten()
    {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, proto);
    }
    let ins = routes.config.insert_headers;
    if ins.x_forwarded_for {
        append_forwarded_for(&mut parts.headers, &ctx.peer_ip);
    }
    if ins.x_forwarded_port {
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-port"),
            routes.port_header.clone(),
        );
    }
    if ins.x_forwarded_proto {
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
    }
    // http://<member><path and query>, reusing the parsed parts (no re-parse).
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = lease.backend.authority.clone();
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(u) => u,
        Err(_) => return error(ctx, StatusCode::BAD_REQUEST),
    };
    parts.version = Version::HTTP_11;

    let timeout = routes.config.timeouts.member_data;
    let mut resp =
        match maybe_timeout(timeout, client.request(Request::from_parts(parts, body))).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::debug!(%member, error = %e, "member request failed");
                return error(ctx, StatusCode::BAD_GATEWAY);
            }
            Err(_) => {
                tracing::debug!(%member, "member timed out");
                return error(ctx, StatusCode::GATEWAY_TIMEOUT);
            }
        };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let member_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let _lease = lease;
                if let (Ok(c), Ok(m)) = tokio::join!(client_upgrade, member_upgrade) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(m))
                            .await;
                }
            });
            return resp.map(Either::Left);
        }
    }
    strip_hop_by_hop(resp.headers_mut());
    if let Some(cookie) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    resp.map(Either::Left)
}

fn upgrade_requested(req: &Request<Incoming>) -> bool {
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

fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
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
/// One pass over the header names decides what goes; nothing is allocated or
/// removed when no hop-by-hop header is present (the common request), and a
/// typical response (`Connection: keep-alive`) costs one removal.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let is_hop = |n: &HeaderName| {
        n == header::CONNECTION
            || n == header::TE
            || n == header::TRAILER
            || n == header::TRANSFER_ENCODING
            || n == header::UPGRADE
            || n == header::PROXY_AUTHENTICATE
            || n.as_str() == "keep-alive"
            || n.as_str() == "proxy-connection"
    };
    if !headers.keys().any(is_hop) {
        return;
    }
    let named_in_connection = |n: &HeaderName| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(n.as_str()))
    };
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop(n) || named_in_connection(n))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

fn local(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn error(ctx: &ConnCtx, status: StatusCode) -> Response<Body> {
    ctx.shared.stats.error();
    local(status)
}

fn redirect(code: StatusCode, location: HeaderValue) -> Response<Body> {
    let mut resp = local(code);
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

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
    fn forwarded_for_appends() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        append_forwarded_for(&mut h, &ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9, 10.0.0.9");
    }
}
