//! Interface lookups and VIP addresses on `lo`, through rtnetlink.
//!
//! Addresses this module adds carry the address protocol [`FULCRUM_ADDR_PROTO`]
//! (`IFA_PROTO`, Linux 6.3+; `ip addr` shows `proto 241`), so a restarted process can
//! tell its own addresses from the operator's and remove stale ones. On older kernels the
//! mark is dropped and only addresses added by this process are recognised.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType};
use rtnetlink::Handle;

use super::arp::MacAddr;
use super::VipError;

/// The `IFA_PROTO` value marking addresses added by Fulcrum.
pub const FULCRUM_ADDR_PROTO: u8 = 241;

/// What the VIP module needs to know about an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Hardware address, for Ethernet interfaces.
    pub mac: Option<MacAddr>,
}

/// One address found on an interface.
#[derive(Clone, Debug)]
pub struct LocalAddress {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Whether it carries Fulcrum's `IFA_PROTO` mark.
    pub marked: bool,
    message: AddressMessage,
}

/// A route-netlink connection (its I/O runs as a spawned tokio task).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection and spawns its I/O task on the current tokio runtime.
    /// The connection belongs to the network namespace of the calling thread.
    pub fn connect() -> Result<Netlink, VipError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| VipError::Netlink {
                what: "open route netlink socket".into(),
                source: e,
            })?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Looks up an interface by name.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, VipError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let message = match links.try_next().await {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Err(VipError::NoSuchInterface {
                    interface: name.into(),
                })
            }
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                return Err(VipError::NoSuchInterface {
                    interface: name.into(),
                })
            }
            Err(e) => return Err(nl_error(format!("look up interface {name}"), e)),
        };
        let mac = if message.header.link_layer_type == LinkLayerType::Ether {
            message.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(bytes) => MacAddr::from_slice(bytes),
                _ => None,
            })
        } else {
            None
        };
        Ok(LinkInfo {
            index: message.header.index,
            mac,
        })
    }

    /// Every address on the interface with index `ifindex`, both families.
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<LocalAddress>, VipError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut out = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| nl_error(format!("list addresses of interface {ifindex}"), e))?
        {
            if message.header.index != ifindex {
                continue;
            }
            let mut local = None;
            let mut address = None;
            let mut marked = false;
            for attribute in &message.attributes {
                match attribute {
                    AddressAttribute::Local(a) => local = Some(*a),
                    AddressAttribute::Address(a) => address = Some(*a),
                    AddressAttribute::Protocol(p) => {
                        marked = u8::from(*p) == FULCRUM_ADDR_PROTO;
                    }
                    _ => {}
                }
            }
            if let Some(address) = local.or(address) {
                out.push(LocalAddress {
                    address,
                    prefix_len: message.header.prefix_len,
                    marked,
                    message,
                });
            }
        }
        Ok(out)
    }

    /// Adds `address` as a host address (/32 or /128, IPv6 with NODAD) to `ifindex`,
    /// marked as Fulcrum's. An address that is already there is not an error.
    ///
    /// IPv6 addresses get NOPREFIXROUTE as well: the /128 "prefix route" the kernel would
    /// add via `lo` is a reject route, which answers traffic for the VIP with "network
    /// unreachable" in the moment before the address's local route is in (the kernel
    /// inserts that one from a work queue; see [`has_local_route`]).
    pub async fn add_host_address(&self, ifindex: u32, address: IpAddr) -> Result<(), VipError> {
        let prefix_len = if address.is_ipv4() { 32 } else { 128 };
        let mut request = self.handle.address().add(ifindex, address, prefix_len);
        let message = request.message_mut();
        message.header.scope = AddressScope::Universe;
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                FULCRUM_ADDR_PROTO,
            )));
        if address.is_ipv6() {
            message.header.flags |= AddressHeaderFlags::Nodad;
            message.attributes.push(AddressAttribute::Flags(
                AddressFlags::Nodad | AddressFlags::Noprefixroute,
            ));
        }
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_error(format!("add address {address}/{prefix_len}"), e)),
        }
    }

    /// Removes an address found by [`Netlink::addresses`]. One already gone is not an error.
    pub async fn delete(&self, address: &LocalAddress) -> Result<(), VipError> {
        match self
            .handle
            .address()
            .del(address.message.clone())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(nl_error(
                format!("delete address {}/{}", address.address, address.prefix_len),
                e,
            )),
        }
    }
}

/// `RTF_LOCAL` from `<linux/ipv6_route.h>`.
const RTF_LOCAL: u32 = 0x8000_0000;

/// Whether the kernel's IPv6 routes (the text of `/proc/net/ipv6_route`, all tables)
/// hold the local route of `address`, which makes the kernel accept traffic for it. For
/// an IPv6 address the kernel inserts it only after duplicate address detection (at
/// once with NODAD, but from a work queue that waits for the RTNL lock), so it can lag
/// behind the netlink answer to adding the address.
pub fn has_local_route(ipv6_route: &str, address: Ipv6Addr) -> bool {
    let dest: String = address
        .octets()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ipv6_route.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 10
            && fields[0] == dest
            && fields[1] == "80"
            && u32::from_str_radix(fields[8], 16).is_ok_and(|flags| flags & RTF_LOCAL != 0)
    })
}

/// The errno of a netlink NACK.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn nl_error(what: String, e: rtnetlink::Error) -> VipError {
    let source = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    VipError::Netlink { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_route_in_proc_ipv6_route() {
        let text = "\
fd000077000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fd000077000100000000000000000050 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00200201       lo
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
";
        let vip: Ipv6Addr = "fd00:77:1::50".parse().unwrap();
        assert!(!has_local_route(text, vip), "only the reject prefix route");
        assert!(has_local_route(text, Ipv6Addr::LOCALHOST));
        let with_local = format!(
            "{text}fd000077000100000000000000000050 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n"
        );
        assert!(has_local_route(&with_local, vip));
        assert!(!has_local_route("", vip));
        assert!(!has_local_route("garbage\n", vip));
    }
}
