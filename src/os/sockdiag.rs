//! Listing the host's listening TCP sockets: port, address, inode and owning uid.
//!
//! Owns: the NETLINK_SOCK_DIAG dump (sock_diag(7), linux/inet_diag.h) and the `/proc/net/tcp`
//! and `/proc/net/tcp6` fallback format. Used by the monitor thread (ProcessMonitor) once per
//! health round: matching these inodes against the fds of a server's own process tree tells who
//! holds each configured port (docs/DESIGN.md §3, §7).
//!
//! Must never: connect to or otherwise touch a user's server (that is `probe`'s job, and this
//! check exists because it does not); block for long (the netlink socket has a receive timeout);
//! keep a socket open between calls.
//!
//! The monitor's round asks only for the watched ports ([`PortDump`]): the kernel filters the
//! dump ([`portfilter`]) and walks its listener table once for both families.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use log::{debug, warn};

use crate::os::portfilter;

const LOG: &str = "ProcessMonitor";

/// One socket in the TCP LISTEN state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Listener {
    /// The bound address (`0.0.0.0` / `::` for a wildcard bind).
    pub addr: IpAddr,
    pub port: u16,
    /// The socket's inode, as seen in `/proc/PID/fd` links (`socket:[inode]`).
    pub inode: u64,
    pub uid: u32,
    /// Connections waiting to be accepted and the most that may wait (the listen backlog), from
    /// sock_diag; `None` from `/proc/net/tcp`, which does not show the backlog.
    pub accept_queue: Option<(u32, u32)>,
}

impl Listener {
    /// Whether a new connection would get through: the kernel completes the handshake of a
    /// listening socket itself unless its accept queue is over the backlog, in which case new
    /// connections hang. Known only through sock_diag.
    pub fn accepts_connections(&self) -> Option<bool> {
        self.accept_queue.map(|(queued, max)| queued <= max)
    }
}

/// Every listening TCP socket (IPv4 and IPv6) in tend's network namespace.
///
/// Uses NETLINK_SOCK_DIAG (26 µs for the lot, docs/NOTES.md "Ports"); if netlink is refused (seccomp,
/// an old or stripped kernel) it falls back to parsing `/proc/net/tcp{,6}`, which costs 12 ms or
/// more because the kernel renders every TCP socket as text.
pub fn listening_sockets() -> io::Result<Vec<Listener>> {
    match netlink_listeners() {
        Ok(v) => Ok(v),
        Err(e) => {
            netlink_refused(&e);
            proc_listeners()
        }
    }
}

/// Says once at warn that netlink failed (tend runs degraded: slower rounds), then only at debug.
fn netlink_refused(e: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        debug!(target: LOG, "sock_diag failed ({e}); reading /proc/net/tcp instead");
    } else {
        warn!(target: LOG, "sock_diag failed ({e}); reading /proc/net/tcp instead");
    }
}

/// The listener dump as the monitor runs it every round, kept between rounds: the request for
/// the watched ports and the receive buffer are built once, not per round.
#[derive(Default)]
pub struct PortDump {
    /// The ports the request was built for.
    ports: Vec<u16>,
    /// The INET_DIAG filter for them.
    filter: Vec<u8>,
    /// A `TCPDIAG_GETSOCK` request with that filter.
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl PortDump {
    /// The listening TCP sockets (IPv4 and IPv6) on `ports` (sorted, without repeats) into
    /// `out`, sorted by port. Only those: the kernel leaves the host's other listeners out of
    /// the reply ([`portfilter`]) and the few a joined range lets through are dropped here.
    pub fn listening_on(&mut self, ports: &[u16], out: &mut Vec<Listener>) -> io::Result<()> {
        out.clear();
        if ports.is_empty() {
            return Ok(());
        }
        if self.ports != ports {
            self.ports = ports.to_vec();
            self.filter = portfilter::bytecode(&portfilter::ranges(ports));
            self.request = compat_request(&self.filter);
        }
        if self.buf.is_empty() {
            self.buf = vec![0; RECV_BUF];
        }
        if let Err(e) = self.netlink(out) {
            netlink_refused(&e);
            out.clear();
            out.extend(proc_listeners()?);
        }
        out.retain(|l| ports.binary_search(&l.port).is_ok());
        out.sort_unstable_by_key(|l| l.port);
        Ok(())
    }

    fn netlink(&mut self, out: &mut Vec<Listener>) -> io::Result<()> {
        // The old request type dumps both families in one walk of the kernel's listener table
        // (it predates the family field); where it is refused, one v2 request per family.
        static COMPAT_REFUSED: AtomicBool = AtomicBool::new(false);
        if !COMPAT_REFUSED.load(Ordering::Relaxed) {
            match self.both_families(out) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    debug!(target: LOG, "sock_diag TCPDIAG_GETSOCK failed ({e}); one request per family");
                    COMPAT_REFUSED.store(true, Ordering::Relaxed);
                    out.clear();
                }
            }
        }
        self.per_family(out)
    }

    fn both_families(&mut self, out: &mut Vec<Listener>) -> io::Result<()> {
        let fd = diag_socket()?;
        send(&fd, &self.request)?;
        read_dump(&fd, 1, &mut self.buf, out)
    }

    fn per_family(&mut self, out: &mut Vec<Listener>) -> io::Result<()> {
        let fd = diag_socket()?;
        for (seq, family) in [(2u32, libc::AF_INET), (3, libc::AF_INET6)] {
            let mut request = v2_request(seq, family as u8);
            append_filter(&mut request, &self.filter);
            send(&fd, &request)?;
            read_dump(&fd, seq, &mut self.buf, out)?;
        }
        Ok(())
    }
}

/// The listeners in the text of `/proc/net/tcp` (`v6` false) or `/proc/net/tcp6` (`v6` true):
/// rows in state `0A` (TCP_LISTEN). Rows that do not parse are skipped.
///
/// Addresses are printed as the in-memory 32-bit words of the network-order address, each as
/// `%08X` in host byte order (so `127.0.0.1` is `0100007F` on little-endian hosts); the port is
/// printed in host order.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| parse_tcp_row(line, v6))
        .collect()
}

fn parse_tcp_row(line: &str, v6: bool) -> Option<Listener> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    let cols: Vec<&str> = line.split_ascii_whitespace().collect();
    if *cols.get(3)? != "0A" {
        return None;
    }
    let (addr, port) = cols.get(1)?.split_once(':')?;
    let addr = if v6 {
        IpAddr::V6(Ipv6Addr::from(parse_addr_words::<16>(addr)?))
    } else {
        IpAddr::V4(Ipv4Addr::from(parse_addr_words::<4>(addr)?))
    };
    Some(Listener {
        addr,
        port: u16::from_str_radix(port, 16).ok()?,
        uid: cols.get(7)?.parse().ok()?,
        inode: cols.get(9)?.parse().ok()?,
        accept_queue: None,
    })
}

/// Decodes N address bytes printed as N/4 host-order 32-bit hex words.
fn parse_addr_words<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != N * 2 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
        let word = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(out)
}

fn proc_listeners() -> io::Result<Vec<Listener>> {
    let mut out = parse_proc_net_tcp(&std::fs::read_to_string("/proc/net/tcp")?, false);
    // A kernel without IPv6 has no tcp6 file; that is not an error.
    match std::fs::read_to_string("/proc/net/tcp6") {
        Ok(text) => out.extend(parse_proc_net_tcp(&text, true)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(out)
}

// ---- NETLINK_SOCK_DIAG ------------------------------------------------------------------
//
// The structs below are linux/netlink.h and linux/inet_diag.h, written out because libc does
// not carry the inet_diag ones. Layouts are fixed kernel ABI; the size asserts guard typos.

/// `SOCK_DIAG_BY_FAMILY` from linux/sock_diag.h.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK` from linux/inet_diag.h: the request before v2, which the kernel answers
/// for both address families at once (`AF_UNSPEC`).
const TCPDIAG_GETSOCK: u16 = 18;
/// `INET_DIAG_REQ_BYTECODE`: the attribute that carries a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `TCP_LISTEN` from include/net/tcp_states.h.
const TCP_LISTEN: u32 = 10;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x100 | 0x200; // NLM_F_ROOT | NLM_F_MATCH
const NLMSG_ALIGNTO: usize = 4;

/// `struct nlmsghdr`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    nlmsg_len: u32,
    nlmsg_type: u16,
    nlmsg_flags: u16,
    nlmsg_seq: u32,
    nlmsg_pid: u32,
}

/// `struct inet_diag_sockid`. Ports and addresses are in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    idiag_sport: [u8; 2],
    idiag_dport: [u8; 2],
    idiag_src: [u8; 16],
    idiag_dst: [u8; 16],
    idiag_if: u32,
    idiag_cookie: [u32; 2],
}

/// `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    sdiag_family: u8,
    sdiag_protocol: u8,
    idiag_ext: u8,
    pad: u8,
    idiag_states: u32,
    id: InetDiagSockId,
}

/// `struct inet_diag_req`, the request before v2 (`TCPDIAG_GETSOCK`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReq {
    idiag_family: u8,
    idiag_src_len: u8,
    idiag_dst_len: u8,
    idiag_ext: u8,
    id: InetDiagSockId,
    idiag_states: u32,
    idiag_dbs: u32,
}

/// `struct inet_diag_msg`, the head of each reply.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    idiag_family: u8,
    idiag_state: u8,
    idiag_timer: u8,
    idiag_retrans: u8,
    id: InetDiagSockId,
    idiag_expires: u32,
    idiag_rqueue: u32,
    idiag_wqueue: u32,
    idiag_uid: u32,
    idiag_inode: u32,
}

/// The request as sent: header then body, with no padding between (16 + 56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DumpRequest {
    hdr: NlMsgHdr,
    req: InetDiagReqV2,
}

const _: () = assert!(mem::size_of::<NlMsgHdr>() == 16);
const _: () = assert!(mem::size_of::<InetDiagSockId>() == 48);
const _: () = assert!(mem::size_of::<InetDiagReqV2>() == 56);
const _: () = assert!(mem::size_of::<InetDiagReq>() == 60);
const _: () = assert!(mem::size_of::<InetDiagMsg>() == 72);
const _: () = assert!(mem::size_of::<DumpRequest>() == 72);

const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// Reads a `T` from the start of `bytes`, or `None` if `bytes` is too short.
/// Only used with the plain-integer `#[repr(C)]` structs above, for which any bit pattern is a
/// valid value.
fn read_pod<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < mem::size_of::<T>() {
        return None;
    }
    let mut out = T::default();
    // SAFETY: `bytes` holds at least size_of::<T>() bytes (checked above); `out` is a valid,
    // exclusively borrowed T of that size; the regions cannot overlap (one is a local). The
    // callers' T are #[repr(C)] structs of integers and byte arrays, valid for any bits.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut out as *mut T).cast::<u8>(),
            mem::size_of::<T>(),
        );
    }
    Some(out)
}

/// A receive timeout so a misbehaving kernel can never stall a health round.
const RECV_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 1,
    tv_usec: 0,
};

/// The receive buffer: a dump reply datagram is at most 32 KiB (the kernel's cap for dump
/// messages); MSG_TRUNC makes a larger one an error rather than lost sockets.
const RECV_BUF: usize = 64 * 1024;

fn netlink_listeners() -> io::Result<Vec<Listener>> {
    let fd = diag_socket()?;
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::new();
    for (seq, family) in [(1u32, libc::AF_INET), (2, libc::AF_INET6)] {
        send(&fd, &v2_request(seq, family as u8))?;
        read_dump(&fd, seq, &mut buf, &mut out)?;
    }
    Ok(out)
}

/// A fresh NETLINK_SOCK_DIAG socket with a receive timeout.
fn diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_INET_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns; OwnedFd closes it
    // exactly once, on every path out of this function.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the option value points at a live timeval of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&RECV_TIMEOUT as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The bytes of a plain-integer `#[repr(C)]` value.
fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `value` is a live T of size_of::<T>() bytes; the callers' T are #[repr(C)]
    // structs of integers and byte arrays without padding (their size asserts above).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), mem::size_of::<T>()) }
}

/// A v2 dump request for the listeners of one address family.
fn v2_request(seq: u32, family: u8) -> Vec<u8> {
    let request = DumpRequest {
        hdr: NlMsgHdr {
            nlmsg_len: mem::size_of::<DumpRequest>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: NLM_F_REQUEST | NLM_F_DUMP,
            nlmsg_seq: seq,
            nlmsg_pid: 0,
        },
        req: InetDiagReqV2 {
            sdiag_family: family,
            sdiag_protocol: libc::IPPROTO_TCP as u8,
            idiag_states: 1 << TCP_LISTEN,
            ..Default::default()
        },
    };
    bytes_of(&request).to_vec()
}

/// A `TCPDIAG_GETSOCK` dump request (sequence 1) for the listeners of both families that
/// `filter` accepts.
fn compat_request(filter: &[u8]) -> Vec<u8> {
    let hdr = NlMsgHdr {
        nlmsg_len: 0,
        nlmsg_type: TCPDIAG_GETSOCK,
        nlmsg_flags: NLM_F_REQUEST | NLM_F_DUMP,
        nlmsg_seq: 1,
        nlmsg_pid: 0,
    };
    let req = InetDiagReq {
        idiag_states: 1 << TCP_LISTEN,
        ..Default::default()
    };
    let mut request = bytes_of(&hdr).to_vec();
    request.extend_from_slice(bytes_of(&req));
    request.resize(nlmsg_align(request.len()), 0);
    let len = request.len() as u32;
    request[..4].copy_from_slice(&len.to_ne_bytes());
    append_filter(&mut request, filter);
    request
}

/// Appends `filter` as an `INET_DIAG_REQ_BYTECODE` attribute and updates the message length.
fn append_filter(request: &mut Vec<u8>, filter: &[u8]) {
    // struct nlattr { nla_len: u16, nla_type: u16 }, then the payload, padded to 4.
    let attr_len = 4 + filter.len();
    request.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    request.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    request.extend_from_slice(filter);
    request.resize(nlmsg_align(request.len()), 0);
    let len = request.len() as u32;
    request[..4].copy_from_slice(&len.to_ne_bytes());
}

/// Sends one request to the kernel.
fn send(fd: &OwnedFd, request: &[u8]) -> io::Result<()> {
    // The kernel is the peer: a zeroed sockaddr_nl (nl_pid 0) addresses it.
    // SAFETY: sockaddr_nl is plain integers; all-zero is a valid value.
    let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: `request` and `kernel` are live; the lengths passed are their sizes.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads the multipart reply to request `seq` until NLMSG_DONE.
fn read_dump(fd: &OwnedFd, seq: u32, buf: &mut [u8], out: &mut Vec<Listener>) -> io::Result<()> {
    loop {
        // MSG_TRUNC makes recv report the datagram's real length, so a reply that did not fit
        // is an error rather than silently lost sockets.
        // SAFETY: `buf` is a live, exclusively borrowed buffer of buf.len() bytes.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "sock_diag reply of {n} bytes did not fit in {}",
                buf.len()
            )));
        }
        if parse_datagram(&buf[..n], seq, out)? {
            return Ok(());
        }
    }
}

/// Parses the messages of one netlink datagram into `out`. Returns true once NLMSG_DONE for
/// `seq` is seen.
fn parse_datagram(mut data: &[u8], seq: u32, out: &mut Vec<Listener>) -> io::Result<bool> {
    let hdr_len = mem::size_of::<NlMsgHdr>();
    while let Some(hdr) = read_pod::<NlMsgHdr>(data) {
        let len = hdr.nlmsg_len as usize;
        if len < hdr_len || len > data.len() {
            return Err(io::Error::other("malformed sock_diag reply"));
        }
        let payload = &data[hdr_len..len];
        data = &data[nlmsg_align(len).min(data.len())..];
        if hdr.nlmsg_seq != seq {
            continue; // A stale reply to an earlier request; not ours to read.
        }
        match hdr.nlmsg_type {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                // struct nlmsgerr starts with a negative errno (0 would be an ACK).
                let errno = read_pod::<i32>(payload).unwrap_or(-libc::EIO);
                if errno == 0 {
                    continue;
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                if let Some(listener) = read_pod::<InetDiagMsg>(payload).and_then(to_listener) {
                    out.push(listener);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

fn to_listener(msg: InetDiagMsg) -> Option<Listener> {
    let src = msg.id.idiag_src;
    let addr = match i32::from(msg.idiag_family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(src)),
        _ => return None,
    };
    Some(Listener {
        addr,
        port: u16::from_be_bytes(msg.id.idiag_sport),
        inode: u64::from(msg.idiag_inode),
        uid: msg.idiag_uid,
        // For a listener, rqueue is the accept queue and wqueue the backlog (inet_diag(7)).
        accept_queue: Some((msg.idiag_rqueue, msg.idiag_wqueue)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};

    use crate::os::procfs::socket_inodes;
    use crate::os::sockdiag::{
        Listener, PortDump, listening_sockets, netlink_listeners, parse_proc_net_tcp,
        proc_listeners,
    };

    // From a little-endian host: 127.0.0.1:8000 listening (uid 1000), 0.0.0.0:22 listening,
    // one established connection (state 01) that must be ignored.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 20 4 30 10 -1
";

    // ::1 port 8080 (uid 1000), :: port 443 (uid 0), 2001:db8::1 port 53, plus an established
    // row. Each 32-bit word of the address is printed in host order.
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
   2: B80D0120000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4244 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4245 1 0000000000000000 20 4 30 10 -1
";

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp_listeners_only() {
        let got = parse_proc_net_tcp(TCP, false);
        assert_eq!(
            got,
            vec![
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: 8000,
                    inode: 123456,
                    uid: 1000,
                    accept_queue: None,
                },
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 22,
                    inode: 777,
                    uid: 0,
                    accept_queue: None,
                },
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_proc_net_tcp6_word_order() {
        let got = parse_proc_net_tcp(TCP6, true);
        let want = [
            (Ipv6Addr::LOCALHOST, 8080, 4242, 1000),
            (Ipv6Addr::UNSPECIFIED, 443, 4243, 0),
            (
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                53,
                4244,
                101,
            ),
        ]
        .map(|(a, port, inode, uid)| Listener {
            addr: IpAddr::V6(a),
            port,
            inode,
            uid,
            accept_queue: None,
        });
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_rows_are_skipped() {
        let text = "header\n\
            0: 0100007F 00000000:0000 0A 0:0 0:0 0 1000 0 5\n\
            1: 0100007F:ZZZZ 00000000:0000 0A 0:0 0:0 0 1000 0 5\n\
            2: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 1000 0 notanumber\n\
            3: 0100007:0050 00000000:0000 0A 0:0 0:0 0 1000 0 5\n\
            4: 0100007F:0050 00000000:0000 0A\n\
            \n";
        assert!(parse_proc_net_tcp(text, false).is_empty());
        // A v4 address is not a v6 one.
        assert!(parse_proc_net_tcp(TCP, true).is_empty());
    }

    /// (port, inode) of every listener that this process holds.
    fn own(listeners: &[Listener]) -> BTreeSet<(u16, u64)> {
        let mine: HashSet<u64> = socket_inodes(std::process::id()).into_iter().collect();
        listeners
            .iter()
            .filter(|l| mine.contains(&l.inode))
            .map(|l| (l.port, l.inode))
            .collect()
    }

    fn inode_of(listener: &TcpListener) -> u64 {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .expect("stat own socket fd")
            .ino()
    }

    #[test]
    fn finds_own_listeners_on_v4_and_v6() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let v6 = TcpListener::bind("[::1]:0").expect("bind [::1] (IPv6 loopback required)");
        let all = listening_sockets().expect("listening_sockets");
        let uid = {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        };
        let mine: HashSet<u64> = socket_inodes(std::process::id()).into_iter().collect();
        for (listener, addr) in [
            (&v4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            (&v6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ] {
            let port = listener.local_addr().expect("local_addr").port();
            let inode = inode_of(listener);
            assert!(mine.contains(&inode), "socket_inodes lacks {inode}");
            let found = all.iter().find(|l| l.inode == inode);
            let found = found.unwrap_or_else(|| panic!("inode {inode} not in {all:?}"));
            assert_eq!((found.addr, found.port, found.uid), (addr, port, uid));
        }
    }

    #[test]
    fn netlink_and_proc_agree_on_own_listeners() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let v6 = TcpListener::bind("[::1]:0").expect("bind [::1]");
        let any = TcpListener::bind("0.0.0.0:0").expect("bind 0.0.0.0");
        let netlink = netlink_listeners().expect("sock_diag dump");
        let proc = proc_listeners().expect("/proc/net/tcp");
        // Other tests in this process bind and drop listeners concurrently, so compare only
        // the ones held here across both reads.
        let held: BTreeSet<(u16, u64)> = [&v4, &v6, &any]
            .iter()
            .map(|l| (l.local_addr().expect("addr").port(), inode_of(l)))
            .collect();
        let n: BTreeSet<_> = own(&netlink).intersection(&held).copied().collect();
        let p: BTreeSet<_> = own(&proc).intersection(&held).copied().collect();
        assert_eq!(n, held);
        assert_eq!(p, held);
        // Same full records (address, uid) too.
        for l in netlink.iter().filter(|l| held.contains(&(l.port, l.inode))) {
            let without_queue = Listener {
                accept_queue: None,
                ..*l
            };
            assert!(
                proc.contains(&without_queue),
                "{l:?} from netlink missing in /proc"
            );
        }
    }

    #[test]
    fn a_listener_with_a_full_accept_queue_refuses_connections() {
        // A listener with backlog 0 and one connection it never accepts: the next connect
        // would hang (the bench's "unreachable in a loopback-only way").
        // SAFETY: plain socket calls on descriptors this test owns; `addr` outlives them.
        let (fd, port) = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut bound_len = len;
            libc::getsockname(
                fd,
                (&mut bound as *mut libc::sockaddr_in).cast(),
                &mut bound_len,
            );
            (fd, u16::from_be(bound.sin_port))
        };
        let find = || {
            listening_sockets()
                .expect("dump")
                .into_iter()
                .find(|l| l.port == port)
        };
        assert_eq!(find().and_then(|l| l.accepts_connections()), Some(true));
        let _pending = std::net::TcpStream::connect(("127.0.0.1", port)).expect("first connect");
        crate::test_support::wait_until(
            "the accept queue seen full",
            || find().and_then(|l| l.accepts_connections()),
            |accepts| *accepts == Some(false),
        );
        // SAFETY: closes the listener this test opened.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn closed_listener_disappears() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let key = (l.local_addr().expect("addr").port(), inode_of(&l));
        let has = |v: &[Listener]| v.iter().any(|x| (x.port, x.inode) == key);
        assert!(has(&listening_sockets().expect("dump")));
        drop(l);
        // close() of a listener removes it from the table synchronously.
        assert!(!has(&listening_sockets().expect("dump")));
    }

    #[test]
    fn a_port_dump_lists_the_watched_ports_only_both_ways() {
        // Two watched ports (one on v4 and v6, one on v4) and an unwatched one between them,
        // which the joined range [low, high] lets through the kernel's filter.
        let bind = |addr: &str| TcpListener::bind(addr).expect("bind");
        let watched = bind("127.0.0.1:0");
        let port = watched.local_addr().expect("addr").port();
        let v6 = bind(&format!("[::1]:{port}"));
        let other = bind("127.0.0.1:0");
        let second = bind("127.0.0.1:0");
        let mut ports = vec![port, second.local_addr().expect("addr").port()];
        ports.sort_unstable();
        let held: BTreeSet<(u16, u64)> = [&watched, &v6, &second]
            .iter()
            .map(|l| (l.local_addr().expect("addr").port(), inode_of(l)))
            .collect();
        let unwatched = inode_of(&other);
        let mut dump = PortDump::default();
        for way in [
            "TCPDIAG_GETSOCK",
            "one request per family",
            "the public call",
        ] {
            let mut out = Vec::new();
            match way {
                "TCPDIAG_GETSOCK" => {
                    dump.listening_on(&ports, &mut out)
                        .expect("build the request");
                    out.clear();
                    dump.both_families(&mut out).expect("compat dump")
                }
                "one request per family" => dump.per_family(&mut out).expect("v2 dumps"),
                _ => dump.listening_on(&ports, &mut out).expect("dump"),
            }
            let got: BTreeSet<(u16, u64)> = out
                .iter()
                .filter(|l| ports.contains(&l.port))
                .map(|l| (l.port, l.inode))
                .collect();
            assert_eq!(got, held, "{way}");
            assert!(
                out.iter().all(|l| (ports[0]..=ports[1]).contains(&l.port)),
                "{way}: the kernel's filter let through a port outside the range: {out:?}"
            );
            if way == "the public call" {
                assert!(out.iter().all(|l| l.inode != unwatched), "{out:?}");
                assert!(out.windows(2).all(|w| w[0].port <= w[1].port), "sorted");
            }
        }
    }
}
