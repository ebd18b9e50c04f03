//! The SIP UDP socket: receives each datagram together with the local address it was sent to, and sends
//! from a chosen local address, on the tokio reactor; it does not parse SIP or decide which address to use.
//!
//! nix, not quinn-udp: quinn-udp forces don't-fragment (and GRO) for QUIC, which loses SIP responses over the MTU.
//! (IP_PMTUDISC_PROBE / IPV6_DONTFRAG make a datagram larger than the link MTU fail with EMSGSIZE, and
//! RFC 3261 §18.2.2 sends responses over UDP whatever their size; nix is only recvmsg/sendmsg + PKTINFO.)
//!
//! On a socket bound to 0.0.0.0 or `::` the bound address says nothing about which of the machine's
//! addresses a phone dialled, yet Contact, Via and SDP must name that one and replies must leave from it
//! (a phone drops an answer from an address it did not send to). The kernel tells both per datagram:
//! `IP_PKTINFO` / `IPV6_RECVPKTINFO` on receive, the same control message on send.
//!
//! A dual-stack `::` socket sees IPv4 peers as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), in `from`
//! and `dst` alike; [`SipUdpSocket::send_to`] accepts either form.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::libc;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// How much the kernel may queue for the SIP UDP socket. The default (~200 KiB) overflows at around a
/// thousand calls per second, and a dropped ACK or BYE costs a 32 s no-ACK release; Linux caps the value
/// at `net.core.rmem_max`.
pub const SIP_UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// One datagram's addresses, as [`SipUdpSocket::recv`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes written to the buffer (a datagram longer than the buffer is cut to it, as `recv_from` does).
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// Our address the datagram was sent to: its destination IP and the socket's port. Falls back to the
    /// bound address if the kernel gave no destination (it always does on Linux once enabled).
    pub dst: SocketAddr,
}

/// A UDP socket that reports each datagram's destination address and sends from a given source address.
#[derive(Debug)]
pub struct SipUdpSocket {
    io: Arc<UdpSocket>,
    local: SocketAddr,
}

impl SipUdpSocket {
    /// Binds `addr` with a [`SIP_UDP_RECV_BUFFER`] receive buffer (socket2: std and tokio cannot set
    /// SO_RCVBUF). Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if let Err(err) = socket.set_recv_buffer_size(SIP_UDP_RECV_BUFFER) {
            tracing::warn!(%err, "cannot enlarge the SIP receive buffer");
        }
        socket.bind(&addr.into())?;
        Self::from_std(socket.into())
    }

    /// Wraps a bound socket (its options, e.g. `IPV6_V6ONLY`, stay as they are) and turns on destination
    /// reporting. Must be called inside a tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        let local = socket.local_addr()?;
        // On an IPv6 socket, IPv4-mapped datagrams are reported through IPV6_PKTINFO too.
        match local {
            SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?,
            SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?,
        }
        socket.set_nonblocking(true)?;
        Ok(SipUdpSocket {
            io: Arc::new(UdpSocket::from_std(socket)?),
            local,
        })
    }

    /// The bound address (possibly 0.0.0.0 or `::`, with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next datagram and reports who sent it and to which of our addresses.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.io
            .async_io(Interest::READABLE, || self.try_recv(&mut *buf))
            .await
    }

    /// The next datagram if one is already queued (`WouldBlock` if none), without waiting: the core
    /// drains a burst after one wakeup instead of going back through its `select!` per datagram.
    pub fn try_recv_now(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.io
            .try_io(Interest::READABLE, || self.try_recv(&mut *buf))
    }

    /// Sends `bytes` to `to` with source address `from` (an address of this machine, normally a
    /// [`Received::dst`] IP); an unspecified `from` lets the kernel choose. An IPv4 `to`/`from` on an
    /// IPv6 socket is sent IPv4-mapped; an IPv6 one on an IPv4 socket is refused (`InvalidInput`).
    pub async fn send_to(&self, bytes: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<usize> {
        let (to, from) = self.fit_family(to, from)?;
        self.io
            .async_io(Interest::WRITABLE, || self.try_send(bytes, to, from))
            .await
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            self.io.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg[..]),
            MsgFlags::empty(),
        )?;
        let from = msg
            .address
            .as_ref()
            .and_then(to_std)
            .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
        let mut dst_ip = None;
        // A truncated control buffer (cannot happen with one pktinfo) only loses the destination.
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    // ipi_spec_dst, not ipi_addr: it equals the destination for unicast and is the
                    // interface's own address for a broadcast, i.e. always one a reply can come from.
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        let ip = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                        dst_ip = Some(IpAddr::V4(ip));
                    }
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        dst_ip = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
        }
        Ok(Received {
            len: msg.bytes,
            from,
            dst: SocketAddr::new(dst_ip.unwrap_or(self.local.ip()), self.local.port()),
        })
    }

    fn try_send(&self, bytes: &[u8], to: SocketAddr, from: IpAddr) -> io::Result<usize> {
        let iov = [IoSlice::new(bytes)];
        let dest = SockaddrStorage::from(to);
        let fd = self.io.as_raw_fd();
        let flags = MsgFlags::empty();
        let sent = match from {
            ip if ip.is_unspecified() => sendmsg(fd, &iov, &[], flags, Some(&dest)),
            IpAddr::V4(ip) => {
                // On send, ipi_spec_dst is the source address; ipi_addr is ignored.
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                sendmsg(fd, &iov, &cmsg, flags, Some(&dest))
            }
            IpAddr::V6(ip) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                sendmsg(fd, &iov, &cmsg, flags, Some(&dest))
            }
        };
        Ok(sent?)
    }

    /// Puts `to` and `from` in the socket's address family.
    fn fit_family(&self, to: SocketAddr, from: IpAddr) -> io::Result<(SocketAddr, IpAddr)> {
        let wrong = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv6 address on an IPv4 socket",
            )
        };
        match self.local {
            SocketAddr::V6(_) => {
                let to = match to {
                    SocketAddr::V4(v4) => {
                        SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
                    }
                    v6 => v6,
                };
                let from = match from {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    IpAddr::V4(ip) => IpAddr::V6(ip.to_ipv6_mapped()),
                    v6 => v6,
                };
                Ok((to, from))
            }
            SocketAddr::V4(_) => {
                let to = match to.ip().to_canonical() {
                    IpAddr::V4(ip) => SocketAddr::V4(SocketAddrV4::new(ip, to.port())),
                    IpAddr::V6(_) => return Err(wrong()),
                };
                let from = match from.to_canonical() {
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => return Err(wrong()),
                    v4 => v4,
                };
                Ok((to, from))
            }
        }
    }
}

fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A bound on waiting for a datagram on loopback, not a pause: the tests wait for the event itself.
    const WAIT: Duration = Duration::from_secs(5);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    async fn recv(sock: &SipUdpSocket) -> (Vec<u8>, Received) {
        let mut buf = vec![0u8; 65_536];
        let r = tokio::time::timeout(WAIT, sock.recv(&mut buf))
            .await
            .expect("a datagram within the wait")
            .expect("recv");
        buf.truncate(r.len);
        (buf, r)
    }

    async fn client_recv(client: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = tokio::time::timeout(WAIT, client.recv_from(&mut buf))
            .await
            .expect("a reply within the wait")
            .expect("recv_from");
        buf.truncate(n);
        (buf, from)
    }

    #[tokio::test]
    async fn wildcard_v4_reports_the_address_each_datagram_was_sent_to() {
        let server = SipUdpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind");
        let port = server.local_addr().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let client_addr = client.local_addr().expect("client addr");

        client
            .send_to(b"one", ("127.0.0.1", port))
            .await
            .expect("send");
        client
            .send_to(b"two", ("127.0.0.2", port))
            .await
            .expect("send");

        let (bytes, r) = recv(&server).await;
        assert_eq!(bytes, b"one");
        assert_eq!(r.from, client_addr);
        assert_eq!(r.dst, SocketAddr::new(ip("127.0.0.1"), port));
        let (bytes, r) = recv(&server).await;
        assert_eq!(bytes, b"two");
        assert_eq!(r.from, client_addr);
        assert_eq!(r.dst, SocketAddr::new(ip("127.0.0.2"), port));
    }

    #[tokio::test]
    async fn reply_leaves_from_the_chosen_v4_source() {
        let server = SipUdpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind");
        let port = server.local_addr().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let client_addr = client.local_addr().expect("client addr");

        for source in ["127.0.0.2", "127.0.0.1", "127.0.0.2"] {
            let n = server
                .send_to(b"reply", client_addr, ip(source))
                .await
                .expect("send");
            assert_eq!(n, 5);
            let (bytes, from) = client_recv(&client).await;
            assert_eq!(bytes, b"reply");
            assert_eq!(from, SocketAddr::new(ip(source), port));
        }
    }

    #[tokio::test]
    async fn wildcard_v6_reports_and_replies_from_loopback() {
        let server = SipUdpSocket::bind("[::]:0".parse().expect("addr")).expect("bind");
        let port = server.local_addr().port();
        let client = UdpSocket::bind("[::1]:0")
            .await
            .expect("this machine has no IPv6 loopback ::1: scripts/test enables it");
        let client_addr = client.local_addr().expect("client addr");

        client.send_to(b"six", ("::1", port)).await.expect("send");
        let (bytes, r) = recv(&server).await;
        assert_eq!(bytes, b"six");
        assert_eq!(r.from, client_addr);
        assert_eq!(r.dst, SocketAddr::new(ip("::1"), port));

        server
            .send_to(b"reply", r.from, r.dst.ip())
            .await
            .expect("send");
        let (bytes, from) = client_recv(&client).await;
        assert_eq!(bytes, b"reply");
        assert_eq!(from, SocketAddr::new(ip("::1"), port));
    }

    #[tokio::test]
    async fn dual_stack_socket_reports_and_replies_over_ipv4() {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        socket.set_only_v6(false).expect("dual stack");
        let any: SocketAddr = "[::]:0".parse().expect("addr");
        socket.bind(&any.into()).expect("bind");
        let server = SipUdpSocket::from_std(socket.into()).expect("wrap");
        let port = server.local_addr().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let client_addr = client.local_addr().expect("client addr");

        client
            .send_to(b"four", ("127.0.0.2", port))
            .await
            .expect("send");
        let (bytes, r) = recv(&server).await;
        assert_eq!(bytes, b"four");
        assert_eq!(r.from.ip().to_canonical(), client_addr.ip());
        assert_eq!(r.dst, SocketAddr::new(ip("::ffff:127.0.0.2"), port));

        // Plain IPv4 addresses are accepted and mapped.
        server
            .send_to(b"reply", client_addr, ip("127.0.0.2"))
            .await
            .expect("send");
        let (bytes, from) = client_recv(&client).await;
        assert_eq!(bytes, b"reply");
        assert_eq!(from, SocketAddr::new(ip("127.0.0.2"), port));
    }

    #[tokio::test]
    async fn unspecified_source_lets_the_kernel_choose() {
        let server = SipUdpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind");
        let port = server.local_addr().port();
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let client_addr = client.local_addr().expect("client addr");
        server
            .send_to(b"x", client_addr, ip("0.0.0.0"))
            .await
            .expect("send");
        let (_, from) = client_recv(&client).await;
        assert_eq!(from, SocketAddr::new(ip("127.0.0.1"), port));
    }

    #[tokio::test]
    async fn a_source_that_is_not_ours_or_of_the_wrong_family_is_an_error() {
        let server = SipUdpSocket::bind("0.0.0.0:0".parse().expect("addr")).expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let client_addr = client.local_addr().expect("client addr");
        // 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is sent, the kernel refuses.
        assert!(server
            .send_to(b"x", client_addr, ip("192.0.2.1"))
            .await
            .is_err());
        let err = server
            .send_to(b"x", client_addr, ip("::1"))
            .await
            .expect_err("IPv6 source on an IPv4 socket");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
