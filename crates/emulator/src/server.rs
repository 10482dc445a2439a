//! The listener: one HTTP/1.1 server for every service. Requests under `/_emulator/` are the admin API,
//! requests carrying an RPC action go to the RPC gateway, everything else is OSS.
//!
//! What a client can make the server hold is bounded: at most `max_connections` connections are served at once
//! (more wait in the listen queue), a request head must arrive within the header timeout (which also closes idle
//! kept-alive connections), a head may not exceed [`MAX_HEAD`], a stalled body or unread response is cut off after
//! the idle timeout, and bodies that are read before their signature is checked are small and share a budget.

use crate::body::{self, Body};
use crate::faults::FaultConfig;
use crate::log::LogEntry;
use crate::rpc::{NonceCache, RpcRouter};
use crate::state::EmulatorState;
use crate::{oss, rpc, util};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The largest request head (request line and headers) and read buffer of a connection.
pub(crate) const MAX_HEAD: usize = 128 << 10;
/// The largest admin API body.
const MAX_ADMIN_BODY: usize = 64 << 10;

pub(crate) struct Server {
    pub state: Arc<EmulatorState>,
    pub router: RpcRouter,
    pub nonces: NonceCache,
    /// The address the listener is bound to: the only Host the admin API answers (besides loopback names).
    pub addr: SocketAddr,
    pub admin_secret: String,
    /// Bytes of request bodies held in memory before their signature is checked, over all connections.
    pub unverified: body::UnverifiedBudget,
}

/// Connection limits (see [`crate::EmulatorConfig`]).
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Accepts connections until `shutdown` turns true, then lets open connections finish (up to 5 seconds).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        while conns.try_join_next().is_some() {}
        // A slot first: beyond the cap, connections wait in the kernel's listen queue and cost no descriptor.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let server = server.clone();
                    let mut stop = shutdown.clone();
                    let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
                    conns.spawn(async move {
                        let _slot = slot;
                        let svc = service_fn(move |req| {
                            let server = server.clone();
                            async move { server.serve(req).await }
                        });
                        let io = TokioIo::new(body::WriteTimeout::new(stream, idle_timeout));
                        let conn = http1::Builder::new()
                            .keep_alive(true)
                            .timer(TokioTimer::new())
                            .header_read_timeout(header_timeout)
                            .max_buf_size(MAX_HEAD)
                            .serve_connection(io, svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = stop.changed() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while conns.join_next().await.is_some() {} }).await;
}

fn json_response(status: u16, value: &impl serde::Serialize) -> Response<Body> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    let mut r = Response::new(body::full(text));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

impl Server {
    async fn serve(&self, req: Request<Incoming>) -> Result<Response<Body>, io::Error> {
        let start = Instant::now();
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let state = &self.state;
        let dropped = || Err(io::Error::new(io::ErrorKind::ConnectionAborted, "connection dropped"));
        let mut out = oss::Outcome::default();
        let (request_id, result) = if path.starts_with("/_emulator/") {
            out.operation = "Admin".into();
            (util::oss_request_id(), Ok(self.admin(req).await))
        } else if rpc::is_rpc(&req) {
            let id = util::rpc_request_id();
            let decide = |op: &str| state.faults.decide("rpc", op);
            let r = match rpc::handle(state, &self.router, &self.nonces, &self.unverified, req, &id, decide, &mut out)
                .await
            {
                rpc::Reply::Response(r) => Ok(r),
                rpc::Reply::Drop => dropped(),
            };
            (id, r)
        } else {
            let id = util::oss_request_id();
            let decide = |op: &str| state.faults.decide("oss", op);
            let r = match oss::handle(state, req, &id, decide, &mut out).await {
                oss::Reply::Response(r) => Ok(r),
                oss::Reply::Drop => dropped(),
            };
            (id, r)
        };
        let status = result.as_ref().map_or(0, |r| r.status().as_u16());
        state.log.record(LogEntry {
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            request_id,
            method,
            path,
            operation: out.operation,
            status,
            duration_ms: start.elapsed().as_millis() as u64,
            fault: out.fault,
        });
        result
    }

    /// Whether a Host header names this listener: its own address, or a loopback name or address with its port
    /// (any address literal when listening on all interfaces). Other names are refused, so a web page that
    /// rebinds its own name to this address cannot reach the admin API.
    fn host_is_listener(&self, host: &str) -> bool {
        host_names_listener(self.addr, host)
    }

    /// The admin API's gate: no browser origin, a Host naming this listener, and the admin secret.
    fn admin_refusal(&self, headers: &hyper::HeaderMap) -> Option<Response<Body>> {
        if headers.contains_key("origin") {
            return Some(json_response(403, &serde_json::json!({"error": "the admin API does not answer web pages"})));
        }
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.host_is_listener(host) {
            return Some(json_response(
                403,
                &serde_json::json!({"error": "the admin API answers only requests addressed to its listener"}),
            ));
        }
        let given = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), self.admin_secret.as_bytes()) {
            let mut r = json_response(
                401,
                &serde_json::json!({"error": "the admin API needs the emulator's admin secret: Authorization: Bearer SECRET (printed at start, kept in DATA/admin-secret)"}),
            );
            r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
            return Some(r);
        }
        None
    }

    /// `/_emulator/health`, `/_emulator/faults` (GET, POST/PUT JSON, DELETE), `/_emulator/requests`,
    /// `/_emulator/credentials` (POST `{"duration_seconds": N}` issues temporary credentials, N from 900 to
    /// 43200 as STS allows; 3600 by default). Every call needs `Authorization: Bearer ADMIN_SECRET`.
    async fn admin(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(refused) = self.admin_refusal(req.headers()) {
            let mut refused = refused;
            refused.headers_mut().insert("connection", HeaderValue::from_static("close"));
            return refused;
        }
        let (parts, incoming) = req.into_parts();
        let path = parts.uri.path().trim_start_matches("/_emulator/").trim_end_matches('/').to_string();
        let data = match body::receive_small(incoming, None, MAX_ADMIN_BODY, self.state.idle_timeout).await {
            Ok(d) => d,
            Err(e) => return json_response(400, &serde_json::json!({"error": e.to_string()})),
        };
        let state = &self.state;
        match (parts.method, path.as_str()) {
            (Method::GET, "health") => json_response(200, &serde_json::json!({"ok": true, "regions": state.regions})),
            (Method::GET, "faults") => json_response(200, &state.faults.get()),
            (Method::POST | Method::PUT, "faults") => match serde_json::from_slice::<FaultConfig>(&data) {
                Ok(cfg) => {
                    state.faults.set(cfg);
                    json_response(200, &state.faults.get())
                }
                Err(e) => json_response(400, &serde_json::json!({"error": format!("bad fault configuration: {e}")})),
            },
            (Method::DELETE, "faults") => {
                state.faults.set(FaultConfig::default());
                json_response(200, &state.faults.get())
            }
            (Method::GET, "requests") => json_response(200, &state.log.entries()),
            (Method::POST, "credentials") => {
                let duration = match admin_duration(&data) {
                    Ok(d) => d,
                    Err(e) => return json_response(400, &serde_json::json!({"error": e})),
                };
                match state.credentials.issue_temporary(state.now(), duration) {
                    Ok(t) => json_response(
                        200,
                        &serde_json::json!({
                            "AccessKeyId": t.access_key_id,
                            "AccessKeySecret": t.access_key_secret,
                            "SecurityToken": t.security_token,
                            "Expiration": imgport_auth::time::UtcTime::from_unix(t.expiration).iso8601(),
                        }),
                    ),
                    Err(e) => json_response(500, &serde_json::json!({"error": e.to_string()})),
                }
            }
            _ => json_response(404, &serde_json::json!({"error": "no such admin endpoint"})),
        }
    }
}

/// The lifetime asked of `/_emulator/credentials`: `duration_seconds` from 900 to 43200 (STS AssumeRole's
/// range), 3600 when the body is empty or leaves it out.
fn admin_duration(body: &[u8]) -> Result<i64, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(3600);
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match v.get("duration_seconds") {
        None => Ok(3600),
        Some(d) => d.as_i64().filter(|d| (MIN_STS_SECONDS..=MAX_STS_SECONDS).contains(d)).ok_or_else(|| {
            format!("duration_seconds must be from {MIN_STS_SECONDS} to {MAX_STS_SECONDS}, as STS allows")
        }),
    }
}

/// STS AssumeRole's DurationSeconds range.
pub(crate) const MIN_STS_SECONDS: i64 = 900;
pub(crate) const MAX_STS_SECONDS: i64 = 43_200;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// See [`Server::host_is_listener`].
pub(crate) fn host_names_listener(addr: SocketAddr, host: &str) -> bool {
    let Some((name, port)) = host.rsplit_once(':') else { return false };
    if port.parse::<u16>().ok() != Some(addr.port()) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return false };
    ip == addr.ip() || ip.is_loopback() || addr.ip().is_unspecified()
}
