//! Octavia's fully populated create (a whole load balancer tree in one call, pools referred to
//! by name) and the batch member update.

mod common;

use common::*;
use fulcrum_proto::v1::l7_policy_service_server::L7PolicyService;
use fulcrum_proto::v1::listener_service_server::ListenerService;
use fulcrum_proto::v1::load_balancer_service_server::LoadBalancerService;
use fulcrum_proto::v1::member_service_server::MemberService;
use fulcrum_proto::v1::pool_service_server::PoolService;
use fulcrum_proto::v1::*;
use tonic::Code;

fn named_pool(name: &str) -> PoolCreate {
    PoolCreate {
        name: name.into(),
        ..Default::default()
    }
}

fn tree() -> LoadBalancerCreate {
    LoadBalancerCreate {
        name: "tree".into(),
        vip_address: "10.0.0.40".into(),
        pools: vec![
            PoolCreate {
                name: "web".into(),
                protocol: Protocol::Http as i32,
                lb_algorithm: LbAlgorithm::RoundRobin as i32,
                members: vec![
                    member_create("", "192.0.2.1", 80),
                    member_create("", "192.0.2.2", 80),
                ],
                healthmonitor: Some(hm_create("", HealthMonitorType::Http)),
                ..Default::default()
            },
            PoolCreate {
                name: "api".into(),
                protocol: Protocol::Http as i32,
                lb_algorithm: LbAlgorithm::LeastConnections as i32,
                members: vec![member_create("", "192.0.2.3", 8080)],
                ..Default::default()
            },
        ],
        listeners: vec![ListenerCreate {
            protocol: Protocol::Http as i32,
            protocol_port: 80,
            name: "http".into(),
            default_pool: Some(named_pool("web")),
            l7policies: vec![L7PolicyCreate {
                action: L7PolicyAction::RedirectToPool as i32,
                redirect_pool: Some(named_pool("api")),
                rules: vec![rule_create(
                    "",
                    L7RuleType::Path,
                    CompareType::StartsWith,
                    "",
                    "/api",
                )],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn whole_tree_in_one_call() {
    let api = api();
    let lb = api
        .create_load_balancer(req(
            ALICE,
            CreateLoadBalancerRequest {
                loadbalancer: Some(tree()),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((lb.listener_ids.len(), lb.pool_ids.len()), (1, 2));
    let listener = api
        .get_listener(req(
            ALICE,
            GetListenerRequest {
                listener_id: lb.listener_ids[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let pools = api
        .list_pools(req(ALICE, ListPoolsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .pools;
    let web = pools.iter().find(|p| p.name == "web").unwrap();
    let api_pool = pools.iter().find(|p| p.name == "api").unwrap();
    assert_eq!(listener.default_pool_id, web.id);
    assert_eq!(
        (web.member_ids.len(), web.healthmonitor_id.is_empty()),
        (2, false)
    );
    assert_eq!(api_pool.listener_ids, vec![listener.id.clone()]);
    let policy = api
        .get_l7_policy(req(
            ALICE,
            GetL7PolicyRequest {
                l7policy_id: listener.l7policy_ids[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (policy.redirect_pool_id.as_str(), policy.rule_ids.len()),
        (api_pool.id.as_str(), 1)
    );
    for p in &pools {
        assert_eq!(p.project_id, "alice");
        assert_eq!(
            p.provisioning_status,
            ProvisioningStatus::PendingCreate as i32
        );
    }
}

#[tokio::test]
async fn a_bad_tree_creates_nothing() {
    let api = api();
    let mut bad = tree();
    bad.listeners[0].default_pool = Some(named_pool("nope"));
    refused(
        api.create_load_balancer(req(
            ALICE,
            CreateLoadBalancerRequest {
                loadbalancer: Some(bad),
            },
        ))
        .await,
        Code::InvalidArgument,
        "listeners[0].default_pool: pool 'nope' is not defined",
    );
    let mut bad = tree();
    bad.pools[0].members[1].protocol_port = 0;
    refused(
        api.create_load_balancer(req(
            ALICE,
            CreateLoadBalancerRequest {
                loadbalancer: Some(bad),
            },
        ))
        .await,
        Code::InvalidArgument,
        "protocol_port",
    );
    let mut bad = tree();
    bad.pools[1].name = "web".into();
    refused(
        api.create_load_balancer(req(
            ALICE,
            CreateLoadBalancerRequest {
                loadbalancer: Some(bad),
            },
        ))
        .await,
        Code::InvalidArgument,
        "used twice",
    );
    let lbs = api
        .list_load_balancers(req(ADMIN, ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let pools = api
        .list_pools(req(ADMIN, ListPoolsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(
        lbs.loadbalancers.is_empty() && pools.pools.is_empty(),
        "a refused tree left objects behind"
    );
}

#[tokio::test]
async fn batch_member_update_matches_on_address_and_port() {
    let api = api();
    let lb = api
        .create_load_balancer(req(ALICE, lb_create("lb", "10.0.0.5")))
        .await
        .unwrap()
        .into_inner();
    let pool = api
        .create_pool(req(
            ALICE,
            CreatePoolRequest {
                pool: Some(pool_create_on_lb(&lb.id, Protocol::Tcp)),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    for (a, p) in [("192.0.2.1", 80), ("192.0.2.2", 80)] {
        api.create_member(req(
            ALICE,
            CreateMemberRequest {
                member: Some(member_create(&pool.id, a, p)),
            },
        ))
        .await
        .unwrap();
    }
    let mut keep = member_create("", "192.0.2.2", 80);
    keep.weight = Some(5);
    let batch = |members: Vec<MemberCreate>, additive_only| BatchUpdateMembersRequest {
        pool_id: pool.id.clone(),
        members,
        additive_only,
    };
    let out = api
        .batch_update_members(req(
            ALICE,
            batch(
                vec![keep.clone(), member_create("", "192.0.2.3", 80)],
                false,
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(out.len(), 2);
    let listed = api
        .list_members(req(
            ALICE,
            ListMembersRequest {
                pool_id: pool.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    let mut got: Vec<(String, i32)> = listed
        .iter()
        .map(|m| (m.address.clone(), m.weight))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("192.0.2.2".to_string(), 5), ("192.0.2.3".to_string(), 1)]
    );
    // additive_only keeps members that are not listed.
    api.batch_update_members(req(
        ALICE,
        batch(vec![member_create("", "192.0.2.4", 80)], true),
    ))
    .await
    .unwrap();
    let n = api
        .list_members(req(
            ALICE,
            ListMembersRequest {
                pool_id: pool.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .members
        .len();
    assert_eq!(n, 3);
    refused(
        api.batch_update_members(req(ALICE, batch(vec![keep.clone(), keep], false)))
            .await,
        Code::InvalidArgument,
        "listed twice",
    );
    refused(
        api.batch_update_members(req(BOB, batch(vec![], false)))
            .await,
        Code::NotFound,
        "not found",
    );
}

#[tokio::test]
async fn retries_with_a_request_id_apply_once() {
    let api = api();
    let with_id = |id: &str, vip: &str| {
        let mut r = req(ALICE, lb_create("retried", vip));
        r.metadata_mut().insert("x-request-id", id.parse().unwrap());
        r
    };
    let first = api
        .create_load_balancer(with_id("req-1", "10.0.0.50"))
        .await
        .unwrap()
        .into_inner();
    let again = api
        .create_load_balancer(with_id("req-1", "10.0.0.50"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id, "a retry returns the first result");
    let other = api
        .create_load_balancer(with_id("req-2", "10.0.0.51"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.id, other.id);
    // Another project's identical request id is a different request.
    let mut bobs = req(BOB, lb_create("bob", "10.0.0.52"));
    bobs.metadata_mut()
        .insert("x-request-id", "req-1".parse().unwrap());
    let bob = api.create_load_balancer(bobs).await.unwrap().into_inner();
    assert_eq!(bob.project_id, "bob");
    let all = api
        .list_load_balancers(req(ADMIN, ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.loadbalancers.len(), 3);
}
