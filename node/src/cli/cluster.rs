//! `fulcrum cluster status|show|add-learner|promote|remove`: Raft membership (admin only).

use fulcrum_proto::v1::{
    AddLearnerRequest, ClusterNode, ClusterStatus, GetClusterStatusRequest, NodeRole,
    PromoteNodeRequest, RemoveNodeRequest,
};

use super::connection::{api, Clients};
use super::enums::enum_value;
use super::output::{ListOutput, Record, ShowOutput};
use super::value::Value;
use super::{emit_list, emit_one};

/// Columns of `cluster status`.
pub const NODE_COLUMNS: &[&str] = &[
    "node_id",
    "peer_address",
    "role",
    "voter",
    "matched_index",
    "healthy",
    "last_contact_ms",
    "vips",
];

/// Everything under `fulcrum cluster ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// List the cluster's nodes: id, peer address, role, voter, matched log index, VIPs held.
    Status {
        #[command(flatten)]
        output: ListOutput,
    },
    /// Show the answering node's Raft state: node id, leader, term, commit and apply indexes.
    Show {
        #[command(flatten)]
        output: ShowOutput,
    },
    /// Add a node as a non-voting learner (it starts replicating the log).
    AddLearner {
        /// Raft id of the new node.
        #[arg(long)]
        node_id: u64,
        /// The new node's peer (Raft) address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        peer_address: String,
        #[command(flatten)]
        output: ListOutput,
    },
    /// Make a learner a voter.
    Promote {
        /// Raft id of the node.
        node_id: u64,
        #[command(flatten)]
        output: ListOutput,
    },
    /// Remove a node from the cluster membership.
    Remove {
        /// Raft id of the node.
        node_id: u64,
        #[command(flatten)]
        output: ListOutput,
    },
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// One row of `cluster status`.
pub fn node_record(n: &ClusterNode) -> Record {
    vec![
        ("node_id", int(n.node_id)),
        ("peer_address", Value::str(&n.peer_address)),
        ("role", enum_value::<NodeRole>(n.role)),
        ("voter", Value::Bool(n.voter)),
        ("matched_index", int(n.matched_index)),
        ("healthy", Value::Bool(n.healthy)),
        ("last_contact_ms", int(n.last_contact_ms)),
        ("vips", Value::Lines(n.vips.clone())),
    ]
}

/// The fields of `cluster show`.
pub fn status_record(s: &ClusterStatus) -> Record {
    vec![
        ("node_id", int(s.node_id)),
        (
            "leader_id",
            if s.leader_id == 0 {
                Value::Null
            } else {
                int(s.leader_id)
            },
        ),
        ("term", int(s.term)),
        ("committed", int(s.committed)),
        ("last_applied", int(s.last_applied)),
        (
            "nodes",
            Value::Lines(s.nodes.iter().map(|n| n.node_id.to_string()).collect()),
        ),
    ]
}

fn emit_nodes(s: &ClusterStatus, output: &ListOutput) -> anyhow::Result<()> {
    let mut nodes = s.nodes.clone();
    nodes.sort_by_key(|n| n.node_id);
    let records: Vec<Record> = nodes.iter().map(node_record).collect();
    emit_list(NODE_COLUMNS, &records, output)
}

/// Runs one cluster command.
pub async fn run(c: &Clients, cmd: ClusterCommand) -> anyhow::Result<()> {
    let mut cl = c.cluster.clone();
    match cmd {
        ClusterCommand::Status { output } => {
            let s = api(cl.get_cluster_status(GetClusterStatusRequest {}).await)?;
            emit_nodes(&s, &output)
        }
        ClusterCommand::Show { output } => {
            let s = api(cl.get_cluster_status(GetClusterStatusRequest {}).await)?;
            emit_one(&status_record(&s), &output)
        }
        ClusterCommand::AddLearner {
            node_id,
            peer_address,
            output,
        } => {
            let req = AddLearnerRequest {
                node_id,
                peer_address,
            };
            let s = api(cl.add_learner(req).await)?;
            emit_nodes(&s, &output)
        }
        ClusterCommand::Promote { node_id, output } => {
            let s = api(cl.promote_node(PromoteNodeRequest { node_id }).await)?;
            emit_nodes(&s, &output)
        }
        ClusterCommand::Remove { node_id, output } => {
            let s = api(cl.remove_node(RemoveNodeRequest { node_id }).await)?;
            emit_nodes(&s, &output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::render_list;

    #[test]
    fn status_table_lists_nodes() {
        let s = ClusterStatus {
            node_id: 1,
            leader_id: 1,
            term: 3,
            nodes: vec![
                ClusterNode {
                    node_id: 2,
                    peer_address: "10.0.0.2:9877".into(),
                    role: NodeRole::Follower as i32,
                    voter: true,
                    matched_index: 41,
                    vips: vec![],
                    healthy: true,
                    last_contact_ms: 35,
                },
                ClusterNode {
                    node_id: 1,
                    peer_address: "10.0.0.1:9877".into(),
                    role: NodeRole::Leader as i32,
                    voter: true,
                    matched_index: 42,
                    vips: vec!["lb-a".into(), "lb-b".into()],
                    healthy: true,
                    last_contact_ms: 0,
                },
            ],
            ..Default::default()
        };
        let mut nodes = s.nodes.clone();
        nodes.sort_by_key(|n| n.node_id);
        let records: Vec<Record> = nodes.iter().map(node_record).collect();
        let text = render_list(NODE_COLUMNS, &records, &ListOutput::default()).unwrap();
        let expected = "\
+---------+---------------+----------+-------+---------------+---------+-----------------+------+
| node_id | peer_address  | role     | voter | matched_index | healthy | last_contact_ms | vips |
+---------+---------------+----------+-------+---------------+---------+-----------------+------+
|       1 | 10.0.0.1:9877 | LEADER   | True  |            42 | True    |               0 | lb-a |
|         |               |          |       |               |         |                 | lb-b |
|       2 | 10.0.0.2:9877 | FOLLOWER | True  |            41 | True    |              35 |      |
+---------+---------------+----------+-------+---------------+---------+-----------------+------+
";
        assert_eq!(text, expected);
        assert_eq!(status_record(&s)[1], ("leader_id", Value::Int(1)));
    }
}
