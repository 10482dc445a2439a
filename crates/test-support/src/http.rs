//! Raw HTTP/1.1 towards a server under test: what a client library would hide (framing, early answers, stalls)
//! stays visible. The other direction, a responder for clients under test, is [`crate::responder`].

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A whole answer: status, headers as sent, body as text.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first header called `name`, whatever its case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads an answer's status line and headers (names as sent), leaving `r` at the body. Status 0 when the status
/// line has no number.
pub fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// Sends `wire` on a new connection and collects what comes back until the server closes or `wait` passes; None
/// when nothing came back at all.
pub fn exchange(addr: SocketAddr, wire: &[u8], wait: Duration) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    // The server may answer and close before taking everything (an early refusal): a failed write is fine.
    let _ = s.write_all(wire);
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                // A complete answer with a length: done even if the connection stays open.
                if complete(&got) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    parse_answer(&got)
}

/// Whether `got` holds a head and as much body as its Content-Length says.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    len.is_some_and(|n| body.len() >= n)
}

/// The answer in `got` (head and body as received); None when `got` is empty.
pub fn parse_answer(got: &[u8]) -> Option<Answer> {
    if got.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers =
        lines.filter_map(|h| h.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    Some(Answer { status, headers, body: body.to_string() })
}
