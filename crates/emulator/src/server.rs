//! The listener: one HTTP/1.1 server for every service. Requests under `/_emulator/` are the admin API,
//! requests carrying an RPC action go to the RPC gateway, everything else is OSS.

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
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub(crate) struct Server {
    pub state: Arc<EmulatorState>,
    pub router: RpcRouter,
    pub nonces: NonceCache,
}

/// Accepts connections until `shutdown` turns true, then lets open connections finish (up to 5 seconds).
pub(crate) async fn accept_loop(listener: TcpListener, server: Arc<Server>, mut shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let server = server.clone();
                    let mut stop = shutdown.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let server = server.clone();
                            async move { server.serve(req).await }
                        });
                        let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc);
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
        while conns.try_join_next().is_some() {}
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
            let r = match rpc::handle(state, &self.router, &self.nonces, req, &id, decide, &mut out).await {
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

    /// `/_emulator/health`, `/_emulator/faults` (GET, POST/PUT JSON, DELETE), `/_emulator/requests`,
    /// `/_emulator/credentials` (POST `{"duration_seconds": N}` issues temporary credentials).
    async fn admin(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, incoming) = req.into_parts();
        let path = parts.uri.path().trim_start_matches("/_emulator/").trim_end_matches('/').to_string();
        let data = match body::receive_small(incoming, None, 1 << 20).await {
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
                let duration = serde_json::from_slice::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v.get("duration_seconds").and_then(|d| d.as_i64()))
                    .unwrap_or(3600);
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
