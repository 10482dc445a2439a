//! The RPC gateway for ECS, RAM and STS: requests that carry an `Action` (query or form) or an `x-acs-action`
//! header. The gateway checks the signature (ACS3-HMAC-SHA256 or RPC V1), the timestamp, the nonce and the
//! security token, routes by API version to an [`RpcService`], and renders the result or error as JSON or XML
//! according to `Format`, as the real gateway does.
//!
//! A service only implements [`RpcService::handle`]; register it with [`crate::EmulatorConfig::rpc_service`].

use crate::body::{self, Body, RecvError};
use crate::credentials::TokenProblem;
use crate::faults::{Decision, InjectedError};
use crate::state::EmulatorState;
use crate::xml::{escape, XmlWriter};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use imgport_auth::encode::parse_query;
use imgport_auth::sign::{acs3, rpc_v1, sha256_hex, SecretLookup, VerifyError};
use imgport_auth::time::{parse_iso8601, UtcTime};
use imgport_auth::SignableRequest;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub const ECS_VERSION: &str = "2014-05-26";
pub const RAM_VERSION: &str = "2015-05-01";
pub const STS_VERSION: &str = "2015-04-01";

/// How far `Timestamp` / `x-acs-date` may be from the server's clock.
const MAX_SKEW_SECONDS: i64 = 15 * 60;
/// The largest RPC request body (a form of parameters): far more than any call needs. The body of a V1 request is
/// read before its signature can be checked, so it is kept small; see [`crate::body::UnverifiedBudget`].
pub const MAX_BODY: usize = 64 << 10;

/// Response format: the `Format` parameter (RPC V1 defaults to XML, ACS3 to JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// The request parameters: query and form body together, decoded, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and non-empty (400 `MissingParameter` naming it otherwise).
    pub fn require(&self, name: &str) -> Result<&str, RpcError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| RpcError::missing_parameter(name))
    }

    /// Flattened list parameters `Prefix.N` or `Prefix.N.Field`: for each index N in order, the fields under it
    /// (the empty name for `Prefix.N` itself).
    /// The non-empty values of a repeated parameter `PREFIX.N` (`ResourceId.1`, `AddAccount.2`), in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.indexed(prefix).into_values().filter_map(|m| m.get("").filter(|v| !v.is_empty()).cloned()).collect()
    }

    pub fn indexed(&self, prefix: &str) -> BTreeMap<u32, BTreeMap<String, String>> {
        let mut out: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        let lead = format!("{prefix}.");
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix(&lead) else { continue };
            let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
            if let Ok(n) = n.parse::<u32>() {
                out.entry(n).or_default().insert(field.to_string(), v.clone());
            }
        }
        out
    }
}

/// What a service sees of the request besides its parameters.
pub struct RpcContext {
    pub state: Arc<EmulatorState>,
    pub request_id: String,
    pub action: String,
    pub version: String,
    /// The caller's access key id (verified).
    pub access_key_id: String,
    /// Whether the caller used temporary (STS) credentials.
    pub temporary: bool,
    /// The server's clock (unix seconds), skew included.
    pub now: i64,
    pub format: Format,
    pub host: String,
    pub method: String,
    /// A `create_failed` fault rule hit this request: the import or copy it starts must end CreateFailed.
    pub create_failed: Option<String>,
    /// The CreationTime of an image this request creates: the server's clock unless a `creation_time` fault rule
    /// hit the request.
    pub created: i64,
    /// A `stall` fault rule hit this request: the import or copy it starts holds in Creating.
    pub stall: Option<crate::faults::Stall>,
    /// A `task_finishes_early` fault rule hit this request: seconds the image of the import it starts stays
    /// Creating after its task reports Finished.
    pub finish_early: Option<u64>,
}

/// An error answer: HTTP status, code and message as the gateway shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl RpcError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        RpcError { status, code: code.into(), message: message.into() }
    }

    /// 400 `MissingParameter` with the message ECS's error tables give (ImportImage's: `An input parameter
    /// "RegionId" that is mandatory for processing the request is not supplied.`), naming the parameter.
    pub fn missing_parameter(name: &str) -> Self {
        RpcError::new(
            400,
            "MissingParameter",
            format!("An input parameter \"{name}\" that is mandatory for processing the request is not supplied."),
        )
    }

    pub fn invalid_parameter(name: &str, message: impl Into<String>) -> Self {
        RpcError::new(400, format!("InvalidParameter.{name}"), message)
    }

    pub fn action_not_found() -> Self {
        RpcError::new(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
    }

    pub fn internal() -> Self {
        RpcError::new(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }
}

/// The result of an action: a JSON object (the response fields without `RequestId`, which the gateway adds).
pub type RpcResult = Result<Value, RpcError>;

/// One API (ECS, RAM, STS, ...), called on a blocking thread: it may touch the disk freely, and may start
/// background work with `tokio::runtime::Handle::current()` or threads.
pub trait RpcService: Send + Sync {
    fn handle(&self, ctx: &RpcContext, action: &str, params: &Params) -> RpcResult;
}

/// Answers every action with `InvalidAction.NotFound`: the placeholder for APIs not emulated yet.
pub struct NotImplemented;

impl RpcService for NotImplemented {
    fn handle(&self, _ctx: &RpcContext, _action: &str, _params: &Params) -> RpcResult {
        Err(RpcError::action_not_found())
    }
}

/// Services by API version.
#[derive(Clone)]
pub struct RpcRouter {
    services: HashMap<String, Arc<dyn RpcService>>,
}

impl Default for RpcRouter {
    fn default() -> Self {
        let mut services: HashMap<String, Arc<dyn RpcService>> = HashMap::new();
        for v in [ECS_VERSION, RAM_VERSION, STS_VERSION] {
            services.insert(v.to_string(), Arc::new(NotImplemented));
        }
        RpcRouter { services }
    }
}

impl RpcRouter {
    pub fn register(&mut self, version: &str, service: Arc<dyn RpcService>) {
        self.services.insert(version.to_string(), service);
    }

    fn get(&self, version: &str) -> Option<Arc<dyn RpcService>> {
        self.services.get(version).cloned()
    }
}

/// Remembers recent signature nonces so a replayed request is refused (`SignatureNonceUsed`).
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    by_nonce: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    /// Records a nonce; false when it was already used within the skew window.
    fn insert(&self, nonce: &str, now: i64) -> bool {
        let mut g = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let Nonces { by_nonce: map, order } = &mut *g;
        while order.front().is_some_and(|(t, _)| *t < now - 2 * MAX_SKEW_SECONDS) {
            if let Some((_, n)) = order.pop_front() {
                map.remove(&n);
            }
        }
        if map.contains_key(nonce) {
            return false;
        }
        map.insert(nonce.to_string(), now);
        order.push_back((now, nonce.to_string()));
        true
    }
}

/// Whether a request is for the RPC gateway, from what is visible before reading the body.
pub fn is_rpc(req: &Request<Incoming>) -> bool {
    if req.headers().contains_key("x-acs-action") {
        return true;
    }
    let query = req.uri().query().unwrap_or("");
    if query.split('&').any(|p| p.split('=').next() == Some("Action")) {
        return true;
    }
    // An RPC call may carry all of its parameters in a form body; OSS has no form-encoded POST to "/".
    req.method() == hyper::Method::POST
        && req.uri().path() == "/"
        && req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

fn render_error(e: &RpcError, format: Format, request_id: &str, host: &str) -> Response<Body> {
    let recommend = format!("https://api.aliyun.com/troubleshoot?q={}", e.code);
    let (ctype, text) = match format {
        Format::Json => {
            let v = serde_json::json!({
                "RequestId": request_id,
                "HostId": host,
                "Code": e.code,
                "Message": e.message,
                "Recommend": recommend,
            });
            ("application/json;charset=utf-8", v.to_string())
        }
        Format::Xml => {
            let mut w = XmlWriter::new();
            w.open("Error")
                .elem("RequestId", request_id)
                .elem("HostId", host)
                .elem("Code", &e.code)
                .elem("Message", &e.message)
                .elem("Recommend", recommend)
                .close("Error");
            ("text/xml;charset=utf-8", w.finish())
        }
    };
    reply(e.status, ctype, request_id, text)
}

fn reply(status: u16, ctype: &'static str, request_id: &str, text: String) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-acs-request-id", v);
    }
    r
}

/// JSON to the gateway's XML: objects become elements, arrays repeat their element name.
fn json_to_xml(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Array(items) => {
            for item in items {
                json_to_xml(out, name, item);
            }
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                json_to_xml(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}></{name}>")),
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

fn render_ok(value: Value, ctx: &RpcContext) -> Response<Body> {
    let mut map = match value {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("Result".into(), other);
            m
        }
    };
    map.insert("RequestId".into(), Value::String(ctx.request_id.clone()));
    match ctx.format {
        Format::Json => reply(200, "application/json;charset=utf-8", &ctx.request_id, Value::Object(map).to_string()),
        Format::Xml => {
            let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            json_to_xml(&mut s, &format!("{}Response", ctx.action), &Value::Object(map));
            reply(200, "text/xml;charset=utf-8", &ctx.request_id, s)
        }
    }
}

fn injected(e: InjectedError) -> RpcError {
    match e {
        InjectedError::InternalError => RpcError::internal(),
        InjectedError::ServiceUnavailable => {
            RpcError::new(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
        }
        InjectedError::SlowDown => RpcError::new(400, "Throttling", "Request was denied due to request throttling."),
    }
}

/// What the gateway tells the server loop.
pub enum Reply {
    Response(Response<Body>),
    Drop,
}

/// Handles one RPC request.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    state: &Arc<EmulatorState>,
    router: &RpcRouter,
    nonces: &NonceCache,
    budget: &crate::body::UnverifiedBudget,
    req: Request<Incoming>,
    request_id: &str,
    decision: impl FnOnce(&str) -> Decision,
    out: &mut crate::oss::Outcome,
) -> Reply {
    let (parts, incoming) = req.into_parts();
    let host = parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let Ok(signable) = SignableRequest::from_target(parts.method.as_str(), &target, headers) else {
        out.operation = "Invalid".into();
        let e = RpcError::new(400, "InvalidParameter", "The request URI could not be decoded.");
        return Reply::Response(render_error(&e, Format::Json, request_id, &host));
    };
    let action = signable
        .header("x-acs-action")
        .map(str::to_string)
        .or_else(|| signable.query_param("Action").map(str::to_string));
    let acs3 = signable.header("Authorization").is_some_and(|a| a.starts_with(acs3::ALGORITHM));
    let fmt_of = |params: &[(String, String)]| match params
        .iter()
        .find(|(k, _)| k == "Format")
        .map(|(_, v)| v.to_ascii_lowercase())
    {
        Some(f) if f == "json" => Format::Json,
        Some(f) if f == "xml" => Format::Xml,
        _ if acs3 => Format::Json,
        _ => Format::Xml,
    };
    let pre_action = action.clone().unwrap_or_else(|| "Unknown".into());
    out.operation = pre_action.clone();
    let d = decision(&pre_action);
    out.fault = d.describe();
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    // What can be refused before the body is read is refused at once: a body announced larger than any call
    // needs, an ACS3 signature (it covers the body through its signed hash), a V1 key the server does not know.
    let refuse_early = |e: RpcError| {
        let mut r = render_error(&e, fmt_of(&signable.query), request_id, &host);
        r.headers_mut().insert("connection", HeaderValue::from_static("close"));
        Reply::Response(r)
    };
    let announced = http_body::Body::size_hint(&incoming);
    if announced.lower() > MAX_BODY as u64 {
        return refuse_early(too_large());
    }
    if d.error.is_none() {
        if let Err(e) = precheck(state, &signable, acs3) {
            return refuse_early(e);
        }
    }
    let hold = announced.upper().map_or(MAX_BODY, |n| (n as usize).min(MAX_BODY));
    let reservation = if hold == 0 { None } else { budget.reserve(hold) };
    if hold > 0 && reservation.is_none() {
        return refuse_early(RpcError::new(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ));
    }
    let body = match body::receive_small(incoming, d.drop_request_after, MAX_BODY, state.idle_timeout).await {
        Ok(b) => b,
        Err(RecvError::TooLarge) => return refuse_early(too_large()),
        Err(_) => return Reply::Drop,
    };
    drop(reservation);
    let mut params = signable.query.clone();
    let form = signable.header("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        match std::str::from_utf8(&body).ok().and_then(|s| parse_query(s).ok()) {
            Some(p) => params.extend(p),
            None => {
                let e = RpcError::new(400, "InvalidParameter", "The form body could not be decoded.");
                return Reply::Response(render_error(&e, fmt_of(&params), request_id, &host));
            }
        }
    }
    let format = fmt_of(&params);
    let action = action.or_else(|| params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.clone()));
    if let Some(a) = &action {
        out.operation = a.clone();
    }
    let finish = |r: Response<Body>| -> Reply {
        let mut r = r;
        if let Ok(v) = HeaderValue::from_str(&UtcTime::from_unix(state.now()).http_date()) {
            r.headers_mut().insert("date", v);
        }
        Reply::Response(match d.drop_response_after {
            Some(n) => r.map(|b| crate::body::DropAfter::wrap(b, n)),
            None => r,
        })
    };
    if let Some(e) = d.error {
        return finish(render_error(&injected(e), format, request_id, &host));
    }
    let now = state.now();
    let result = authenticate(state, nonces, &signable, &params, &body, acs3, now);
    let (access_key_id, temporary) = match result {
        Ok(v) => v,
        Err(e) => return finish(render_error(&e, format, request_id, &host)),
    };
    let Some(action) = action.filter(|a| !a.is_empty()) else {
        return finish(render_error(&RpcError::missing_parameter("Action"), format, request_id, &host));
    };
    let version = signable
        .header("x-acs-version")
        .map(str::to_string)
        .or_else(|| params.iter().find(|(k, _)| k == "Version").map(|(_, v)| v.clone()))
        .unwrap_or_default();
    let Some(service) = router.get(&version) else {
        let e = RpcError::new(400, "InvalidVersion", "Specified parameter Version is not valid.");
        return finish(render_error(&e, format, request_id, &host));
    };
    let ctx = RpcContext {
        state: state.clone(),
        request_id: request_id.to_string(),
        action: action.clone(),
        version,
        access_key_id,
        temporary,
        now,
        format,
        host: host.clone(),
        method: parts.method.as_str().to_string(),
        create_failed: d.create_failed.clone(),
        created: d.creation_time.map_or(now, |c| c.time(now)),
        stall: d.stall.map(|s| match s {
            // The server clock counts whole seconds and `now` is rounded down: one more second makes the stall
            // last at least `secs`, never up to a second less.
            Some(secs) => crate::faults::Stall::Until(
                now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)).saturating_add(1),
            ),
            None => crate::faults::Stall::WhileConfigured,
        }),
        finish_early: d.finish_early,
    };
    let params = Params(params);
    let outcome = tokio::task::spawn_blocking(move || {
        let r = service.handle(&ctx, &ctx.action, &params);
        (r, ctx)
    })
    .await;
    match outcome {
        Ok((Ok(v), ctx)) => finish(render_ok(v, &ctx)),
        Ok((Err(e), _)) => finish(render_error(&e, format, request_id, &host)),
        Err(_) => finish(render_error(&RpcError::internal(), format, request_id, &host)),
    }
}

fn too_large() -> RpcError {
    RpcError::new(413, "RequestEntityTooLarge", "The request body is too large.")
}

fn missing_nonce() -> RpcError {
    RpcError::new(
        400,
        "MissingSignatureNonce",
        "The input parameter \"SignatureNonce\" that is mandatory for processing this request is not supplied.",
    )
}

fn incomplete_signature() -> RpcError {
    RpcError::new(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
}

fn verify_error(e: VerifyError) -> RpcError {
    match e {
        VerifyError::Unsigned => RpcError::new(
            400,
            "MissingSignature",
            "The input parameter \"Signature\" that is mandatory for processing this request is not supplied.",
        ),
        VerifyError::Malformed(_) => incomplete_signature(),
        VerifyError::UnknownAccessKey(_) => {
            RpcError::new(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        }
        // The real gateway names the server's string to sign in the message so clients can compare.
        VerifyError::Mismatch { string_to_sign, .. } => RpcError::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ),
    }
}

/// The headers an ACS3 request must sign: `host` and every `x-acs-*` header it carries, which must include the
/// nonce, the date and the body's hash; otherwise whoever sees the request could change them and replay it.
pub(crate) fn acs3_coverage(req: &SignableRequest) -> Result<(), RpcError> {
    if req.header("x-acs-signature-nonce").is_none_or(|n| n.trim().is_empty()) {
        return Err(missing_nonce());
    }
    let auth = req.header("Authorization").unwrap_or("");
    // Parsed as the verifier parses it (the first parameter named exactly SignedHeaders), so a look-alike such
    // as `XSignedHeaders=` cannot make this check read a different list from the one the signature covers.
    let listed = auth
        .split_once(' ')
        .map_or("", |(_, params)| params)
        .split(',')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim() == "SignedHeaders")
        .map_or("", |(_, v)| v.trim());
    let signed: Vec<String> = listed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    for required in ["host", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce"] {
        if !signed.iter().any(|h| h == required) || req.header(required).is_none() {
            return Err(incomplete_signature());
        }
    }
    for (name, _) in &req.headers {
        let name = name.to_ascii_lowercase();
        if name.starts_with("x-acs-") && !signed.contains(&name) {
            return Err(incomplete_signature());
        }
    }
    Ok(())
}

/// The checks that need no body: for ACS3 the signature itself (over the hash the client claims for its body,
/// checked against the body once read); for V1, whose signature covers form parameters, whether the key named
/// in the query string exists.
fn precheck(state: &EmulatorState, req: &SignableRequest, acs3: bool) -> Result<(), RpcError> {
    let keys = state.credentials.as_ref();
    if acs3 {
        acs3_coverage(req)?;
        let claimed = req.header("x-acs-content-sha256").unwrap_or("").to_ascii_lowercase();
        acs3::verify(req, &claimed, keys).map_err(verify_error)?;
    } else if let Some(ak) = req.query_param("AccessKeyId") {
        if keys.secret(ak).is_none() {
            return Err(verify_error(VerifyError::UnknownAccessKey(ak.to_string())));
        }
    }
    Ok(())
}

/// Signature, time, nonce and token checks; the caller's access key id and whether it is temporary.
fn authenticate(
    state: &EmulatorState,
    nonces: &NonceCache,
    req: &SignableRequest,
    params: &[(String, String)],
    body: &[u8],
    acs3: bool,
    now: i64,
) -> Result<(String, bool), RpcError> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let keys = state.credentials.as_ref();
    let verified = if acs3 {
        acs3_coverage(req)?;
        acs3::verify(req, &sha256_hex(body), keys)
    } else {
        rpc_v1::verify(req.method.as_str(), params, keys)
    };
    let v = verified.map_err(verify_error)?;
    let signed_at =
        if acs3 { req.header("x-acs-date").and_then(parse_iso8601) } else { get("Timestamp").and_then(parse_iso8601) };
    match signed_at {
        None => {
            return Err(RpcError::new(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ))
        }
        Some(t) if (now - t).abs() > MAX_SKEW_SECONDS => {
            return Err(RpcError::new(
                400,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ))
        }
        Some(_) => {}
    }
    // A nonce is required, so a signed request cannot be replayed within the skew window.
    let nonce = if acs3 { req.header("x-acs-signature-nonce") } else { get("SignatureNonce") };
    let Some(n) = nonce.filter(|n| !n.trim().is_empty()) else { return Err(missing_nonce()) };
    if !nonces.insert(&format!("{}:{n}", v.access_key_id), now) {
        return Err(RpcError::new(400, "SignatureNonceUsed", "Specified signature nonce was used already."));
    }
    let token = if acs3 { req.header("x-acs-security-token") } else { get("SecurityToken") };
    match state.credentials.check_token(&v.access_key_id, token, now, state.faults.tokens_expire_at()) {
        Ok(()) => {}
        Err(TokenProblem::Invalid) => {
            return Err(RpcError::new(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            ))
        }
        Err(TokenProblem::Expired) => {
            return Err(RpcError::new(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."))
        }
    }
    let temporary = state.credentials.is_temporary(&v.access_key_id);
    Ok((v.access_key_id, temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_params() {
        let p = Params(vec![
            ("DiskDeviceMapping.2.OSSObject".into(), "b.qcow2".into()),
            ("DiskDeviceMapping.1.OSSBucket".into(), "bk".into()),
            ("DiskDeviceMapping.1.OSSObject".into(), "a.qcow2".into()),
            ("Tag.1".into(), "x".into()),
        ]);
        let m = p.indexed("DiskDeviceMapping");
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(m[&1]["OSSBucket"], "bk");
        assert_eq!(p.indexed("Tag")[&1][""], "x");
        assert_eq!(p.require("Nope").map_err(|e| e.code), Err("MissingParameter".to_string()));
        assert!(p.require("Nope").is_err_and(|e| e.message.contains("\"Nope\"")));
    }

    #[test]
    fn xml_rendering() {
        let mut s = String::new();
        let v = serde_json::json!({"Images": {"Image": [{"ImageId": "m-1"}, {"ImageId": "m-<2>"}]}, "TotalCount": 2});
        json_to_xml(&mut s, "DescribeImagesResponse", &v);
        assert_eq!(
            s,
            "<DescribeImagesResponse><Images><Image><ImageId>m-1</ImageId></Image><Image><ImageId>m-&lt;2&gt;</ImageId></Image></Images><TotalCount>2</TotalCount></DescribeImagesResponse>"
        );
    }

    #[test]
    fn nonces() {
        let c = NonceCache::default();
        assert!(c.insert("a", 1000));
        assert!(!c.insert("a", 1001));
        assert!(c.insert("b", 1001));
        // Old nonces are forgotten after the window.
        assert!(c.insert("a", 1000 + 3 * MAX_SKEW_SECONDS));
    }
}
