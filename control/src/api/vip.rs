//! VIP subnets: named address pools in the cluster config that `vip_subnet_id` refers to.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// A named pool of VIP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSubnet {
    /// What `vip_subnet_id` names.
    pub name: String,
    /// The subnet the VIPs live in.
    pub cidr: IpNet,
    /// First and last address handed out.
    pub first: IpAddr,
    pub last: IpAddr,
    /// Interface the VIPs are announced on (empty for loopback subnets).
    pub interface: String,
}

/// A VIP subnet definition that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VipSubnetError {
    #[error("vip subnet {name}: cidr '{cidr}' is not a valid CIDR")]
    Cidr { name: String, cidr: String },
    #[error("vip subnet {name}: '{address}' is not an address inside {cidr}")]
    Range {
        name: String,
        address: String,
        cidr: String,
    },
    #[error("vip subnet {name}: allocation range {first}-{last} is empty")]
    Empty {
        name: String,
        first: String,
        last: String,
    },
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

fn from_u128(v: u128, v4: bool) -> Option<IpAddr> {
    if v4 {
        u32::try_from(v).ok().map(|v| IpAddr::V4(v.into()))
    } else {
        Some(IpAddr::V6(v.into()))
    }
}

impl VipSubnet {
    /// Parses a subnet; `first`/`last` default to the subnet's usable hosts.
    pub fn parse(
        name: &str,
        cidr: &str,
        first: Option<&str>,
        last: Option<&str>,
        interface: &str,
    ) -> Result<Self, VipSubnetError> {
        let net: IpNet = cidr.parse().map_err(|_| VipSubnetError::Cidr {
            name: name.into(),
            cidr: cidr.into(),
        })?;
        let net = net.trunc();
        let hosts = |pick_first: bool| {
            let mut hosts = net.hosts();
            if pick_first {
                hosts.next()
            } else {
                hosts.last()
            }
        };
        let parse = |given: Option<&str>, pick_first: bool| -> Result<IpAddr, VipSubnetError> {
            let bad = |a: &str| VipSubnetError::Range {
                name: name.into(),
                address: a.into(),
                cidr: net.to_string(),
            };
            match given {
                Some(a) => {
                    let ip: IpAddr = a.parse().map_err(|_| bad(a))?;
                    net.contains(&ip).then_some(ip).ok_or_else(|| bad(a))
                }
                None => hosts(pick_first).ok_or_else(|| bad("(none)")),
            }
        };
        let (first, last) = (parse(first, true)?, parse(last, false)?);
        if to_u128(first) > to_u128(last) {
            return Err(VipSubnetError::Empty {
                name: name.into(),
                first: first.to_string(),
                last: last.to_string(),
            });
        }
        Ok(Self {
            name: name.into(),
            cidr: net,
            first,
            last,
            interface: interface.into(),
        })
    }

    /// Whether an address is in this subnet.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.cidr.contains(ip)
    }

    /// The lowest address of the allocation range not in `used`.
    pub fn allocate(&self, used: &HashSet<IpAddr>) -> Option<IpAddr> {
        let v4 = self.first.is_ipv4();
        (to_u128(self.first)..=to_u128(self.last))
            .filter_map(|v| from_u128(v, v4))
            .find(|ip| !used.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_address_in_range() {
        let s = VipSubnet::parse(
            "private-subnet",
            "127.0.10.0/24",
            Some("127.0.10.10"),
            Some("127.0.10.12"),
            "",
        )
        .unwrap();
        let mut used = HashSet::new();
        assert_eq!(s.allocate(&used), Some("127.0.10.10".parse().unwrap()));
        used.insert("127.0.10.10".parse().unwrap());
        used.insert("127.0.10.11".parse().unwrap());
        assert_eq!(s.allocate(&used), Some("127.0.10.12".parse().unwrap()));
        used.insert("127.0.10.12".parse().unwrap());
        assert_eq!(s.allocate(&used), None);
    }

    #[test]
    fn refuses_bad_definitions() {
        assert!(matches!(
            VipSubnet::parse("a", "10.0.0/24", None, None, ""),
            Err(VipSubnetError::Cidr { .. })
        ));
        assert!(matches!(
            VipSubnet::parse("a", "10.0.0.0/24", Some("10.0.1.5"), None, ""),
            Err(VipSubnetError::Range { .. })
        ));
        assert!(matches!(
            VipSubnet::parse("a", "10.0.0.0/24", Some("10.0.0.9"), Some("10.0.0.5"), ""),
            Err(VipSubnetError::Empty { .. })
        ));
        let s = VipSubnet::parse("a", "10.0.0.0/30", None, None, "eth0").unwrap();
        assert_eq!(
            (s.first.to_string(), s.last.to_string()),
            ("10.0.0.1".into(), "10.0.0.2".into())
        );
    }
}
