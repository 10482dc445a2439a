//! The WAN benchmark's link (scripts/bench-wan.sh), not part of imgport: a network namespace behind a veth pair
//! shaped by tbf, and the latency proxy of the network tests (imgport_test_support::netem) in front of one server.
//!
//! usage: wanlink UPSTREAM_ADDR [RATE_MBIT [RTT_MS [JITTER_MS]]]
//! Prints `NAMESPACE PROXY_ADDR` on one line, then holds the link until its standard input closes.

use imgport_test_support::netem;
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("not a number: {a}")))
    };
    let Some(upstream) = args.first().and_then(|a| a.parse().ok()) else {
        eprintln!("usage: wanlink UPSTREAM_ADDR [RATE_MBIT [RTT_MS [JITTER_MS]]]");
        std::process::exit(2);
    };
    let (rate, rtt, jitter) = (arg(1, 200) as u32, arg(2, 50), arg(3, 0));
    let link = netem::Link::new(rate);
    let proxy = netem::Proxy::start((link.host_addr, 0).into(), upstream, netem::Faults::rtt(rtt, jitter));
    println!("{} {}", link.ns, proxy.addr);
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    eprintln!(
        "wanlink: {} connections, {} MiB up, {} MiB down",
        proxy.connections(),
        proxy.bytes_up() >> 20,
        proxy.bytes_down() >> 20
    );
}
