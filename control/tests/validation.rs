//! Table-driven tests of Octavia's validation rules through the API: every refused request
//! names the field and the rule, and changes nothing.

mod common;

use common::*;
use fulcrum_proto::v1::health_monitor_service_server::HealthMonitorService;
use fulcrum_proto::v1::l7_policy_service_server::L7PolicyService;
use fulcrum_proto::v1::l7_rule_service_server::L7RuleService;
use fulcrum_proto::v1::listener_service_server::ListenerService;
use fulcrum_proto::v1::load_balancer_service_server::LoadBalancerService;
use fulcrum_proto::v1::member_service_server::MemberService;
use fulcrum_proto::v1::pool_service_server::PoolService;
use fulcrum_proto::v1::*;
use tonic::Code;

struct Fixture {
    api: fulcrum_control::api::Api<fulcrum_control::api::LocalStore>,
    lb: LoadBalancer,
    http: Listener,
    pool: Pool,
}

async fn fixture() -> Fixture {
    let api = api();
    let lb = api
        .create_load_balancer(req(ALICE, lb_create("lb1", "10.0.0.5")))
        .await
        .unwrap()
        .into_inner();
    let http = api
        .create_listener(req(
            ALICE,
            CreateListenerRequest {
                listener: Some(listener_create(&lb.id, Protocol::Http, 80)),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut pc = pool_create_on_lb("", Protocol::Http);
    pc.listener_id = http.id.clone();
    let pool = api
        .create_pool(req(ALICE, CreatePoolRequest { pool: Some(pc) }))
        .await
        .unwrap()
        .into_inner();
    Fixture {
        api,
        lb,
        http,
        pool,
    }
}

impl Fixture {
    async fn listener(
        &self,
        edit: impl FnOnce(&mut ListenerCreate),
    ) -> Result<Listener, tonic::Status> {
        let mut c = listener_create(&self.lb.id, Protocol::Tcp, 8080);
        edit(&mut c);
        self.api
            .create_listener(req(ALICE, CreateListenerRequest { listener: Some(c) }))
            .await
            .map(|r| r.into_inner())
    }
    async fn pool(&self, edit: impl FnOnce(&mut PoolCreate)) -> Result<Pool, tonic::Status> {
        let mut c = pool_create_on_lb(&self.lb.id, Protocol::Http);
        edit(&mut c);
        self.api
            .create_pool(req(ALICE, CreatePoolRequest { pool: Some(c) }))
            .await
            .map(|r| r.into_inner())
    }
    async fn member(&self, edit: impl FnOnce(&mut MemberCreate)) -> Result<Member, tonic::Status> {
        let mut c = member_create(&self.pool.id, "192.0.2.10", 80);
        edit(&mut c);
        self.api
            .create_member(req(ALICE, CreateMemberRequest { member: Some(c) }))
            .await
            .map(|r| r.into_inner())
    }
    async fn hm(
        &self,
        edit: impl FnOnce(&mut HealthMonitorCreate),
    ) -> Result<HealthMonitor, tonic::Status> {
        let mut c = hm_create(&self.pool.id, HealthMonitorType::Http);
        edit(&mut c);
        self.api
            .create_health_monitor(req(
                ALICE,
                CreateHealthMonitorRequest {
                    healthmonitor: Some(c),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }
    async fn policy(
        &self,
        edit: impl FnOnce(&mut L7PolicyCreate),
    ) -> Result<L7Policy, tonic::Status> {
        let mut c = L7PolicyCreate {
            listener_id: self.http.id.clone(),
            action: L7PolicyAction::Reject as i32,
            ..Default::default()
        };
        edit(&mut c);
        self.api
            .create_l7_policy(req(ALICE, CreateL7PolicyRequest { l7policy: Some(c) }))
            .await
            .map(|r| r.into_inner())
    }
    async fn rule(
        &self,
        policy: &str,
        edit: impl FnOnce(&mut L7RuleCreate),
    ) -> Result<L7Rule, tonic::Status> {
        let mut c = rule_create(
            policy,
            L7RuleType::Path,
            CompareType::StartsWith,
            "",
            "/api",
        );
        edit(&mut c);
        self.api
            .create_l7_rule(req(ALICE, CreateL7RuleRequest { rule: Some(c) }))
            .await
            .map(|r| r.into_inner())
    }
    async fn revision(&self) -> (u64, usize) {
        let lb = self
            .api
            .get_load_balancer(req(
                ALICE,
                GetLoadBalancerRequest {
                    loadbalancer_id: self.lb.id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        (lb.revision, lb.listener_ids.len() + lb.pool_ids.len())
    }
}

#[tokio::test]
async fn load_balancer_rules() {
    let f = fixture().await;
    let api = &f.api;
    let mut c = lb_create("x", "");
    refused(
        api.create_load_balancer(req(ALICE, c.clone())).await,
        Code::InvalidArgument,
        "VIP must contain one of",
    );
    c.loadbalancer.as_mut().unwrap().vip_address = "10.0.0.300".into();
    refused(
        api.create_load_balancer(req(ALICE, c.clone())).await,
        Code::InvalidArgument,
        "vip_address",
    );
    refused(
        api.create_load_balancer(req(ALICE, lb_create("dup", "10.0.0.5")))
            .await,
        Code::AlreadyExists,
        "vip_address 10.0.0.5",
    );
    let mut c = lb_create("x", "");
    c.loadbalancer.as_mut().unwrap().vip_subnet_id = "nope".into();
    refused(
        api.create_load_balancer(req(ALICE, c)).await,
        Code::InvalidArgument,
        "subnet 'nope' not found",
    );
    let mut c = lb_create(&"n".repeat(256), "10.0.0.6");
    refused(
        api.create_load_balancer(req(ALICE, c.clone())).await,
        Code::InvalidArgument,
        "name: must be at most 255",
    );
    c.loadbalancer.as_mut().unwrap().name = "ok".into();
    c.loadbalancer.as_mut().unwrap().flavor_id = "small".into();
    refused(
        api.create_load_balancer(req(ALICE, c)).await,
        Code::InvalidArgument,
        "flavor_id",
    );
    // VIP allocation from a named subnet: lowest free address, then exhaustion.
    let from_subnet = || {
        let mut c = lb_create("s", "");
        c.loadbalancer.as_mut().unwrap().vip_subnet_id = "private-subnet".into();
        c
    };
    let mut vips = Vec::new();
    for _ in 0..3 {
        vips.push(
            api.create_load_balancer(req(ALICE, from_subnet()))
                .await
                .unwrap()
                .into_inner()
                .vip_address,
        );
    }
    assert_eq!(vips, ["10.0.0.10", "10.0.0.11", "10.0.0.12"]);
    refused(
        api.create_load_balancer(req(ALICE, from_subnet())).await,
        Code::ResourceExhausted,
        "no free address",
    );
}

#[tokio::test]
async fn listener_rules() {
    let f = fixture().await;
    let before = f.revision().await;
    refused(
        f.listener(|c| c.protocol_port = 0).await,
        Code::InvalidArgument,
        "protocol_port: must be between 1 and 65535",
    );
    refused(
        f.listener(|c| c.protocol_port = 65536).await,
        Code::InvalidArgument,
        "protocol_port",
    );
    refused(
        f.listener(|c| c.protocol = 0).await,
        Code::InvalidArgument,
        "protocol: is required",
    );
    refused(
        f.listener(|c| c.protocol = Protocol::Sctp as i32).await,
        Code::InvalidArgument,
        "SCTP",
    );
    refused(
        f.listener(|c| c.protocol = Protocol::Proxy as i32).await,
        Code::InvalidArgument,
        "PROXY is not a listener protocol",
    );
    refused(
        f.listener(|c| c.connection_limit = Some(-2)).await,
        Code::InvalidArgument,
        "connection_limit",
    );
    refused(
        f.listener(|c| c.timeout_client_data = Some(2_073_600_001))
            .await,
        Code::InvalidArgument,
        "timeout_client_data",
    );
    refused(
        f.listener(|c| c.timeout_member_connect = Some(-1)).await,
        Code::InvalidArgument,
        "timeout_member_connect",
    );
    refused(
        f.listener(|c| {
            c.insert_headers
                .insert("X-Forwarded-For".into(), "true".into());
        })
        .await,
        Code::InvalidArgument,
        "insert_headers is not a valid option for a TCP protocol listener",
    );
    refused(
        f.listener(|c| {
            c.protocol = Protocol::Http as i32;
            c.insert_headers.insert("X-Evil".into(), "true".into());
        })
        .await,
        Code::InvalidArgument,
        "'X-Evil' is not a header",
    );
    refused(
        f.listener(|c| {
            c.protocol = Protocol::Http as i32;
            c.insert_headers
                .insert("X-SSL-Client-DN".into(), "true".into());
        })
        .await,
        Code::InvalidArgument,
        "needs a TERMINATED_HTTPS listener",
    );
    refused(
        f.listener(|c| c.protocol = Protocol::TerminatedHttps as i32)
            .await,
        Code::InvalidArgument,
        "default_tls_container_ref",
    );
    refused(
        f.listener(|c| c.default_tls_container_ref = "cert".into())
            .await,
        Code::InvalidArgument,
        "only valid for TERMINATED_HTTPS",
    );
    refused(
        f.listener(|c| c.allowed_cidrs = vec!["10.0.0.0/33".into()])
            .await,
        Code::InvalidArgument,
        "allowed_cidrs",
    );
    refused(
        f.listener(|c| c.allowed_cidrs = vec!["2001:db8::/32".into()])
            .await,
        Code::InvalidArgument,
        "VIP's IP family",
    );
    refused(
        f.listener(|c| c.hsts_max_age = Some(10)).await,
        Code::InvalidArgument,
        "hsts_max_age",
    );
    refused(
        f.listener(|c| c.name = "a\nb".into()).await,
        Code::InvalidArgument,
        "name: must not contain control",
    );
    refused(
        f.listener(|c| c.protocol_port = 80).await,
        Code::AlreadyExists,
        "already uses protocol port 80",
    );
    // Refusals wrote nothing.
    assert_eq!(f.revision().await, before);
    // TCP-family and UDP have separate port spaces; allowed_cidrs are normalised.
    f.listener(|c| {
        c.protocol = Protocol::Udp as i32;
        c.protocol_port = 80;
    })
    .await
    .unwrap();
    let l = f
        .listener(|c| c.allowed_cidrs = vec!["192.0.2.0/24".into()])
        .await
        .unwrap();
    assert_eq!(l.connection_limit, -1);
    assert_eq!(
        (
            l.timeout_client_data,
            l.timeout_member_connect,
            l.timeout_member_data,
            l.timeout_tcp_inspect
        ),
        (50000, 5000, 50000, 0)
    );
    assert_eq!(
        l.provisioning_status,
        ProvisioningStatus::PendingCreate as i32
    );
    // A pool of an incompatible protocol cannot be the default pool.
    let udp_pool = f.pool(|c| c.protocol = Protocol::Udp as i32).await.unwrap();
    refused(
        f.listener(|c| {
            c.protocol_port = 9000;
            c.default_pool_id = udp_pool.id.clone();
        })
        .await,
        Code::InvalidArgument,
        "the pool protocol 'UDP' is invalid while the listener protocol is 'TCP'",
    );
    // Updates are checked on the merged object.
    let r = f
        .api
        .update_listener(req(
            ALICE,
            UpdateListenerRequest {
                listener_id: l.id.clone(),
                listener: Some(ListenerUpdate {
                    connection_limit: Some(-5),
                    ..Default::default()
                }),
                unset: vec![],
            },
        ))
        .await;
    refused(r, Code::InvalidArgument, "connection_limit");
    let r = f
        .api
        .update_listener(req(
            ALICE,
            UpdateListenerRequest {
                listener_id: l.id.clone(),
                listener: None,
                unset: vec!["protocol".into()],
            },
        ))
        .await;
    refused(r, Code::InvalidArgument, "'protocol' cannot be unset");
}

#[tokio::test]
async fn pool_rules() {
    let f = fixture().await;
    refused(
        f.pool(|c| c.lb_algorithm = 0).await,
        Code::InvalidArgument,
        "lb_algorithm: is required",
    );
    refused(
        f.pool(|c| c.protocol = Protocol::Sctp as i32).await,
        Code::InvalidArgument,
        "SCTP is not a pool protocol",
    );
    refused(
        f.pool(|c| {
            c.loadbalancer_id.clear();
        })
        .await,
        Code::InvalidArgument,
        "at least one of: loadbalancer_id, listener_id",
    );
    let sp = |t: SessionPersistenceType, name: &str| {
        Some(SessionPersistence {
            r#type: t as i32,
            cookie_name: name.into(),
            ..Default::default()
        })
    };
    refused(
        f.pool(|c| c.session_persistence = sp(SessionPersistenceType::AppCookie, ""))
            .await,
        Code::InvalidArgument,
        "cookie_name: is required",
    );
    refused(
        f.pool(|c| c.session_persistence = sp(SessionPersistenceType::HttpCookie, "x"))
            .await,
        Code::InvalidArgument,
        "only valid with APP_COOKIE",
    );
    refused(
        f.pool(|c| c.session_persistence = sp(SessionPersistenceType::AppCookie, "a;b"))
            .await,
        Code::InvalidArgument,
        "cookie token",
    );
    refused(
        f.pool(|c| c.session_persistence = sp(SessionPersistenceType::Unspecified, ""))
            .await,
        Code::InvalidArgument,
        "session_persistence.type",
    );
    refused(
        f.pool(|c| {
            c.protocol = Protocol::Udp as i32;
            c.session_persistence = sp(SessionPersistenceType::HttpCookie, "");
        })
        .await,
        Code::InvalidArgument,
        "only SOURCE_IP",
    );
    refused(
        f.pool(|c| {
            c.session_persistence = Some(SessionPersistence {
                r#type: SessionPersistenceType::SourceIp as i32,
                persistence_timeout: Some(30),
                ..Default::default()
            })
        })
        .await,
        Code::InvalidArgument,
        "persistence_timeout: is only valid for UDP pools",
    );
    f.pool(|c| {
        c.protocol = Protocol::Udp as i32;
        c.session_persistence = Some(SessionPersistence {
            r#type: SessionPersistenceType::SourceIp as i32,
            persistence_timeout: Some(30),
            persistence_granularity: "255.255.255.0".into(),
            ..Default::default()
        });
    })
    .await
    .unwrap();
    refused(
        f.pool(|c| {
            c.loadbalancer_id.clear();
            c.listener_id = f.http.id.clone();
        })
        .await,
        Code::AlreadyExists,
        "already has a default pool",
    );
    refused(
        f.pool(|c| c.crl_container_ref = "crl".into()).await,
        Code::InvalidArgument,
        "crl_container_ref: needs ca_tls_container_ref",
    );
}

#[tokio::test]
async fn member_rules() {
    let f = fixture().await;
    refused(
        f.member(|c| c.address = "not-an-ip".into()).await,
        Code::InvalidArgument,
        "address: 'not-an-ip' is not a valid",
    );
    refused(
        f.member(|c| c.address = "169.254.169.254".into()).await,
        Code::InvalidArgument,
        "reserved",
    );
    refused(
        f.member(|c| c.protocol_port = 0).await,
        Code::InvalidArgument,
        "protocol_port",
    );
    refused(
        f.member(|c| c.weight = Some(257)).await,
        Code::InvalidArgument,
        "weight: must be between 0 and 256",
    );
    refused(
        f.member(|c| c.weight = Some(-1)).await,
        Code::InvalidArgument,
        "weight",
    );
    refused(
        f.member(|c| c.monitor_port = Some(70000)).await,
        Code::InvalidArgument,
        "monitor_port",
    );
    refused(
        f.member(|c| c.monitor_address = "x".into()).await,
        Code::InvalidArgument,
        "monitor_address",
    );
    let m = f.member(|_| {}).await.unwrap();
    assert_eq!(
        (m.weight, m.backup, m.operating_status),
        (1, false, OperatingStatus::NoMonitor as i32)
    );
    refused(
        f.member(|_| {}).await,
        Code::AlreadyExists,
        "already has address 192.0.2.10 and protocol port 80",
    );
    f.member(|c| c.weight = Some(0)).await.err().unwrap();
    f.member(|c| {
        c.weight = Some(0);
        c.protocol_port = 81;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn health_monitor_rules() {
    let f = fixture().await;
    refused(
        f.hm(|c| c.max_retries = 0).await,
        Code::InvalidArgument,
        "max_retries: must be between 1 and 10",
    );
    refused(
        f.hm(|c| c.max_retries = 11).await,
        Code::InvalidArgument,
        "max_retries",
    );
    refused(
        f.hm(|c| c.max_retries_down = Some(11)).await,
        Code::InvalidArgument,
        "max_retries_down",
    );
    refused(f.hm(|c| c.delay = 0).await, Code::InvalidArgument, "delay");
    refused(
        f.hm(|c| c.url_path = "health".into()).await,
        Code::InvalidArgument,
        "url_path",
    );
    refused(
        f.hm(|c| c.url_path = "/a b".into()).await,
        Code::InvalidArgument,
        "url_path",
    );
    refused(
        f.hm(|c| c.expected_codes = "20x".into()).await,
        Code::InvalidArgument,
        "expected_codes",
    );
    refused(
        f.hm(|c| c.expected_codes = "204-200".into()).await,
        Code::InvalidArgument,
        "expected_codes",
    );
    refused(
        f.hm(|c| c.http_version = Some(2.0)).await,
        Code::InvalidArgument,
        "http_version",
    );
    refused(
        f.hm(|c| c.domain_name = "example.com".into()).await,
        Code::InvalidArgument,
        "domain_name: needs http_version 1.1",
    );
    refused(
        f.hm(|c| {
            c.domain_name = "bad_domain!".into();
            c.http_version = Some(1.1);
        })
        .await,
        Code::InvalidArgument,
        "not a valid domain name",
    );
    refused(
        f.hm(|c| {
            c.r#type = HealthMonitorType::Tcp as i32;
            c.url_path = "/x".into();
        })
        .await,
        Code::InvalidArgument,
        "url_path: is only valid for HTTP and HTTPS monitors",
    );
    refused(
        f.hm(|c| c.r#type = HealthMonitorType::UdpConnect as i32)
            .await,
        Code::InvalidArgument,
        "UDP-CONNECT monitors cannot check a HTTP pool",
    );
    for codes in ["200", "200,202", "200, 202", "200-204"] {
        let hm = f.hm(|c| c.expected_codes = codes.into()).await.unwrap();
        f.api
            .delete_health_monitor(req(
                ALICE,
                DeleteHealthMonitorRequest {
                    healthmonitor_id: hm.id,
                },
            ))
            .await
            .unwrap();
    }
    let hm = f.hm(|_| {}).await.unwrap();
    assert_eq!(
        (
            hm.http_method,
            hm.url_path.as_str(),
            hm.expected_codes.as_str(),
            hm.max_retries_down
        ),
        (HttpMethod::Get as i32, "/", "200", 3)
    );
    refused(
        f.hm(|_| {}).await,
        Code::AlreadyExists,
        "already has a health monitor",
    );
}

#[tokio::test]
async fn l7_policy_and_rule_rules() {
    let f = fixture().await;
    let tcp = f.listener(|_| {}).await.unwrap();
    refused(
        f.policy(|c| c.listener_id = tcp.id.clone()).await,
        Code::InvalidArgument,
        "TCP protocol listeners do not support L7 policies",
    );
    refused(
        f.policy(|c| c.action = L7PolicyAction::RedirectToPool as i32)
            .await,
        Code::InvalidArgument,
        "redirect_pool_id: is required",
    );
    refused(
        f.policy(|c| {
            c.action = L7PolicyAction::RedirectToUrl as i32;
            c.redirect_url = "ftp://x".into();
        })
        .await,
        Code::InvalidArgument,
        "redirect_url: 'ftp://x' must be an http or https URL",
    );
    refused(
        f.policy(|c| {
            c.action = L7PolicyAction::RedirectToUrl as i32;
            c.redirect_url = "https://example.com".into();
            c.redirect_http_code = Some(305);
        })
        .await,
        Code::InvalidArgument,
        "redirect_http_code",
    );
    refused(
        f.policy(|c| c.redirect_http_code = Some(301)).await,
        Code::InvalidArgument,
        "redirect_http_code: is only valid",
    );
    refused(
        f.policy(|c| c.position = Some(0)).await,
        Code::InvalidArgument,
        "position",
    );
    let other_lb = f
        .api
        .create_load_balancer(req(ALICE, lb_create("lb2", "10.0.0.7")))
        .await
        .unwrap()
        .into_inner();
    let foreign = f
        .api
        .create_pool(req(
            ALICE,
            CreatePoolRequest {
                pool: Some(pool_create_on_lb(&other_lb.id, Protocol::Http)),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    refused(
        f.policy(|c| {
            c.action = 0;
            c.redirect_pool_id = foreign.id.clone();
        })
        .await,
        Code::InvalidArgument,
        "is not on the listener's load balancer",
    );
    // URL redirect defaults to 302; giving a pool id decides the action.
    let url = f
        .policy(|c| {
            c.action = L7PolicyAction::RedirectToUrl as i32;
            c.redirect_url = "https://example.com/x".into();
        })
        .await
        .unwrap();
    assert_eq!(url.redirect_http_code, 302);
    let to_pool = f
        .policy(|c| {
            c.action = 0;
            c.redirect_pool_id = f.pool.id.clone();
        })
        .await
        .unwrap();
    assert_eq!(to_pool.action, L7PolicyAction::RedirectToPool as i32);
    // Positions stay dense: inserting at 1 shifts the others.
    let first = f.policy(|c| c.position = Some(1)).await.unwrap();
    assert_eq!(first.position, 1);
    let listed = f
        .api
        .get_listener(req(
            ALICE,
            GetListenerRequest {
                listener_id: f.http.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .l7policy_ids;
    assert_eq!(
        listed,
        vec![first.id.clone(), url.id.clone(), to_pool.id.clone()]
    );
    // Deleting a pool a policy redirects to is refused.
    refused(
        f.api
            .delete_pool(req(
                ALICE,
                DeletePoolRequest {
                    pool_id: f.pool.id.clone(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "in use by L7 policy",
    );

    let p = first.id.as_str();
    refused(
        f.rule(p, |c| {
            c.compare_type = CompareType::Regex as i32;
            c.value = "(".into();
        })
        .await,
        Code::InvalidArgument,
        "not a valid regex",
    );
    refused(
        f.rule(p, |c| {
            c.r#type = L7RuleType::FileType as i32;
            c.compare_type = CompareType::Contains as i32;
        })
        .await,
        Code::InvalidArgument,
        "FILE_TYPE rules accept only REGEX and EQUAL_TO",
    );
    refused(
        f.rule(p, |c| c.r#type = L7RuleType::Header as i32).await,
        Code::InvalidArgument,
        "key: is required for HEADER rules",
    );
    refused(
        f.rule(p, |c| {
            c.r#type = L7RuleType::Cookie as i32;
            c.key = "bad key".into();
        })
        .await,
        Code::InvalidArgument,
        "key: 'bad key' is not a valid cookie name",
    );
    refused(
        f.rule(p, |c| c.value = "a b".into()).await,
        Code::InvalidArgument,
        "value",
    );
    refused(
        f.rule(p, |c| c.value.clear()).await,
        Code::InvalidArgument,
        "value: is required",
    );
    refused(
        f.rule(p, |c| c.value = "a\r\nb".into()).await,
        Code::InvalidArgument,
        "CR or LF",
    );
    refused(
        f.rule(p, |c| c.compare_type = 0).await,
        Code::InvalidArgument,
        "compare_type: is required",
    );
    refused(
        f.rule(p, |c| c.r#type = L7RuleType::SslConnHasCert as i32)
            .await,
        Code::InvalidArgument,
        "SSL_* rules",
    );
    f.rule(p, |c| {
        c.r#type = L7RuleType::Header as i32;
        c.key = "X-Env".into();
        c.value = "\"two words\"".into();
    })
    .await
    .unwrap();
    for t in [
        L7RuleType::HostName,
        L7RuleType::Path,
        L7RuleType::FileType,
        L7RuleType::Header,
        L7RuleType::Cookie,
    ] {
        for ct in [
            CompareType::Regex,
            CompareType::StartsWith,
            CompareType::EndsWith,
            CompareType::Contains,
            CompareType::EqualTo,
        ] {
            let r = f
                .rule(p, |c| {
                    c.r#type = t as i32;
                    c.compare_type = ct as i32;
                    c.key = "k".into();
                    c.value = "v".into();
                    c.invert = true;
                })
                .await;
            let file_type_only = t == L7RuleType::FileType
                && !matches!(ct, CompareType::Regex | CompareType::EqualTo);
            assert_eq!(r.is_ok(), !file_type_only, "{t:?} {ct:?}: {r:?}");
        }
    }
    // 23 rules exist now; fill up to the limit of 50, then the next is refused.
    for i in 0..27 {
        f.rule(p, |c| c.value = format!("/p{i}")).await.unwrap();
    }
    refused(
        f.rule(p, |_| {}).await,
        Code::AlreadyExists,
        "maximum of 50 rules",
    );
}

#[tokio::test]
async fn deletes_that_would_orphan_are_refused_and_cascade_works() {
    let f = fixture().await;
    f.member(|_| {}).await.unwrap();
    refused(
        f.api
            .delete_load_balancer(req(
                ALICE,
                DeleteLoadBalancerRequest {
                    loadbalancer_id: f.lb.id.clone(),
                    cascade: false,
                },
            ))
            .await,
        Code::FailedPrecondition,
        "it has 1 listener(s) and 1 pool(s)",
    );
    f.api
        .delete_load_balancer(req(
            ALICE,
            DeleteLoadBalancerRequest {
                loadbalancer_id: f.lb.id.clone(),
                cascade: true,
            },
        ))
        .await
        .unwrap();
    let members = f
        .api
        .list_members(req(
            ADMIN,
            ListMembersRequest {
                pool_id: f.pool.id.clone(),
                ..Default::default()
            },
        ))
        .await;
    refused(members, Code::NotFound, "Pool");
    let left = f
        .api
        .list_listeners(req(ADMIN, ListListenersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(left.listeners.is_empty());
}
