//! Multi-node fault tests for Fulcrum in network namespaces.
//!
//! A [`Lab`] is a small network on one machine: a bridge in its own namespace, three node
//! namespaces (`fc<pid>n1..3`) running real `fulcrum serve` processes, and a client namespace
//! (`fc<pid>c`) from which the test talks to the cluster like a separate host. Faults read
//! like prose:
//!
//! ```no_run
//! # async fn demo() {
//! use fulcrum_chaos_tests::{Lab, Writers, verify_acked};
//! use std::time::Duration;
//! let Some(mut lab) = Lab::start_or_skip("demo").await else { return };
//! let (leader, term) = lab.wait_for_leader().await;
//! let writers = Writers::start(&lab, 4);
//! lab.kill(leader);
//! let (new_leader, _) = lab.wait_for_leader_after(term).await;
//! lab.start(leader);
//! let report = writers.finish().await;
//! verify_acked(&lab, &report.acks, Duration::from_secs(20)).await;
//! # let _ = new_leader;
//! # }
//! ```
//!
//! Needs root and iproute2; without them [`Lab::start_or_skip`] prints `SKIPPED: <why>` and
//! the test returns. The `fulcrum` binary must be built first (see the crate README).

pub mod arp;
pub mod client;
pub mod delay;
pub mod failover;
pub mod http;
pub mod lab;
pub mod ndp;
pub mod netns;
pub mod nft;
pub mod stats;
pub mod vip;
pub mod workload;

pub use arp::{ArpEvent, ArpObserver, ArpRequester};
pub use delay::{DelayStats, Delayer};
pub use failover::{ArpWatch, VipLb};
pub use http::{Attempt, Backends, HttpProbe};
pub use lab::{say, Lab, LabConfig, LabError, NodeId, ProcState};
pub use stats::Summary;
pub use vip::{Outage, VipProbe};
pub use workload::{create_lb, next_vip, verify_acked, Ack, WriteReport, Writers};
