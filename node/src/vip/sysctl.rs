//! The ARP sysctls that keep the kernel quiet about VIPs held on `lo`, and the IPv6 one
//! that must not be on for an interface with IPv6 VIPs.
//!
//! `arp_ignore=1`: answer ARP only for addresses configured on the interface the request
//! came in on (our VIPs sit on `lo`, so the kernel never answers for them).
//! `arp_announce=2`: never use a VIP as the sender address of the kernel's own ARP
//! requests. Both are set on `all` and on each interface that VIPs are announced on
//! (the kernel uses the larger of `all` and the interface's value).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::VipError;

/// The sysctls and values this module enforces.
const SETTINGS: [(&str, &str); 2] = [("arp_ignore", "1"), ("arp_announce", "2")];

/// Sets `arp_ignore=1` and `arp_announce=2` on `all` and on `interface`.
/// Writes only values that differ, so calling it again is cheap.
pub fn quiet_kernel_arp(interface: &str) -> Result<(), VipError> {
    check_interface_name(interface)?;
    for conf in ["all", interface] {
        for (key, value) in SETTINGS {
            set(&path(conf, key), value)?;
        }
    }
    Ok(())
}

/// Fails with [`VipError::Ipv6Disabled`] when `interface` has `disable_ipv6=1` or the
/// kernel has no IPv6. A missing interface passes (its lookup reports it by name).
pub fn check_ipv6_enabled(interface: &str, address: IpAddr) -> Result<(), VipError> {
    check_interface_name(interface)?;
    let disabled = || VipError::Ipv6Disabled {
        address,
        interface: interface.to_owned(),
    };
    if !Path::new("/proc/sys/net/ipv6/conf").exists() {
        return Err(disabled());
    }
    let path = format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6");
    match std::fs::read_to_string(&path) {
        Ok(value) if value.trim() != "0" => Err(disabled()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VipError::Sysctl { path, source }),
    }
}

/// Refuses names that cannot be interfaces, so they never become paths.
pub fn check_interface_name(interface: &str) -> Result<(), VipError> {
    let ok = !interface.is_empty()
        && interface.len() < 16
        && interface != "."
        && interface != ".."
        && !interface.contains(['/', '\0'])
        && !interface.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(VipError::BadInterfaceName {
            interface: interface.to_owned(),
        })
    }
}

fn path(conf: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{conf}/{key}"))
}

fn set(path: &PathBuf, value: &str) -> Result<(), VipError> {
    let err = |source| VipError::Sysctl {
        path: path.display().to_string(),
        source,
    };
    let current = std::fs::read_to_string(path).map_err(err)?;
    if current.trim() != value {
        std::fs::write(path, value).map_err(err)?;
        tracing::info!(path = %path.display(), value, "set sysctl");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for good in ["eth0", "veth-a.100", "br0", "lo"] {
            assert!(check_interface_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "averyveryverylongname", "a b"] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            path("eth0", "arp_ignore"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/arp_ignore")
        );
    }
}
