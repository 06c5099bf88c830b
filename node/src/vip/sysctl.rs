//! The ARP sysctls that keep the kernel quiet about VIPs held on `lo`.
//!
//! `arp_ignore=1`: answer ARP only for addresses configured on the interface the request
//! came in on (our VIPs sit on `lo`, so the kernel never answers for them).
//! `arp_announce=2`: never use a VIP as the sender address of the kernel's own ARP
//! requests. Both are set on `all` and on each interface that VIPs are announced on
//! (the kernel uses the larger of `all` and the interface's value).

use std::path::PathBuf;

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
