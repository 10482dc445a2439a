//! A hostile network that stays on this machine: a network namespace joined to this one by a veth pair whose two
//! ends are rate-limited by `tbf` ([`Link`]), and a TCP proxy ([`Proxy`]) that adds latency and jitter per
//! direction, stalls connections and resets them (RST, through `SO_LINGER` 0) in the middle of a request.
//!
//! The client runs in the namespace ([`Link::command`]); the servers and the proxy run here, the proxy listening on
//! this side's veth address, so every byte a client sends crosses the shaped veth and the proxy before it reaches
//! a server listening on 127.0.0.1. Needs root (CI has it); anything that cannot be set up panics: these tests never
//! skip. The network tests and `examples/wanlink.rs` (the WAN benchmark's link) use it.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Prefix of every namespace made here; the rest of the name is the process id and a counter.
const NS_PREFIX: &str = "imgport-net-";

/// Runs `ip ARGS` (or another tool) and panics, with its output, when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/install-peers.sh installs iproute2): {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}\n(the network tests need root, network namespaces, veth and tbf)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A network namespace and a veth pair into it, both ends shaped by `tbf` at the same rate. Removed on drop
/// (also when a test panics); namespaces left by a killed test process are removed by the next one.
pub struct Link {
    pub ns: String,
    host_if: String,
    /// This side's address (where servers and proxies listen for the namespace's clients).
    pub host_addr: Ipv4Addr,
    /// The namespace's address.
    pub ns_addr: Ipv4Addr,
    pub rate_mbit: u32,
    ns_file: std::fs::File,
}

impl Link {
    /// A new namespace whose traffic to this side is limited to `rate_mbit` Mbit/s in each direction.
    pub fn new(rate_mbit: u32) -> Link {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        remove_stale_namespaces();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{NS_PREFIX}{pid}-{n}");
        // Interface names have at most 15 characters.
        let host_if = format!("imh{:x}x{n}", pid);
        let peer_if = format!("imn{:x}x{n}", pid);
        // 198.18.0.0/15 is set aside for benchmarking networks (RFC 2544): one /30 per link, chosen from the
        // process id and the counter, skipping any already on an interface here.
        let mut index = (pid.wrapping_mul(64).wrapping_add(n.wrapping_mul(7919))) % (1 << 15);
        let (host_addr, ns_addr) = loop {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + index * 4;
            let (h, c) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
            if output("ip", &["-o", "addr", "show", "to", &format!("{h}/30")]).trim().is_empty() {
                break (h, c);
            }
            index = (index + 1) % (1 << 15);
        };
        run("ip", &["netns", "add", &ns]);
        // From here on, drop removes what exists.
        let ns_file = std::fs::File::open(format!("/run/netns/{ns}"))
            .unwrap_or_else(|e| panic!("cannot open /run/netns/{ns}: {e}"));
        let link = Link { ns: ns.clone(), host_if: host_if.clone(), host_addr, ns_addr, rate_mbit, ns_file };
        run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if]);
        run("ip", &["link", "set", &peer_if, "netns", &ns]);
        run("ip", &["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        run("ip", &["link", "set", &host_if, "up"]);
        run("ip", &["-n", &ns, "addr", "add", &format!("{ns_addr}/30"), "dev", &peer_if]);
        run("ip", &["-n", &ns, "link", "set", &peer_if, "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        // The bucket holds 1 ms of traffic at the rate (at least 64 KiB, so a full-sized TSO segment passes); the
        // queue holds 20 ms more before tbf drops, like a router's buffer.
        let rate = format!("{rate_mbit}mbit");
        let burst = format!("{}", (rate_mbit as u64 * 1_000_000 / 8 / 1000).max(64 << 10));
        for (netns, dev) in [(None, host_if.as_str()), (Some(ns.as_str()), peer_if.as_str())] {
            let mut args = vec![];
            if let Some(n) = netns {
                args.extend(["-n", n]);
            }
            args.extend(["qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst, "latency", "20ms"]);
            run("tc", &args);
        }
        link
    }

    /// `program` set to run inside the namespace (it joins it between fork and exec, so its process id is the
    /// program's own: killing it kills the program).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        let fd = self.ns_file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the descriptor stays open for the life of `self`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Bytes sent from the namespace through the link so far (this side's receive counter).
    pub fn bytes_from_ns(&self) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/rx_bytes", self.host_if))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it this end.
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Namespaces of test processes that no longer run (killed before their drop ran).
fn remove_stale_namespaces() {
    for line in output("ip", &["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Latency of one direction: every byte is held `delay` ± `jitter` (uniform), bytes keep their order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delay {
    pub delay: Duration,
    pub jitter: Duration,
}

impl Delay {
    pub fn ms(delay: u64, jitter: u64) -> Delay {
        Delay { delay: Duration::from_millis(delay), jitter: Duration::from_millis(jitter) }
    }
}

/// What the proxy does to connections; can be changed while it runs ([`Proxy::set`]).
#[derive(Debug, Clone)]
pub struct Faults {
    /// Client to server.
    pub up: Delay,
    /// Server to client.
    pub down: Delay,
    /// Each connection is reset (RST to both ends) once it has carried a number of bytes towards the server
    /// drawn from this range, while `resets` allows.
    pub reset_after: Option<(u64, u64)>,
    /// How many connections may still be reset.
    pub resets: u32,
    /// Each connection stops forwarding towards the server for `stall` once it has carried a number of bytes
    /// drawn from this range, while `stalls` allows.
    pub stall_after: Option<(u64, u64)>,
    pub stall: Duration,
    pub stalls: u32,
    /// Bytes held in one direction of one connection at most (what a window of this size would keep in flight);
    /// reading from the sender waits beyond that.
    pub window: usize,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            up: Delay::default(),
            down: Delay::default(),
            reset_after: None,
            resets: 0,
            stall_after: None,
            stall: Duration::ZERO,
            stalls: 0,
            window: 16 << 20,
        }
    }
}

impl Faults {
    /// `rtt_ms` split evenly between the directions, each with ± `jitter_ms`.
    pub fn rtt(rtt_ms: u64, jitter_ms: u64) -> Faults {
        Faults {
            up: Delay::ms(rtt_ms / 2, jitter_ms),
            down: Delay::ms(rtt_ms - rtt_ms / 2, jitter_ms),
            ..Faults::default()
        }
    }
}

/// What the proxy has done so far.
#[derive(Default)]
struct Counters {
    connections: AtomicU32,
    resets: AtomicU32,
    stalls: AtomicU32,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

struct ProxyState {
    faults: Mutex<Faults>,
    counters: Counters,
    stop: AtomicBool,
}

impl ProxyState {
    fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Takes one from a budget (`resets` or `stalls`) if any is left.
    fn claim(&self, which: fn(&mut Faults) -> &mut u32) -> bool {
        let Ok(mut f) = self.faults.lock() else { return false };
        let left = which(&mut f);
        if *left == 0 {
            return false;
        }
        *left -= 1;
        true
    }
}

/// A TCP proxy with latency, jitter, stalls and resets. Stops accepting when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
}

impl Proxy {
    /// Listens on `listen` (port 0: any) and forwards every connection to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr, faults: Faults) -> Proxy {
        let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("proxy cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState {
            faults: Mutex::new(faults),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::Builder::new()
            .name("netem-accept".into())
            .spawn(move || {
                let mut seed = 0x5EED_u64 ^ u64::from(std::process::id());
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let st = st.clone();
                    let _ = std::thread::Builder::new().name("netem-conn".into()).spawn(move || {
                        if let Ok(server) = TcpStream::connect(upstream) {
                            connection(client, server, st, seed);
                        }
                    });
                }
            })
            .expect("proxy thread");
        Proxy { addr, state }
    }

    /// Changes what the proxy does to data read from now on (budgets start again from the new values).
    pub fn set(&self, faults: Faults) {
        if let Ok(mut f) = self.state.faults.lock() {
            *f = faults;
        }
    }

    pub fn connections(&self) -> u32 {
        self.state.counters.connections.load(Ordering::Relaxed)
    }
    /// Connections reset so far.
    pub fn resets(&self) -> u32 {
        self.state.counters.resets.load(Ordering::Relaxed)
    }
    pub fn stalls(&self) -> u32 {
        self.state.counters.stalls.load(Ordering::Relaxed)
    }
    /// Bytes forwarded towards the server.
    pub fn bytes_up(&self) -> u64 {
        self.state.counters.bytes_up.load(Ordering::Relaxed)
    }
    pub fn bytes_down(&self) -> u64 {
        self.state.counters.bytes_down.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A draw in `[lo, hi]`: jitter and thresholds, reproducible per connection.
fn in_range(rng: &mut Rng, (lo, hi): (u64, u64)) -> u64 {
    lo + rng.next_u64() % (hi.saturating_sub(lo) + 1)
}

/// One proxied connection: what both directions share.
struct Conn {
    killed: AtomicBool,
    client: TcpStream,
    server: TcpStream,
}

impl Conn {
    /// Reset both ends: with SO_LINGER 0, the last close of each socket sends RST instead of FIN. Every thread
    /// of the connection sees `killed` within one poll and drops its handle.
    fn reset(&self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        for s in [&self.client, &self.server] {
            // SAFETY: a valid socket descriptor and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        self.killed.store(true, Ordering::Relaxed);
    }

    fn dead(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

/// How often blocked reads and writes look at the connection's state.
const POLL: Duration = Duration::from_millis(50);

fn connection(client: TcpStream, server: TcpStream, st: Arc<ProxyState>, seed: u64) {
    st.counters.connections.fetch_add(1, Ordering::Relaxed);
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_write_timeout(Some(POLL));
    }
    let conn = Arc::new(Conn { killed: AtomicBool::new(false), client, server });
    let mut rng = Rng::new(seed);
    let f = st.faults();
    let reset_at = f.reset_after.map(|r| in_range(&mut rng, r));
    let stall_at = f.stall_after.map(|r| in_range(&mut rng, r));
    let up = {
        let (conn, st) = (conn.clone(), st.clone());
        std::thread::spawn(move || direction(conn, st, true, reset_at, stall_at, Rng::new(seed.rotate_left(17))))
    };
    direction(conn, st, false, None, None, Rng::new(seed.rotate_left(31)));
    let _ = up.join();
}

/// Bytes in transit in one direction.
struct Line {
    q: Mutex<Held>,
    cv: Condvar,
}

#[derive(Default)]
struct Held {
    /// (when they may be written, bytes), oldest first.
    pieces: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    /// The sender has finished.
    done: bool,
}

/// One direction of a connection: a reader thread fills the delay line, this thread writes each piece out once
/// its time has come. `reset_at` and `stall_at` count bytes towards the server (up) only.
fn direction(
    conn: Arc<Conn>,
    st: Arc<ProxyState>,
    up: bool,
    reset_at: Option<u64>,
    stall_at: Option<u64>,
    mut rng: Rng,
) {
    let line = Arc::new(Line { q: Mutex::new(Held::default()), cv: Condvar::new() });
    let reader = {
        let (conn, st, line) = (conn.clone(), st.clone(), line.clone());
        std::thread::spawn(move || {
            let mut src = if up { &conn.client } else { &conn.server };
            let mut buf = vec![0u8; 64 << 10];
            let mut last = Instant::now();
            let mut total = 0u64;
            while !conn.dead() {
                let f = st.faults();
                // Wait while the line holds a window's worth.
                {
                    let Ok(mut q) = line.q.lock() else { break };
                    while q.bytes >= f.window && !conn.dead() {
                        q = match line.cv.wait_timeout(q, POLL) {
                            Ok((q, _)) => q,
                            Err(_) => return,
                        };
                    }
                }
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) =>
                    {
                        continue
                    }
                    Err(_) => {
                        conn.reset();
                        break;
                    }
                };
                let d = if up { f.up } else { f.down };
                let mut hold = d.delay;
                if !d.jitter.is_zero() {
                    let j = d.jitter.as_micros() as u64;
                    let offset = rng.next_u64() % (2 * j + 1);
                    hold = (hold + Duration::from_micros(offset)).saturating_sub(d.jitter);
                }
                // Later bytes never overtake earlier ones.
                last = last.max(Instant::now() + hold);
                let mut piece = buf[..n].to_vec();
                let before = total;
                total += n as u64;
                if let Some(at) = reset_at.filter(|&at| total >= at) {
                    if st.claim(|f| &mut f.resets) {
                        // Forward what came before the threshold, then reset in the middle of the request.
                        piece.truncate((at.saturating_sub(before)) as usize);
                        push(&line, last, piece);
                        st.counters.resets.fetch_add(1, Ordering::Relaxed);
                        // Let the writer send the bytes before it (so the server sees a request cut short).
                        std::thread::sleep(hold + POLL);
                        conn.reset();
                        break;
                    }
                }
                push(&line, last, piece);
            }
            if let Ok(mut q) = line.q.lock() {
                q.done = true;
            }
            line.cv.notify_all();
        })
    };
    let mut dst = if up { &conn.server } else { &conn.client };
    let mut sent = 0u64;
    let mut stalled = false;
    loop {
        let next = {
            let Ok(mut q) = line.q.lock() else { break };
            loop {
                if conn.dead() {
                    break None;
                }
                if let Some(p) = q.pieces.pop_front() {
                    q.bytes -= p.1.len();
                    break Some(p);
                }
                if q.done {
                    break None;
                }
                q = match line.cv.wait_timeout(q, POLL) {
                    Ok((q, _)) => q,
                    Err(_) => break None,
                };
            }
        };
        line.cv.notify_all();
        let Some((at, piece)) = next else { break };
        while !conn.dead() {
            let now = Instant::now();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(POLL));
        }
        if !stalled && stall_at.is_some_and(|s| sent + piece.len() as u64 >= s) {
            stalled = true;
            let f = st.faults();
            if st.claim(|f| &mut f.stalls) {
                st.counters.stalls.fetch_add(1, Ordering::Relaxed);
                let until = Instant::now() + f.stall;
                while !conn.dead() && Instant::now() < until {
                    std::thread::sleep(POLL);
                }
            }
        }
        let mut off = 0;
        while off < piece.len() && !conn.dead() {
            match dst.write(&piece[off..]) {
                Ok(n) => off += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => conn.reset(),
            }
        }
        sent += off as u64;
        let c = if up { &st.counters.bytes_up } else { &st.counters.bytes_down };
        c.fetch_add(off as u64, Ordering::Relaxed);
    }
    // The sender closed its side: pass the FIN on (a reset connection sends RST when its handles close).
    if !conn.dead() {
        let _ = dst.shutdown(Shutdown::Write);
    }
    let _ = reader.join();
}

fn push(line: &Line, at: Instant, piece: Vec<u8>) {
    if let Ok(mut q) = line.q.lock() {
        q.bytes += piece.len();
        q.pieces.push_back((at, piece));
    }
    line.cv.notify_all();
}
