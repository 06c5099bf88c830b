//! Tenancy and access: a project sees and changes only its own objects (others' are
//! NOT_FOUND, never revealed), readers cannot write, admins see every project, bad or
//! missing tokens are UNAUTHENTICATED, and quotas bind per project.

mod common;

use common::*;
use fulcrum_proto::v1::listener_service_server::ListenerService;
use fulcrum_proto::v1::load_balancer_service_server::LoadBalancerService;
use fulcrum_proto::v1::pool_service_server::PoolService;
use fulcrum_proto::v1::quota_service_server::QuotaService;
use fulcrum_proto::v1::*;
use tonic::{Code, Request};

#[tokio::test]
async fn projects_are_isolated() {
    let api = api();
    let lb = api
        .create_load_balancer(req(ALICE, lb_create("alice-lb", "10.0.0.5")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lb.project_id, "alice");
    let listener = api
        .create_listener(req(
            ALICE,
            CreateListenerRequest {
                listener: Some(listener_create(&lb.id, Protocol::Http, 80)),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Bob cannot see, change or delete Alice's objects, nor build on them.
    let get = || GetLoadBalancerRequest {
        loadbalancer_id: lb.id.clone(),
    };
    refused(
        api.get_load_balancer(req(BOB, get())).await,
        Code::NotFound,
        "not found",
    );
    let listed = api
        .list_load_balancers(req(BOB, ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.loadbalancers.is_empty());
    let update = UpdateLoadBalancerRequest {
        loadbalancer_id: lb.id.clone(),
        loadbalancer: Some(LoadBalancerUpdate {
            name: Some("stolen".into()),
            ..Default::default()
        }),
        unset: vec![],
    };
    refused(
        api.update_load_balancer(req(BOB, update.clone())).await,
        Code::NotFound,
        "not found",
    );
    refused(
        api.delete_load_balancer(req(
            BOB,
            DeleteLoadBalancerRequest {
                loadbalancer_id: lb.id.clone(),
                cascade: true,
            },
        ))
        .await,
        Code::NotFound,
        "not found",
    );
    refused(
        api.get_listener(req(
            BOB,
            GetListenerRequest {
                listener_id: listener.id.clone(),
            },
        ))
        .await,
        Code::NotFound,
        "not found",
    );
    refused(
        api.create_listener(req(
            BOB,
            CreateListenerRequest {
                listener: Some(listener_create(&lb.id, Protocol::Tcp, 81)),
            },
        ))
        .await,
        Code::NotFound,
        "not found",
    );
    refused(
        api.create_pool(req(
            BOB,
            CreatePoolRequest {
                pool: Some(pool_create_on_lb(&lb.id, Protocol::Http)),
            },
        ))
        .await,
        Code::NotFound,
        "not found",
    );
    refused(
        api.list_load_balancers(req(
            BOB,
            ListLoadBalancersRequest {
                options: Some(ListOptions {
                    project_id: "alice".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await,
        Code::PermissionDenied,
        "only admins",
    );
    // A member cannot create in another project.
    let mut other = lb_create("x", "10.0.0.6");
    other.loadbalancer.as_mut().unwrap().project_id = "alice".into();
    refused(
        api.create_load_balancer(req(BOB, other.clone())).await,
        Code::PermissionDenied,
        "only admins",
    );

    // Alice's reader reads but cannot write.
    api.get_load_balancer(req(ALICE_READER, get()))
        .await
        .unwrap();
    refused(
        api.update_load_balancer(req(ALICE_READER, update.clone()))
            .await,
        Code::PermissionDenied,
        "reader",
    );
    refused(
        api.create_load_balancer(req(ALICE_READER, lb_create("r", "10.0.0.7")))
            .await,
        Code::PermissionDenied,
        "reader",
    );

    // Admins see and change everything, and may create in any project.
    let all = api
        .list_load_balancers(req(ADMIN, ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.loadbalancers.len(), 1);
    let created = api
        .create_load_balancer(req(ADMIN, other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.project_id, "alice");
    let renamed = api
        .update_load_balancer(req(
            ADMIN,
            UpdateLoadBalancerRequest {
                unset: vec![],
                ..update
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "stolen");

    // Nothing of Bob's attempts changed Alice's objects.
    let seen = api
        .list_load_balancers(req(ALICE, ListLoadBalancersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.loadbalancers.len(), 2);
}

#[tokio::test]
async fn tokens_are_checked() {
    let api = api();
    refused(
        api.list_load_balancers(Request::new(ListLoadBalancersRequest::default()))
            .await,
        Code::Unauthenticated,
        "missing authorization",
    );
    refused(
        api.list_load_balancers(req("wrong", ListLoadBalancersRequest::default()))
            .await,
        Code::Unauthenticated,
        "unknown token",
    );
    let mut r = Request::new(ListLoadBalancersRequest::default());
    r.metadata_mut()
        .insert("authorization", "Basic abc".parse().unwrap());
    refused(
        api.list_load_balancers(r).await,
        Code::Unauthenticated,
        "Bearer",
    );
}

#[tokio::test]
async fn quotas_bind_per_project_and_only_admins_set_them() {
    let api = api();
    let set = UpdateQuotaRequest {
        project_id: "alice".into(),
        quota: Some(Quota {
            loadbalancer: Some(1),
            ..Default::default()
        }),
        unset: vec![],
    };
    refused(
        api.update_quota(req(ALICE, set.clone())).await,
        Code::PermissionDenied,
        "admin",
    );
    let q = api
        .update_quota(req(ADMIN, set))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((q.loadbalancer, q.listener), (Some(1), Some(-1)));
    api.create_load_balancer(req(ALICE, lb_create("one", "10.0.0.5")))
        .await
        .unwrap();
    refused(
        api.create_load_balancer(req(ALICE, lb_create("two", "10.0.0.6")))
            .await,
        Code::ResourceExhausted,
        "quota has been met for resources: LoadBalancer",
    );
    // Bob's project is not limited by Alice's quota.
    api.create_load_balancer(req(BOB, lb_create("bob", "10.0.0.7")))
        .await
        .unwrap();
    let usage = api
        .get_quota(req(
            ALICE,
            GetQuotaRequest {
                project_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(usage.in_use.unwrap().loadbalancer, 1);
    refused(
        api.get_quota(req(
            ALICE,
            GetQuotaRequest {
                project_id: "bob".into(),
            },
        ))
        .await,
        Code::PermissionDenied,
        "only admins",
    );
    refused(
        api.update_quota(req(
            ADMIN,
            UpdateQuotaRequest {
                project_id: "alice".into(),
                quota: Some(Quota {
                    pool: Some(-2),
                    ..Default::default()
                }),
                unset: vec![],
            },
        ))
        .await,
        Code::InvalidArgument,
        "quota.pool",
    );
    api.delete_quota(req(
        ADMIN,
        DeleteQuotaRequest {
            project_id: "alice".into(),
        },
    ))
    .await
    .unwrap();
    api.create_load_balancer(req(ALICE, lb_create("two", "10.0.0.6")))
        .await
        .unwrap();
}
