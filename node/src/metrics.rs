//! The Prometheus endpoint (`metrics_listen`, default port 9878): listener traffic counters
//! from the data plane, Raft and VIP state, refreshed at each scrape and rendered by
//! `metrics-exporter-prometheus`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use fulcrum_dataplane::Dataplane;
use fulcrum_proto::v1::{Listener, LoadBalancer};
use fulcrum_raft::{RaftNode, Role};
use http_body_util::Full;
use hyper::{Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::replica::ModelApp;
use crate::vip::VipManager;

/// What a scrape reads.
#[derive(Clone)]
struct Sources {
    handle: PrometheusHandle,
    raft: RaftNode<ModelApp>,
    dataplane: Dataplane,
    vips: Option<VipManager>,
}

impl Sources {
    /// Updates every metric from the live sources, then renders them.
    fn render(&self) -> String {
        let status = self.raft.status();
        metrics::gauge!("fulcrum_raft_term").set(status.term as f64);
        metrics::gauge!("fulcrum_raft_is_leader").set(u8::from(status.role == Role::Leader));
        metrics::gauge!("fulcrum_raft_last_applied").set(status.last_applied as f64);
        metrics::gauge!("fulcrum_raft_voters").set(status.voters.len() as f64);
        let me = status.node_id.to_string();
        let (listeners, owned) = self.raft.read_local(|app| {
            let owned = app
                .state
                .all::<LoadBalancer>()
                .filter(|lb| lb.vip_owner == me)
                .count();
            let listeners: BTreeSet<(String, String)> = app
                .state
                .all::<Listener>()
                .map(|l| (l.id.clone(), l.loadbalancer_id.clone()))
                .collect();
            (listeners, owned)
        });
        metrics::gauge!("fulcrum_vips_owned").set(owned as f64);
        if let Some(vips) = &self.vips {
            let v = vips.stats();
            metrics::gauge!("fulcrum_vips_held").set(v.held as f64);
            metrics::gauge!("fulcrum_vips_local").set(v.local as f64);
            metrics::counter!("fulcrum_garp_sent_total").absolute(v.garp_sent);
            metrics::counter!("fulcrum_arp_replies_sent_total").absolute(v.arp_replies_sent);
            metrics::counter!("fulcrum_na_sent_total").absolute(v.na_sent);
            metrics::counter!("fulcrum_ns_answered_total").absolute(v.ns_answered);
            metrics::counter!("fulcrum_vip_conflicts_total").absolute(v.conflicts_seen);
            metrics::counter!("fulcrum_vip_send_errors_total").absolute(v.send_errors);
        }
        let stats = self.dataplane.stats();
        for (listener, lb) in listeners {
            let Some(s) = stats.get(&listener) else {
                continue;
            };
            let labels = [("listener", listener.clone()), ("loadbalancer", lb)];
            metrics::counter!("fulcrum_listener_bytes_in_total", &labels).absolute(s.bytes_in);
            metrics::counter!("fulcrum_listener_bytes_out_total", &labels).absolute(s.bytes_out);
            metrics::counter!("fulcrum_listener_connections_total", &labels)
                .absolute(s.total_connections);
            metrics::counter!("fulcrum_listener_request_errors_total", &labels)
                .absolute(s.request_errors);
            metrics::gauge!("fulcrum_listener_active_connections", &labels)
                .set(s.active_connections as f64);
        }
        self.handle.render()
    }
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    raft: RaftNode<ModelApp>,
    dataplane: Dataplane,
    vips: Option<VipManager>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // A second node in the same process (tests) keeps the first recorder; its scrape then
    // shows that recorder's values, which is acceptable for tests.
    let _ = metrics::set_global_recorder(recorder);
    let sources = Sources {
        handle,
        raft,
        dataplane,
        vips,
    };
    let addr: SocketAddr = listener.local_addr().context("metrics listener address")?;
    tracing::info!(%addr, "metrics on /metrics");
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => r.context("accepting a metrics connection")?,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let sources = sources.clone();
                async move {
                    let response = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(sources.render())))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    Ok::<_, Infallible>(
                        response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
