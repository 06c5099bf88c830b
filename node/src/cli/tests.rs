//! Command lines from the Octavia docs (cookbooks, L7 guide) with `openstack` replaced by
//! `fulcrum` parse, and parse into the right requests.

use clap::Parser;
use fulcrum_proto::v1::{
    CompareType, HealthMonitorType, L7PolicyAction, L7RuleType, LbAlgorithm, Protocol,
};

use super::output::{ListFormat, OneFormat};
use super::*;

#[derive(Debug, clap::Parser)]
#[command(name = "fulcrum")]
struct TestCli {
    #[command(flatten)]
    conn: ConnectionArgs,
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    #[command(subcommand)]
    Loadbalancer(LoadBalancerCommand),
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

fn parse(line: &str) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(line.split_whitespace())
}

fn lb(line: &str) -> LoadBalancerCommand {
    match parse(line).unwrap_or_else(|e| panic!("{line}: {e}")).cmd {
        Top::Loadbalancer(c) => c,
        Top::Cluster(_) => panic!("not a loadbalancer command"),
    }
}

#[test]
fn the_clap_tree_is_consistent() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
}

#[test]
fn basic_cookbook_lines_parse() {
    let cmds = [
        "fulcrum loadbalancer create --vip-subnet-id private-subnet --name lb_test_1",
        "fulcrum loadbalancer create --name lb1 --vip-subnet-id public-subnet --wait",
        "fulcrum loadbalancer show lb1",
        "fulcrum loadbalancer listener create --name 80_listener --protocol TCP --protocol-port 80 lb_test_1",
        "fulcrum loadbalancer listener create --name listener1 --protocol HTTP --protocol-port 80 --wait lb1",
        "fulcrum loadbalancer pool create --name 80_pool --listener 80_listener --protocol TCP --lb-algorithm ROUND_ROBIN",
        "fulcrum loadbalancer pool create --name pool1 --lb-algorithm ROUND_ROBIN --listener listener1 --protocol HTTP --wait",
        "fulcrum loadbalancer member create --name 80_member --address 10.0.0.4 --protocol-port 80 80_pool",
        "fulcrum loadbalancer member create --subnet-id private-subnet --address 192.0.2.10 --protocol-port 80 --wait pool1",
        "fulcrum loadbalancer healthmonitor create --delay 5 --max-retries 4 --timeout 10 --type HTTP --url-path /healthcheck --wait pool1",
        "fulcrum loadbalancer healthmonitor create --delay 15 --max-retries 4 --timeout 10 --type TLS-HELLO pool1",
        "fulcrum loadbalancer healthmonitor create --delay 5 --max-retries 2 --timeout 3 --type UDP-CONNECT pool1",
        "fulcrum loadbalancer l7policy create --action REDIRECT_PREFIX --redirect-prefix https://www.example.com/ --name policy1 http_listener",
        "fulcrum loadbalancer l7policy create --action REDIRECT_TO_POOL --redirect-pool static_pool --name policy1 listener1",
        "fulcrum loadbalancer l7policy create --action REJECT --name policy1 listener1",
        "fulcrum loadbalancer l7rule create --compare-type STARTS_WITH --type PATH --value /js policy1",
        "fulcrum loadbalancer l7rule create --compare-type EQUAL_TO --type HOST_NAME --value www2.example.com policy1",
        "fulcrum loadbalancer l7rule create --compare-type EQUAL_TO --key site_version --type COOKIE --value B policy1",
        "fulcrum loadbalancer status show lb1",
        "fulcrum loadbalancer stats show lb1",
        "fulcrum loadbalancer listener stats show listener1",
        "fulcrum loadbalancer failover lb1 --wait",
        "fulcrum loadbalancer delete --cascade --wait lb1",
        "fulcrum loadbalancer list --provisioning-status active --name lb1 -f json -c id -c name",
        "fulcrum loadbalancer listener list --loadbalancer lb1",
        "fulcrum loadbalancer member list pool1 -f value -c address",
        "fulcrum loadbalancer member show pool1 member1",
        "fulcrum loadbalancer member set --weight 0 pool1 member1",
        "fulcrum loadbalancer member unset --weight --backup pool1 member1",
        "fulcrum loadbalancer l7rule list policy1",
        "fulcrum loadbalancer l7rule delete policy1 6f9a5e4e-0c34-4b8a-9c1a-1f7b2d7c0a11",
        "fulcrum loadbalancer set --name lb2 --disable --tag blue lb1",
        "fulcrum loadbalancer unset --description --all-tag lb1",
        "fulcrum loadbalancer quota list",
        "fulcrum loadbalancer quota show project1",
        "fulcrum loadbalancer quota defaults show",
        "fulcrum loadbalancer quota set --loadbalancer 10 --listener -1 --l7rule 50 project1",
        "fulcrum loadbalancer quota unset --loadbalancer --healthmonitor project1",
        "fulcrum loadbalancer quota reset project1",
        "fulcrum cluster status",
        "fulcrum cluster add-learner --node-id 4 --peer-address 10.0.0.4:9877",
        "fulcrum cluster promote 4",
        "fulcrum cluster remove 4 -f json",
    ];
    for line in cmds {
        if let Err(e) = parse(line) {
            panic!("{line}\n{e}");
        }
    }
}

#[test]
fn listener_create_parses_every_option() {
    let line = "fulcrum loadbalancer listener create --name l1 --description d --protocol terminated_https \
        --protocol-port 443 --connection-limit -1 --default-pool pool1 --default-tls-container-ref ref1 \
        --sni-container-refs a b --insert-headers X-Forwarded-For=true,X-Forwarded-Port=true \
        --timeout-client-data 50000 --timeout-member-connect 5000 --timeout-member-data 50000 \
        --timeout-tcp-inspect 0 --client-ca-tls-container-ref ca --client-authentication optional \
        --client-crl-container-ref crl --allowed-cidr 192.0.2.0/24 --allowed-cidr 198.51.100.0/24 \
        --tls-ciphers ECDHE --tls-version TLSv1.2 --tls-version TLSv1.3 --alpn-protocol h2 \
        --hsts-max-age 31536000 --hsts-include-subdomains --hsts-preload --disable --tag t1 --tag t2 --wait lb1";
    let LoadBalancerCommand::Listener(cmd) = lb(line) else {
        panic!("wrong command")
    };
    let listener::ListenerCommand::Create(a) = *cmd else {
        panic!("wrong command")
    };
    assert_eq!(a.loadbalancer, "lb1");
    assert_eq!(a.protocol, Some(Protocol::TerminatedHttps));
    assert_eq!(a.protocol_port, Some(443));
    let o = &a.opts;
    assert_eq!(o.connection_limit, Some(-1));
    assert_eq!(
        o.sni_container_refs.as_deref(),
        Some(&["a".to_string(), "b".to_string()][..])
    );
    assert_eq!(
        o.insert_headers.as_ref().unwrap().0,
        vec![
            ("X-Forwarded-For".to_string(), "true".to_string()),
            ("X-Forwarded-Port".to_string(), "true".to_string())
        ]
    );
    assert_eq!(o.allowed_cidrs, vec!["192.0.2.0/24", "198.51.100.0/24"]);
    assert_eq!(o.tls_versions, vec!["TLSv1.2", "TLSv1.3"]);
    assert_eq!(
        o.client_authentication,
        Some(fulcrum_proto::v1::ClientAuthentication::Optional)
    );
    assert_eq!(o.admin.value(), Some(false));
    assert!(o.hsts_preload && o.hsts_include_subdomains && o.wait);
    assert_eq!(o.tags.for_create(), vec!["t1", "t2"]);
}

#[test]
fn enums_parse_from_octavia_spellings() {
    let LoadBalancerCommand::Pool(cmd) = lb(
        "fulcrum loadbalancer pool create --name p --loadbalancer lb1 --protocol proxyv2 --lb-algorithm source_ip_port \
         --session-persistence type=APP_COOKIE,cookie_name=x",
    ) else {
        panic!()
    };
    let pool::PoolCommand::Create(p) = *cmd else {
        panic!()
    };
    assert_eq!(p.protocol, Some(Protocol::Proxyv2));
    assert_eq!(p.lb_algorithm, Some(LbAlgorithm::SourceIpPort));
    assert_eq!(p.opts.session_persistence.unwrap().0.len(), 2);

    let LoadBalancerCommand::Healthmonitor(cmd) = lb(
        "fulcrum loadbalancer healthmonitor create pool1 --type tls-hello --delay 5 --timeout 3 --max-retries 3 \
         --max-retries-down 10 --http-method get --http-version 1.1 --expected-codes 200-204 --domain-name example.com",
    ) else {
        panic!()
    };
    let healthmonitor::HealthMonitorCommand::Create(h) = *cmd else {
        panic!()
    };
    assert_eq!(h.hm_type, Some(HealthMonitorType::TlsHello));
    assert_eq!(h.opts.http_version, Some(1.1));
    assert_eq!(h.opts.max_retries_down, Some(10));

    let LoadBalancerCommand::L7policy(cmd) = lb(
        "fulcrum loadbalancer l7policy create l1 --action redirect_to_url --redirect-url http://x --redirect-http-code 301 --position 1",
    ) else {
        panic!()
    };
    let l7policy::L7PolicyCommand::Create(p) = *cmd else {
        panic!()
    };
    assert_eq!(p.action, Some(L7PolicyAction::RedirectToUrl));
    assert_eq!(p.opts.redirect_http_code, Some(301));

    let LoadBalancerCommand::L7rule(cmd) =
        lb("fulcrum loadbalancer l7rule create p1 --type HOST_NAME --compare-type EQUAL_TO --value www2.example.com --invert")
    else {
        panic!()
    };
    let l7rule::L7RuleCommand::Create(r) = *cmd else {
        panic!()
    };
    assert_eq!(r.rule_type, Some(L7RuleType::HostName));
    assert_eq!(r.compare_type, Some(CompareType::EqualTo));
    assert!(r.opts.invert);
}

#[test]
fn bad_lines_are_refused() {
    let bad = [
        // Required options.
        "fulcrum loadbalancer listener create --name l --protocol-port 80 lb1",
        "fulcrum loadbalancer pool create --protocol HTTP --lb-algorithm ROUND_ROBIN",
        "fulcrum loadbalancer member create --address 10.0.0.4 pool1",
        "fulcrum loadbalancer healthmonitor create --type HTTP --delay 5 --timeout 3 pool1",
        // Choices.
        "fulcrum loadbalancer listener create --protocol FTP --protocol-port 21 lb1",
        "fulcrum loadbalancer pool create --listener l --protocol TERMINATED_HTTPS --lb-algorithm ROUND_ROBIN",
        "fulcrum loadbalancer healthmonitor create --type TLS_HELLOX --delay 5 --timeout 3 --max-retries 3 pool1",
        "fulcrum loadbalancer healthmonitor create --type HTTP --delay 5 --timeout 3 --max-retries 11 pool1",
        "fulcrum loadbalancer l7policy create --action REDIRECT_TO_POOL --redirect-http-code 404 l1",
        // Exclusive pairs.
        "fulcrum loadbalancer set --enable --disable lb1",
        "fulcrum loadbalancer pool create --listener l --loadbalancer lb --protocol HTTP --lb-algorithm ROUND_ROBIN",
        "fulcrum loadbalancer member set --enable-backup --disable-backup pool1 m1",
        // Malformed k=v.
        "fulcrum loadbalancer listener set --insert-headers X-Forwarded-For l1",
        // Output format.
        "fulcrum loadbalancer show lb1 -f csv",
    ];
    for line in bad {
        assert!(parse(line).is_err(), "accepted: {line}");
    }
}

#[test]
fn output_and_connection_options() {
    let cli = parse("fulcrum --endpoint http://10.0.0.1:9876 loadbalancer list -f yaml -c id --sort-column name --token t").unwrap();
    assert_eq!(cli.conn.endpoint.as_deref(), Some("http://10.0.0.1:9876"));
    assert_eq!(cli.conn.token.as_deref(), Some("t"));
    let Top::Loadbalancer(LoadBalancerCommand::List(l)) = cli.cmd else {
        panic!()
    };
    assert_eq!(l.output.format, ListFormat::Yaml);
    assert_eq!(l.output.columns, vec!["id"]);
    assert_eq!(l.output.sort_columns, vec!["name"]);

    let LoadBalancerCommand::Show(s) = lb("fulcrum loadbalancer show lb1 -f value -c vip_address")
    else {
        panic!()
    };
    assert_eq!(s.output.format, OneFormat::Value);
    assert_eq!(s.output.columns, vec!["vip_address"]);

    let LoadBalancerCommand::Quota(cmd) =
        lb("fulcrum loadbalancer quota set --loadbalancer 10 --listener -1 project1")
    else {
        panic!()
    };
    let quota::QuotaCommand::Set(q) = *cmd else {
        panic!()
    };
    assert_eq!(
        (q.loadbalancer, q.listener, q.project.as_str()),
        (Some(10), Some(-1), "project1")
    );
}
