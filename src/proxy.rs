//! The Pingora side: a thin `ProxyHttp` that delegates to the rewriters.
//!
//! Phase chart for one request:
//! ```text
//! request_filter          snapshot the mapping, identify the caller, pick the rewriter
//! upstream_peer           the gateway, with the configured timeouts
//! upstream_request_filter a body that may be rewritten goes upstream chunked: Pingora
//!                         sends these headers before the first body byte is seen, so
//!                         the final length cannot be known yet (never both framings,
//!                         never a stale Content-Length)
//! request_body_filter     stream each body chunk through the rewriter
//! upstream_response_filter count the gateway's status class
//! response_filter         restore names in headers; pick the body restorer (see
//!                         rewrite::restore); a body that may change goes out chunked
//! response_body_filter    stream each response chunk through the restorer
//! fail_to_proxy           modelmap's own errors, in the OpenAI error shape
//! logging                 one log line and the request metrics
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING,
};
use http::{Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorSource, ErrorType};

use crate::config::Settings;
use crate::error::openai_error_body;
use crate::identity::{self, Caller};
use crate::mapping::Mapping;
use crate::metrics::{Metrics, Outcome, status_class};
use crate::request::{self, RequestBody};
use crate::rewrite::names::Place;
use crate::rewrite::restore::{Buffered, ModelsList, Pairs, Restorer, StreamRestorer};
use crate::rewrite::{JsonRewriter, Names, Profile};
use crate::route::Family;
use crate::store::Store;

/// The proxy: shared, immutable state; everything per request lives in [`Ctx`].
pub struct ModelMap {
    settings: Settings,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    in_flight: Arc<AtomicUsize>,
}

impl ModelMap {
    pub fn new(
        settings: Settings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        in_flight: Arc<AtomicUsize>,
    ) -> ModelMap {
        ModelMap {
            settings,
            store,
            metrics,
            in_flight,
        }
    }
}

/// Counts a request as in flight for as long as its context lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    family: Family,
    snapshot: Arc<Mapping>,
    /// A `GET /v1/models` (or `/models`) whose list is filtered for the caller.
    models_list: bool,
    restorer: Option<Restorer>,
    caller: Option<Caller>,
    /// Every name the request carries is mapped through this one record.
    names: Option<Names>,
    body: Option<RequestBody>,
    /// A small body read and rewritten whole in `request_filter`, sent as it is.
    whole_body: Option<Bytes>,
    /// The path and query to send upstream, when the URL names a model that maps.
    uri: Option<String>,
    upstream_status: Option<u16>,
    rejected: bool,
    _in_flight: InFlight,
}

#[async_trait]
impl ProxyHttp for ModelMap {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            family: Family::Other,
            snapshot: Arc::default(),
            models_list: false,
            restorer: None,
            caller: None,
            names: None,
            body: None,
            whole_body: None,
            uri: None,
            upstream_status: None,
            rejected: false,
            _in_flight: InFlight::new(&self.in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snapshot = self.store.snapshot();
        let req = session.req_header();
        let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
        ctx.family = Family::of(req.uri.path());
        let key = identity::extract_key(
            &req.headers,
            self.settings.args.key_header.as_deref(),
            path_and_query,
        );
        let caller = identity::identify(&snapshot, key);
        let mut names = Names::new(snapshot.clone(), caller.team.clone());
        ctx.uri = request::rewrite_uri(path_and_query, &mut names);
        ctx.body = RequestBody::for_request(req);
        let read_whole = ctx.body.as_ref().is_some_and(|b| b.read_whole(req));
        ctx.names = Some(names);
        ctx.models_list =
            req.method == Method::GET && matches!(req.uri.path(), "/v1/models" | "/models");
        ctx.caller = Some(caller);
        ctx.snapshot = snapshot;
        if read_whole {
            ctx.whole_body = Some(read_whole_body(session, ctx).await?);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.settings.upstream.addr, false, String::new());
        let args = &self.settings.args;
        peer.options.connection_timeout = Some(args.connect_timeout);
        peer.options.total_connection_timeout = Some(args.connect_timeout);
        peer.options.read_timeout = Some(args.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(uri) = ctx.uri.as_deref() {
            let uri = uri
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewritten URI", e))?;
            upstream.set_uri(uri);
        }
        if let Some(body) = &ctx.whole_body {
            upstream.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        } else if ctx.body.is_some() {
            upstream.remove_header(&CONTENT_LENGTH);
            upstream.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        if ctx.body.is_some() || ctx.uri.is_some() || ctx.models_list {
            // The response may need restoring: ask for it uncompressed. The hop is
            // loopback inside the pod, where compression buys nothing.
            upstream.remove_header(&ACCEPT_ENCODING);
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(whole) = &ctx.whole_body {
            // Pingora hands over its retry buffer (the body as received) once per attempt.
            *body = Some(if end_of_stream {
                whole.clone()
            } else {
                Bytes::new()
            });
        } else if let (Some(rewriter), Some(names)) = (ctx.body.as_mut(), ctx.names.as_mut()) {
            let out = rewriter.feed(body.take(), end_of_stream, names);
            // An empty Some means "nothing yet"; None would end the upstream body.
            *body = Some(out);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        if status >= 200 {
            ctx.upstream_status = Some(status);
            self.metrics
                .upstream_responses
                .with_label_values(&[status_class(status)])
                .inc();
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let reverted = ctx.body.as_ref().is_some_and(RequestBody::reverted);
        let pairs = ctx
            .names
            .as_ref()
            .filter(|_| !reverted)
            .map(|n| Pairs::new(n.restores.clone()))
            .unwrap_or_default();
        if let Some(group) = resp
            .headers
            .get("x-litellm-model-group")
            .and_then(|v| v.to_str().ok())
            && let Some(requested) = pairs.requested(group)
        {
            let requested = requested.to_string();
            resp.insert_header("x-litellm-model-group", requested)?;
        }
        let head = session.req_header().method == Method::HEAD;
        ctx.restorer = plan_restore(resp, head, ctx.models_list, pairs, ctx);
        if ctx.restorer.as_ref().is_some_and(|r| !r.keeps_length()) {
            resp.remove_header(&CONTENT_LENGTH);
            resp.insert_header(TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(restorer) = ctx.restorer.as_mut() {
            *body = Some(restorer.feed(body.take(), end_of_stream));
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let (status, kind, code, message) = describe_failure(e, &self.settings.upstream.url);
        if status > 0 {
            let body = openai_error_body(&message, kind, code);
            let sent = async {
                let mut resp = ResponseHeader::build(status, Some(3))?;
                resp.insert_header(CONTENT_TYPE, "application/json")?;
                resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
                session
                    .as_downstream_mut()
                    .write_error_response(resp, body)
                    .await
            };
            if let Err(err) = sent.await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        // A reverted body reached the gateway as sent: only URL rewrites count then.
        let reverted = ctx.body.as_ref().is_some_and(RequestBody::reverted);
        let counted = |p: Place| !reverted || matches!(p, Place::Path | Place::Query);
        let names = ctx.names.as_ref();
        let applied: Vec<_> = names
            .map(|n| n.applied.iter().filter(|a| counted(a.place)).collect())
            .unwrap_or_default();
        let rewrites = if reverted {
            applied.iter().map(|a| a.times as usize).sum()
        } else {
            names.map_or(0, |n| n.count)
        };
        let outcome = if ctx.rejected {
            Outcome::Rejected
        } else if e.is_some_and(|e| e.esource() != &ErrorSource::Downstream) {
            Outcome::Error
        } else if rewrites > 0 {
            Outcome::Rewritten
        } else {
            Outcome::Unchanged
        };
        let family = ctx.family.as_str();
        let m = &self.metrics;
        m.requests
            .with_label_values(&[outcome.as_str(), family])
            .inc();
        m.duration
            .with_label_values(&[family])
            .observe(ctx.start.elapsed().as_secs_f64());
        if ctx.body.as_ref().is_some_and(RequestBody::passthrough) {
            m.body_passthrough.with_label_values(&[family]).inc();
        }
        let caller = ctx.caller.as_ref();
        let team = caller.and_then(|c| c.team.as_deref());
        let team_label = team.filter(|t| ctx.snapshot.has_team(t)).unwrap_or("other");
        for a in &applied {
            m.rewrites
                .with_label_values(&[team_label, a.place.as_str(), &a.from, &a.to])
                .inc_by(a.times);
        }

        let req = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let (requested, sent) = names
            .filter(|_| !reverted)
            .and_then(|n| n.model.as_ref())
            .map_or(("", ""), |(r, s)| (r.as_str(), s.as_str()));
        tracing::info!(
            target: "modelmap::access",
            method = %req.method,
            path = req.uri.path(),
            status,
            duration_ms = ctx.start.elapsed().as_secs_f64() * 1000.0,
            team = team.unwrap_or("-"),
            key = caller.and_then(|c| c.key).map(|k| k.short()).unwrap_or_default(),
            requested,
            sent,
            rewrites,
            upstream_status = ctx.upstream_status.unwrap_or(0),
            outcome = outcome.as_str(),
            error = e.map(|e| e.etype().as_str()).unwrap_or_default(),
        );
    }
}

/// Reads a small body whole (see [`RequestBody::read_whole`]) and rewrites it. Pingora's
/// retry buffer, enabled first (the body fits in it), then brings `request_body_filter`
/// the end of the body, where the rewritten bytes are sent in its place.
async fn read_whole_body(session: &mut Session, ctx: &mut Ctx) -> Result<Bytes> {
    session.enable_retry_buffering();
    let (Some(rewriter), Some(names)) = (ctx.body.as_mut(), ctx.names.as_mut()) else {
        return Ok(Bytes::new());
    };
    let mut out = Vec::new();
    loop {
        let chunk = session.read_request_body().await?;
        let end = chunk.is_none() || session.is_body_done();
        let piece = rewriter.feed(chunk, end, names);
        if !piece.is_empty() {
            out.push(piece);
        }
        if end {
            return Ok(match out.len() {
                1 => out.pop().unwrap_or_default(),
                _ => Bytes::from(out.concat()),
            });
        }
    }
}

/// Which restorer a response needs, if any. Compressed bodies are never touched.
fn plan_restore(
    resp: &ResponseHeader,
    head: bool,
    models_list: bool,
    pairs: Pairs,
    ctx: &Ctx,
) -> Option<Restorer> {
    let status = resp.status;
    if head
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return None;
    }
    let header = |name| {
        resp.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let encoding = header(CONTENT_ENCODING);
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return None;
    }
    let content_type = header(CONTENT_TYPE).to_ascii_lowercase();
    if models_list && status.is_success() && content_type.contains("json") {
        return Some(Restorer::Models(Buffered::new(ModelsList {
            mapping: ctx.snapshot.clone(),
            team: ctx.caller.as_ref().and_then(|c| c.team.clone()),
        })));
    }
    if pairs.is_empty() {
        return None;
    }
    if status.as_u16() >= 400 {
        Some(Restorer::Error(Buffered::new(pairs)))
    } else if content_type.starts_with("text/event-stream") {
        Some(Restorer::Stream(StreamRestorer::new(pairs)))
    } else if content_type.contains("json") {
        // With a known length and names that fit, restore in place: the response keeps
        // its Content-Length and leaves in one write (chunks cost two more).
        let mut rw = JsonRewriter::with_profile(Profile::Response);
        let sized = resp.headers.contains_key(CONTENT_LENGTH)
            && !resp.headers.contains_key(TRANSFER_ENCODING);
        if sized && pairs.restore_fits() {
            rw = rw.keeping_length();
        }
        Some(Restorer::Json(rw, pairs))
    } else {
        None
    }
}

/// Status, OpenAI error type, code and message for a failed request.
fn describe_failure(e: &Error, upstream: &str) -> (u16, &'static str, &'static str, String) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => (
            *code,
            "invalid_request_error",
            "bad_request",
            format!("request rejected: {e}"),
        ),
        ConnectTimedout => (
            504,
            "api_error",
            "gateway_timeout",
            format!("modelmap timed out connecting to the gateway at {upstream}"),
        ),
        ReadTimedout | WriteTimedout => (
            504,
            "api_error",
            "gateway_timeout",
            format!("modelmap timed out waiting for the gateway at {upstream}"),
        ),
        ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError
        | ConnectProxyFailure => (
            502,
            "api_error",
            "bad_gateway",
            format!(
                "modelmap could not connect to the gateway at {upstream}: {}",
                e.etype().as_str()
            ),
        ),
        _ => match e.esource() {
            ErrorSource::Upstream => (
                502,
                "api_error",
                "bad_gateway",
                format!(
                    "the gateway at {upstream} failed mid-request: {}",
                    e.etype().as_str()
                ),
            ),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => (0, "", "", String::new()),
                _ => (
                    400,
                    "invalid_request_error",
                    "bad_request",
                    format!(
                        "modelmap could not read the request: {}",
                        e.etype().as_str()
                    ),
                ),
            },
            ErrorSource::Internal | ErrorSource::Unset => (
                500,
                "api_error",
                "internal_error",
                format!("modelmap internal error: {}", e.etype().as_str()),
            ),
        },
    }
}
