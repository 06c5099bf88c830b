//! Proto enums as Octavia spells them: `PROTOCOL_TCP` is `TCP` on the command line and in
//! output, `HEALTH_MONITOR_TYPE_TLS_HELLO` is `TLS-HELLO`. Parsing is case-insensitive, as
//! octaviaclient upper-cases choices.

use clap::builder::{MapValueParser, PossibleValuesParser, TypedValueParser};
use fulcrum_proto::v1::{
    ClientAuthentication, CompareType, HealthMonitorType, HttpMethod, L7PolicyAction, L7RuleType,
    LbAlgorithm, NodeRole, OperatingStatus, Protocol, ProvisioningStatus, SessionPersistenceType,
};

use super::value::Value;

/// A generated proto enum whose value names carry a common prefix.
pub trait ProtoEnum: Sized + Copy + Send + Sync + 'static {
    /// The prefix of every value name, e.g. `PROTOCOL_`.
    const PREFIX: &'static str;
    /// Whether Octavia writes the rest with `-` instead of `_` (health monitor types).
    const HYPHEN: bool = false;
    /// The proto value name, e.g. `PROTOCOL_TCP`.
    fn proto_name(self) -> &'static str;
    /// The value with this proto name.
    fn from_proto_name(name: &str) -> Option<Self>;
    /// The value with this number.
    fn from_number(n: i32) -> Option<Self>;
}

macro_rules! proto_enum {
    ($t:ty, $prefix:literal $(, $hyphen:literal)?) => {
        impl ProtoEnum for $t {
            const PREFIX: &'static str = $prefix;
            $(const HYPHEN: bool = $hyphen;)?
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_proto_name(name: &str) -> Option<Self> {
                <$t>::from_str_name(name)
            }
            fn from_number(n: i32) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
        }
    };
}

proto_enum!(ProvisioningStatus, "PROVISIONING_STATUS_");
proto_enum!(OperatingStatus, "OPERATING_STATUS_");
proto_enum!(Protocol, "PROTOCOL_");
proto_enum!(LbAlgorithm, "LB_ALGORITHM_");
proto_enum!(SessionPersistenceType, "SESSION_PERSISTENCE_TYPE_");
proto_enum!(HealthMonitorType, "HEALTH_MONITOR_TYPE_", true);
proto_enum!(HttpMethod, "HTTP_METHOD_");
proto_enum!(L7PolicyAction, "L7_POLICY_ACTION_");
proto_enum!(L7RuleType, "L7_RULE_TYPE_");
proto_enum!(CompareType, "COMPARE_TYPE_");
proto_enum!(ClientAuthentication, "CLIENT_AUTHENTICATION_");
proto_enum!(NodeRole, "NODE_ROLE_");

/// Octavia's spelling of a value (`TCP`, `TLS-HELLO`).
pub fn cli_name<E: ProtoEnum>(e: E) -> String {
    let rest = e
        .proto_name()
        .strip_prefix(E::PREFIX)
        .unwrap_or(e.proto_name());
    if E::HYPHEN {
        rest.replace('_', "-")
    } else {
        rest.to_string()
    }
}

/// Parses Octavia's spelling (any case; `-` and `_` alike). `UNSPECIFIED` is not a value.
pub fn parse_cli<E: ProtoEnum>(s: &str) -> Option<E> {
    let rest = s.trim().to_ascii_uppercase().replace('-', "_");
    if rest == "UNSPECIFIED" {
        return None;
    }
    E::from_proto_name(&format!("{}{rest}", E::PREFIX))
}

/// How a stored enum number prints: its Octavia name, `null` when unspecified, the number when
/// this client does not know it.
pub fn enum_value<E: ProtoEnum>(n: i32) -> Value {
    match E::from_number(n) {
        Some(e) if n != 0 => Value::Str(cli_name(e)),
        Some(_) => Value::Null,
        None => Value::Str(n.to_string()),
    }
}

/// The Octavia name of a stored enum number, for messages ("" when unspecified).
pub fn enum_text<E: ProtoEnum>(n: i32) -> String {
    match enum_value::<E>(n) {
        Value::Str(s) => s,
        _ => String::new(),
    }
}

/// A clap value parser accepting `choices` (Octavia spellings, any case) and yielding the enum.
pub fn choices<E: ProtoEnum>(
    choices: &'static [&'static str],
) -> MapValueParser<PossibleValuesParser, fn(String) -> E> {
    fn map<E: ProtoEnum>(s: String) -> E {
        // PossibleValuesParser has already checked `s` against the choices.
        parse_cli::<E>(&s).unwrap_or_else(|| panic!("choice {s} is not a value of {}", E::PREFIX))
    }
    PossibleValuesParser::new(choices).map(map::<E> as fn(String) -> E)
}

/// Listener protocols.
pub const LISTENER_PROTOCOLS: &[&str] = &[
    "TCP",
    "HTTP",
    "HTTPS",
    "TERMINATED_HTTPS",
    "UDP",
    "SCTP",
    "PROMETHEUS",
];
/// Pool protocols.
pub const POOL_PROTOCOLS: &[&str] = &["TCP", "HTTP", "HTTPS", "PROXY", "PROXYV2", "UDP", "SCTP"];
/// Load balancing algorithms.
pub const LB_ALGORITHMS: &[&str] = &[
    "SOURCE_IP",
    "ROUND_ROBIN",
    "LEAST_CONNECTIONS",
    "SOURCE_IP_PORT",
];
/// Health monitor types.
pub const HM_TYPES: &[&str] = &[
    "PING",
    "HTTP",
    "TCP",
    "HTTPS",
    "TLS-HELLO",
    "UDP-CONNECT",
    "SCTP",
];
/// Health monitor HTTP methods.
pub const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH",
];
/// L7 policy actions.
pub const L7_ACTIONS: &[&str] = &[
    "REDIRECT_TO_URL",
    "REDIRECT_TO_POOL",
    "REDIRECT_PREFIX",
    "REJECT",
];
/// L7 rule types.
pub const L7_RULE_TYPES: &[&str] = &[
    "FILE_TYPE",
    "PATH",
    "COOKIE",
    "HOST_NAME",
    "HEADER",
    "SSL_CONN_HAS_CERT",
    "SSL_VERIFY_RESULT",
    "SSL_DN_FIELD",
];
/// L7 rule compare types.
pub const COMPARE_TYPES: &[&str] = &["REGEX", "EQUAL_TO", "CONTAINS", "ENDS_WITH", "STARTS_WITH"];
/// Listener client authentication modes.
pub const CLIENT_AUTH: &[&str] = &["NONE", "OPTIONAL", "MANDATORY"];
/// Provisioning statuses a list can filter on.
pub const PROVISIONING_STATUSES: &[&str] = &[
    "ACTIVE",
    "ERROR",
    "PENDING_CREATE",
    "PENDING_UPDATE",
    "PENDING_DELETE",
];
/// Operating statuses a list can filter on.
pub const OPERATING_STATUSES: &[&str] = &[
    "ONLINE",
    "DRAINING",
    "OFFLINE",
    "DEGRADED",
    "ERROR",
    "NO_MONITOR",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_both_ways() {
        assert_eq!(cli_name(Protocol::Tcp), "TCP");
        assert_eq!(cli_name(Protocol::TerminatedHttps), "TERMINATED_HTTPS");
        assert_eq!(cli_name(HealthMonitorType::TlsHello), "TLS-HELLO");
        assert_eq!(cli_name(HealthMonitorType::UdpConnect), "UDP-CONNECT");
        assert_eq!(cli_name(L7RuleType::HostName), "HOST_NAME");
        assert_eq!(cli_name(L7PolicyAction::RedirectToPool), "REDIRECT_TO_POOL");
        assert_eq!(
            parse_cli::<HealthMonitorType>("tls-hello"),
            Some(HealthMonitorType::TlsHello)
        );
        assert_eq!(
            parse_cli::<HealthMonitorType>("UDP-CONNECT"),
            Some(HealthMonitorType::UdpConnect)
        );
        assert_eq!(
            parse_cli::<LbAlgorithm>("round_robin"),
            Some(LbAlgorithm::RoundRobin)
        );
        assert_eq!(
            parse_cli::<CompareType>("EQUAL_TO"),
            Some(CompareType::EqualTo)
        );
        assert_eq!(parse_cli::<Protocol>("UNSPECIFIED"), None);
        assert_eq!(parse_cli::<Protocol>("FTP"), None);
        for list in [LISTENER_PROTOCOLS, POOL_PROTOCOLS] {
            for p in list {
                assert_eq!(cli_name(parse_cli::<Protocol>(p).unwrap()), *p);
            }
        }
        for t in HM_TYPES {
            assert_eq!(cli_name(parse_cli::<HealthMonitorType>(t).unwrap()), *t);
        }
        for (list, f) in [
            (
                LB_ALGORITHMS,
                (|s| parse_cli::<LbAlgorithm>(s).map(cli_name)) as fn(&str) -> Option<String>,
            ),
            (HTTP_METHODS, |s| parse_cli::<HttpMethod>(s).map(cli_name)),
            (L7_ACTIONS, |s| parse_cli::<L7PolicyAction>(s).map(cli_name)),
            (L7_RULE_TYPES, |s| parse_cli::<L7RuleType>(s).map(cli_name)),
            (COMPARE_TYPES, |s| parse_cli::<CompareType>(s).map(cli_name)),
            (CLIENT_AUTH, |s| {
                parse_cli::<ClientAuthentication>(s).map(cli_name)
            }),
            (PROVISIONING_STATUSES, |s| {
                parse_cli::<ProvisioningStatus>(s).map(cli_name)
            }),
            (OPERATING_STATUSES, |s| {
                parse_cli::<OperatingStatus>(s).map(cli_name)
            }),
        ] {
            for v in list {
                assert_eq!(f(v).as_deref(), Some(*v));
            }
        }
    }

    #[test]
    fn stored_numbers_print_as_names() {
        assert_eq!(
            enum_value::<Protocol>(Protocol::Http as i32),
            Value::str("HTTP")
        );
        assert_eq!(enum_value::<ProvisioningStatus>(0), Value::Null);
        assert_eq!(enum_value::<OperatingStatus>(99), Value::str("99"));
        assert_eq!(
            enum_text::<ProvisioningStatus>(ProvisioningStatus::PendingCreate as i32),
            "PENDING_CREATE"
        );
    }
}
