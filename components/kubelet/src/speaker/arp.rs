//! Gratuitous ARP: when a node takes over a load balancer address it tells
//! the lab network at once that the address now lives at its MAC, so the
//! machine running the lab (and every other node) updates its neighbour
//! entry instead of sending to the old node until the entry goes stale.
//!
//! Sent from a raw AF_PACKET socket rather than by `arping -U` (Debian's
//! iputils-arping): the frame is 42 bytes that are easy to build and
//! test, and this keeps the base image (and so every image's tag) as it
//! is and spares a process per takeover.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use nix::libc;

const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;

/// ARP's operation codes: a gratuitous ARP is sent as both (some hosts
/// only heed one of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request = 1,
    Reply = 2,
}

/// A broadcast Ethernet frame announcing `ip` at `mac`: sender and target
/// protocol addresses are both `ip` (what makes it gratuitous).
pub fn frame(mac: [u8; 6], ip: Ipv4Addr, operation: Operation) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // Hardware Ethernet (1), protocol IPv4, address lengths 6 and 4.
    f[14..16].copy_from_slice(&1u16.to_be_bytes());
    f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&(operation as u16).to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // The target hardware address: unknown (zero) in a request, the
    // broadcast address in a reply, as arping -U and -A write them.
    let target_mac = match operation {
        Operation::Request => [0u8; 6],
        Operation::Reply => BROADCAST,
    };
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The MAC of an interface (from its link-layer address, asked of the
/// kernel: sysfs shows the namespace it was mounted in, not ours).
pub fn mac_of(interface: &str) -> Result<[u8; 6]> {
    for ifaddr in nix::ifaddrs::getifaddrs()? {
        if ifaddr.interface_name == interface {
            if let Some(mac) = ifaddr.address.as_ref().and_then(|a| a.as_link_addr()).and_then(|l| l.addr()) {
                return Ok(mac);
            }
        }
    }
    bail!("{interface} has no MAC address")
}

/// Broadcasts a gratuitous ARP request and reply for `ip` on `interface`.
pub fn announce(interface: &str, ip: Ipv4Addr) -> Result<()> {
    let mac = mac_of(interface)?;
    let index = nix::net::if_::if_nametoindex(interface).with_context(|| format!("the index of {interface}"))?;
    let protocol = ETHERTYPE_ARP.to_be();
    // SAFETY: a plain socket(2) call; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    if fd < 0 {
        bail!("opening a packet socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor just returned by socket(2), owned by no one else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&BROADCAST);
    for operation in [Operation::Request, Operation::Reply] {
        let bytes = frame(mac, ip, operation);
        // SAFETY: the buffer and the address outlive the call, with their true lengths.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            bail!("sending a gratuitous ARP for {ip} on {interface}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_request_names_the_address_as_sender_and_target() {
        let mac = [0x02, 0x42, 0xac, 0x1e, 0x00, 0x03];
        let ip = Ipv4Addr::new(172, 30, 0, 240);
        let request = frame(mac, ip, Operation::Request);
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // to everyone
            0x02, 0x42, 0xac, 0x1e, 0x00, 0x03, // from the node
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, // Ethernet, IPv4
            0x00, 0x01, // request
            0x02, 0x42, 0xac, 0x1e, 0x00, 0x03, 172, 30, 0, 240, // sender: the node's MAC, the address
            0, 0, 0, 0, 0, 0, 172, 30, 0, 240, // target: the address itself
        ];
        assert_eq!(request, expected);
        let reply = frame(mac, ip, Operation::Reply);
        assert_eq!(&reply[20..22], &[0, 2]);
        assert_eq!(&reply[32..38], &BROADCAST);
        assert_eq!(&reply[..20], &request[..20]);
    }
}
