//! Shared set-up for the API rule tests: an API over an in-process model with four callers.

#![allow(dead_code)]

use fulcrum_control::api::{hash_token, Api, ApiConfig, LocalStore, Role, TokenEntry, VipSubnet};
use fulcrum_proto::v1::*;
use tonic::{Code, Request, Status};

pub const ADMIN: &str = "admin-token";
pub const ALICE: &str = "alice-token";
pub const BOB: &str = "bob-token";
pub const ALICE_READER: &str = "alice-reader-token";

pub fn api() -> Api<LocalStore> {
    let token = |t: &str, project: &str, role| TokenEntry {
        sha256: hash_token(t),
        project_id: project.into(),
        role,
    };
    let config = ApiConfig {
        tokens: vec![
            token(ADMIN, "admin", Role::Admin),
            token(ALICE, "alice", Role::Member),
            token(BOB, "bob", Role::Member),
            token(ALICE_READER, "alice", Role::Reader),
        ],
        vip_subnets: vec![VipSubnet::parse(
            "private-subnet",
            "10.0.0.0/24",
            Some("10.0.0.10"),
            Some("10.0.0.12"),
            "",
        )
        .unwrap()],
    };
    Api::new(LocalStore::new(), config, None)
}

pub fn req<M>(token: &str, message: M) -> Request<M> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Asserts a refusal with a code and a message naming the field or rule.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, needle: &str) {
    match result {
        Ok(v) => panic!("expected {code:?} mentioning '{needle}', got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "wrong code for '{needle}': {}", s.message());
            assert!(
                s.message().contains(needle),
                "message '{}' does not mention '{needle}'",
                s.message()
            );
        }
    }
}

pub fn lb_create(name: &str, vip: &str) -> CreateLoadBalancerRequest {
    CreateLoadBalancerRequest {
        loadbalancer: Some(LoadBalancerCreate {
            name: name.into(),
            vip_address: vip.into(),
            ..Default::default()
        }),
    }
}

pub fn listener_create(lb: &str, protocol: Protocol, port: i32) -> ListenerCreate {
    ListenerCreate {
        loadbalancer_id: lb.into(),
        protocol: protocol as i32,
        protocol_port: port,
        ..Default::default()
    }
}

pub fn pool_create_on_lb(lb: &str, protocol: Protocol) -> PoolCreate {
    PoolCreate {
        loadbalancer_id: lb.into(),
        protocol: protocol as i32,
        lb_algorithm: LbAlgorithm::RoundRobin as i32,
        ..Default::default()
    }
}

pub fn member_create(pool: &str, address: &str, port: i32) -> MemberCreate {
    MemberCreate {
        pool_id: pool.into(),
        address: address.into(),
        protocol_port: port,
        ..Default::default()
    }
}

pub fn hm_create(pool: &str, kind: HealthMonitorType) -> HealthMonitorCreate {
    HealthMonitorCreate {
        pool_id: pool.into(),
        r#type: kind as i32,
        delay: 5,
        timeout: 3,
        max_retries: 3,
        ..Default::default()
    }
}

pub fn rule_create(
    policy: &str,
    kind: L7RuleType,
    compare: CompareType,
    key: &str,
    value: &str,
) -> L7RuleCreate {
    L7RuleCreate {
        l7policy_id: policy.into(),
        r#type: kind as i32,
        compare_type: compare as i32,
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}
