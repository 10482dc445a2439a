//! An HTTP/1.1 proxy on 127.0.0.1 that records every request on its way to a server (method, target, headers,
//! and the body of small requests). It can refuse requests that carry a header, as a store that does not know
//! it would, and echo S3 flexible checksums in answers (`x-amz-checksum-crc64nvme` ...), as S3 does and
//! s3s-fs does not on parts. One request per connection: it asks the server to close after answering and
//! forwards the answer until then, so answers need no parsing beyond their head.

use crate::responder::{read_request_head, Received};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bodies up to this size are kept in the log (CompleteMultipartUpload's XML); larger ones are only forwarded.
const KEPT_BODY: usize = 1 << 20;

/// What the proxy answers, instead of the server, to requests with a header whose name starts with `header`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub header: String,
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Which answers echo the request's flexible checksum value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo {
    /// The first `count` requests that carry a checksum value get it back.
    pub count: usize,
    /// The first echo is of another value, as from a store that took other bytes.
    pub wrong_first: bool,
}

struct Shared {
    log: Mutex<Vec<Received>>,
    refusal: Mutex<Option<Refusal>>,
    echo: Mutex<Echo>,
    /// Echoes given so far.
    echoed: Mutex<usize>,
    stop: AtomicBool,
}

pub struct Recorder {
    pub url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Recorder {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            log: Mutex::default(),
            refusal: Mutex::default(),
            echo: Mutex::default(),
            echoed: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let st = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = forward(client, upstream, &st);
                });
            }
        });
        Recorder { url: format!("http://{addr}"), addr, shared }
    }

    /// Refuse requests as `refusal` says from now on (`None`: forward everything).
    pub fn refuse(&self, refusal: Option<Refusal>) {
        *self.shared.refusal.lock().expect("lock") = refusal;
    }

    /// Echo checksums as `echo` says from now on (the count starts again).
    pub fn echo(&self, echo: Echo) {
        *self.shared.echo.lock().expect("lock") = echo;
        *self.shared.echoed.lock().expect("lock") = 0;
    }

    /// The requests so far: large bodies are logged as they start, small ones once they arrived.
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().expect("lock").clone()
    }

    pub fn clear(&self) {
        self.shared.log.lock().expect("lock").clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn forward(client: TcpStream, upstream: SocketAddr, st: &Shared) -> Option<()> {
    client.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut reader = BufReader::new(client.try_clone().ok()?);
    let (mut received, len) = read_request_head(&mut reader)?;
    let refusal = st.refusal.lock().ok()?.clone().filter(|r| {
        let prefix = r.header.to_ascii_lowercase();
        received.headers.iter().any(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix))
    });
    let mut out = client;
    if let Some(r) = refusal {
        // Take the whole body first: a client still sending would see a reset instead of the answer.
        std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink()).ok()?;
        st.log.lock().ok()?.push(received);
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            r.code, r.message
        );
        let head = format!(
            "HTTP/1.1 {} Refused\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            r.status,
            body.len()
        );
        out.write_all(head.as_bytes()).ok()?;
        out.write_all(body.as_bytes()).ok()?;
        return out.flush().ok();
    }
    let echo = echo_for(&received, st);
    let mut server = TcpStream::connect(upstream).ok()?;
    let mut head = format!("{} {} HTTP/1.1\r\n", received.method, received.target);
    for (k, v) in received.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("connection")) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes()).ok()?;
    if len as usize <= KEPT_BODY {
        let mut body = vec![0; len as usize];
        reader.read_exact(&mut body).ok()?;
        server.write_all(&body).ok()?;
        received.body = body;
        st.log.lock().ok()?.push(received);
    } else {
        st.log.lock().ok()?.push(received);
        std::io::copy(&mut (&mut reader).take(len), &mut server).ok()?;
    }
    server.flush().ok()?;
    let mut answer = BufReader::new(server);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if answer.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    if let Some((name, value)) = echo {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes()).ok()?;
    std::io::copy(&mut answer, &mut out).ok()?;
    out.flush().ok()
}

/// The checksum header to add to the answer to `request`, if it is one of those to echo.
fn echo_for(request: &Received, st: &Shared) -> Option<(String, String)> {
    let (name, value) = request.headers.iter().find(|(k, _)| {
        let k = k.to_ascii_lowercase();
        k.starts_with("x-amz-checksum-") && k != "x-amz-checksum-algorithm" && k != "x-amz-checksum-type"
    })?;
    let echo = *st.echo.lock().ok()?;
    let mut echoed = st.echoed.lock().ok()?;
    if *echoed >= echo.count {
        return None;
    }
    *echoed += 1;
    let mut value = value.clone();
    if echo.wrong_first && *echoed == 1 {
        // Another value of the same length: the first character changed.
        let first = if value.starts_with('A') { "B" } else { "A" };
        value.replace_range(..1, first);
    }
    Some((name.clone(), value))
}
