//! Drives a running cluster's admin API with concurrent clients creating load balancers and
//! prints acknowledged creates/s with p50/p99/max latency. Used by `bench/control.sh`.
//!
//! `write_bench --endpoints http://127.0.0.1:9816,http://127.0.0.1:9826 --token T --clients 64 --seconds 10`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use fulcrum_proto::v1::load_balancer_service_client::LoadBalancerServiceClient;
use fulcrum_proto::v1::{CreateLoadBalancerRequest, LoadBalancerCreate};
use tonic::transport::Channel;

#[derive(Debug, Parser)]
struct Args {
    /// Admin endpoints; clients are spread over them (writes to followers are forwarded).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[arg(long, env = "FULCRUM_TOKEN")]
    token: String,
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// First VIP number (VIPs are 10.x.y.z from a counter, unique per run with distinct starts).
    #[arg(long, default_value_t = 1)]
    first_vip: u64,
}

fn vip(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.endpoints.is_empty(), "--endpoints: give at least one");
    let mut channels = Vec::new();
    for e in &args.endpoints {
        channels.push(
            Channel::from_shared(e.clone())
                .with_context(|| format!("endpoint {e}"))?
                .connect()
                .await
                .with_context(|| format!("connecting to {e}"))?,
        );
    }
    let counter = Arc::new(AtomicU64::new(args.first_vip));
    let errors = Arc::new(AtomicU64::new(0));
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {}", args.token).parse()?;
    let run_for = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let channel = channels[c % channels.len()].clone();
        let (counter, errors, auth) = (counter.clone(), errors.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = LoadBalancerServiceClient::new(channel);
            let mut latencies = Vec::new();
            while start.elapsed() < run_for {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let mut request = tonic::Request::new(CreateLoadBalancerRequest {
                    loadbalancer: Some(LoadBalancerCreate {
                        name: format!("bench-{n}"),
                        vip_address: vip(n),
                        ..Default::default()
                    }),
                });
                request.metadata_mut().insert("authorization", auth.clone());
                let t = Instant::now();
                match client.create_load_balancer(request).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let n = latencies.len();
    anyhow::ensure!(n > 0, "no write was acknowledged");
    let q = |p: f64| latencies[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "clients={} endpoints={} acknowledged={} errors={} rate={:.0}/s p50={:.1}ms p99={:.1}ms max={:.1}ms",
        args.clients,
        args.endpoints.len(),
        n,
        errors.load(Ordering::Relaxed),
        n as f64 / elapsed.as_secs_f64(),
        q(0.50).as_secs_f64() * 1e3,
        q(0.99).as_secs_f64() * 1e3,
        latencies[n - 1].as_secs_f64() * 1e3,
    );
    Ok(())
}
