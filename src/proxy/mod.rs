//! The Pingora side: a thin `ProxyHttp` that delegates to the rewriters.
//!
//! Phase chart for one request:
//! ```text
//! early_request_filter    the client's per-read timeout
//! request_filter          snapshot the mapping, identify the caller (may await a
//!                         cached /key/info lookup), map names in the URL, pick the body
//!                         rewriter; a failed lookup with --identity-fail-closed, or a
//!                         URL naming another team's internal model, is answered here
//! upstream_peer           the gateway, with the configured timeouts
//! upstream_request_filter the rewritten URL; a body that may be rewritten goes upstream
//!                         chunked: Pingora sends these headers before the first body
//!                         byte is seen, so the final length cannot be known yet (never
//!                         both framings, never a stale Content-Length); the trusted
//!                         team header is removed
//! request_body_filter     stream each body chunk through the rewriter; the guard
//!                         refuses here (below); the body deadline
//! upstream_response_filter count the gateway's status class
//! response_filter         restore names in headers; pick the body restorer (see
//!                         rewrite::restore); a body that may change goes out chunked
//! response_body_filter    stream each response chunk through the restorer
//! fail_to_proxy           modelmap's own errors and refusals, in the OpenAI error shape
//! logging                 one log line and the request metrics
//! ```
//!
//! ## The guard's refusal, on the wire
//! The requested model is only known once the body is read, and Pingora 0.9.1 has by then
//! connected to the gateway and sent it the request head (`proxy_1to1` writes the header,
//! then runs the body loop). So the refusal happens in `request_body_filter`:
//! 1. The rewriter's output for the chunk in which the offending name ended is dropped,
//!    and so is everything after it. The scanner emits a model value only in the chunk
//!    where the value ends, so the name itself never leaves modelmap. A body within the
//!    64 KiB validation window (`rewrite::body`) has not released a single byte yet; a
//!    longer one with `model` after the window may have sent a prefix without the name.
//! 2. The rest of the client's body is read and discarded (an empty `Some` tells Pingora
//!    "nothing to send yet", so it writes nothing upstream), so that closing the client
//!    connection after the answer cannot reset it and lose the 403.
//! 3. At the end of the client's body the filter returns an `HTTPStatus(403)` error
//!    *before* Pingora would send the last chunk: Pingora stops both directions, drops the
//!    upstream connection (never pooled after an error) and calls `fail_to_proxy`, which
//!    writes the 403 in the OpenAI shape with `Connection: close`.
//!
//! The gateway therefore sees a request head with `Transfer-Encoding: chunked`, at most a
//! name-free body prefix, and the connection closing before the terminating chunk: an
//! incomplete request it never handles. `fail_to_proxy` answers from the recorded refusal
//! whatever error ends the exchange (were the gateway to give up first, the client still
//! gets the 403, not a 502).

mod access;
mod body;
mod errors;
mod restore;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;

use crate::config::Settings;
use crate::error::{Refusal, openai_error_body};
use crate::identity::{Caller, Identity, TeamSource};
use crate::mapping::Mapping;
use crate::metrics::Metrics;
use crate::request::{self, RequestBody};
use crate::rewrite::Names;
use crate::rewrite::budget::Budget;
use crate::rewrite::names::Verdict;
use crate::rewrite::path::decode_path;
use crate::rewrite::restore::{Pairs, Restorer};
use crate::route::Family;
use crate::store::Store;
use body::read_whole_body;
use errors::{describe_failure, respond_early};
use restore::plan_restore;

/// The proxy: shared, immutable state; everything per request lives in [`Ctx`].
pub struct ModelMap {
    settings: Settings,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    identity: Identity,
    in_flight: Arc<AtomicUsize>,
    /// Shared by every body held for restoring.
    restore_budget: Budget,
}

/// Longest time spent reading and discarding a refused request's body before answering.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl ModelMap {
    pub fn new(
        settings: Settings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        in_flight: Arc<AtomicUsize>,
    ) -> ModelMap {
        let identity = Identity::new(&settings, metrics.clone());
        let restore_budget = Budget::new(
            settings.args.restore_buffer_budget,
            metrics.restore_buffered.clone(),
            metrics.restore_over_budget.clone(),
        );
        ModelMap {
            settings,
            store,
            metrics,
            identity,
            in_flight,
            restore_budget,
        }
    }
}

impl ModelMap {
    /// The refusal the names seen so far call for, if any; counted and logged once (the
    /// name as sent, never the key).
    fn guard_refusal(&self, caller: Option<&Caller>, names: &Names) -> Option<Refusal> {
        let key = caller
            .and_then(|c| c.key)
            .map(|k| k.short())
            .unwrap_or_default();
        let team = caller.and_then(|c| c.team.as_deref()).unwrap_or("-");
        let refusal = match names.verdict.clone()? {
            Verdict::Denied(requested) => {
                self.metrics.guard_rejections.inc();
                tracing::warn!(key, team, requested = %requested, "guard: refusing another team's internal model name");
                return Some(Refusal::OtherTeamsModel { requested });
            }
            Verdict::Invalid(_) => Refusal::InvalidName,
            Verdict::Unreadable(why) => Refusal::Unreadable(why),
        };
        self.count_refusal(&refusal);
        tracing::warn!(
            key,
            team,
            reason = refusal.reason().unwrap_or_default(),
            "refusing a request modelmap cannot check"
        );
        Some(refusal)
    }

    fn count_refusal(&self, refusal: &Refusal) {
        if let Some(reason) = refusal.reason() {
            self.metrics.unreadable.with_label_values(&[reason]).inc();
        }
    }
}

/// Counts a request as in flight (for draining, and the gauge) while its context lives.
struct InFlight(Arc<AtomicUsize>, prometheus::IntGauge);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>, gauge: &prometheus::IntGauge) -> InFlight {
        counter.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        InFlight(counter.clone(), gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
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
    /// The `x-litellm-model` values to send upstream, when one maps.
    model_header: Option<Vec<String>>,
    upstream_status: Option<u16>,
    rejected: bool,
    refusal: Option<Refusal>,
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
            model_header: None,
            upstream_status: None,
            rejected: false,
            refusal: None,
            _in_flight: InFlight::new(&self.in_flight, &self.metrics.in_flight),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        session
            .as_downstream_mut()
            .set_read_timeout(Some(self.settings.args.client_read_timeout));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snapshot = self.store.snapshot();
        let req = session.req_header();
        if let Some(why) = request::framing(req.version, &req.headers) {
            let refusal = Refusal::Framing(why);
            self.count_refusal(&refusal);
            ctx.rejected = true;
            respond_early(session, &refusal, Duration::ZERO).await?;
            ctx.refusal = Some(refusal);
            return Ok(true);
        }
        let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
        // Routes are matched on the path as the gateway's server decodes it.
        let path = decode_path(req.uri.path());
        ctx.family = Family::of(&path);
        let caller = self
            .identity
            .identify(&snapshot, &req.headers, path_and_query)
            .await;
        let mut names =
            Names::new(snapshot.clone(), caller.team.clone()).guarded(self.settings.args.guard);
        request::check_url(&path, path_and_query, &mut names);
        ctx.uri = request::rewrite_uri(path_and_query, &mut names);
        ctx.model_header = request::map_model_header(&req.headers, &mut names);
        ctx.models_list = req.method == Method::GET && matches!(&*path, "/v1/models" | "/models");
        ctx.body = RequestBody::for_request(req, &mut names);
        let mut refusal = if caller.source == TeamSource::LookupFailed
            && self.settings.args.identity_fail_closed
        {
            Some(Refusal::IdentityUnavailable)
        } else {
            self.guard_refusal(Some(&caller), &names)
        };
        if refusal.is_some() {
            ctx.body = None;
        }
        let read_whole = ctx.body.as_ref().is_some_and(|b| b.read_whole(req));
        ctx.names = Some(names);
        ctx.caller = Some(caller);
        ctx.snapshot = snapshot;
        if read_whole {
            let body =
                read_whole_body(session, ctx, self.settings.args.client_body_timeout).await?;
            // Read whole, so a refusal comes before anything goes upstream.
            refusal = ctx
                .names
                .as_ref()
                .and_then(|n| self.guard_refusal(ctx.caller.as_ref(), n));
            if refusal.is_none() {
                ctx.whole_body = Some(body);
            }
        }
        if let Some(refusal) = refusal {
            // Nothing has gone upstream yet: answer now.
            ctx.rejected = true;
            respond_early(
                session,
                &refusal,
                self.settings.args.read_timeout.min(DRAIN_LIMIT),
            )
            .await?;
            ctx.refusal = Some(refusal);
            return Ok(true);
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
        if let Some(name) = self.identity.trusted_header() {
            upstream.remove_header(name);
        }
        if let Some(values) = &ctx.model_header {
            upstream.remove_header(request::MODEL_HEADER);
            for value in values {
                upstream.append_header(request::MODEL_HEADER, value.as_str())?;
            }
        }
        if ctx.body.is_some() || ctx.uri.is_some() || ctx.model_header.is_some() || ctx.models_list
        {
            // The response may need restoring: ask for it uncompressed. The hop is
            // loopback inside the pod, where compression buys nothing.
            upstream.remove_header(&ACCEPT_ENCODING);
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Pingora's read timeout is per read: a client trickling one byte at a time
        // would never hit it. The body as a whole gets a deadline too.
        // (Not after an upgrade: websocket frames come through here too, for as long as
        // the session lasts.)
        if !end_of_stream
            && !session.was_upgraded()
            && ctx.start.elapsed() > self.settings.args.client_body_timeout
        {
            return Error::e_explain(ErrorType::ReadTimedout, "request body deadline")
                .map_err(|e| e.into_down());
        }
        if let Some(whole) = &ctx.whole_body {
            // Pingora hands over its retry buffer (the body as received) once per attempt:
            // the rewritten body, read whole in request_filter, goes in its place.
            *body = Some(if end_of_stream {
                whole.clone()
            } else {
                Bytes::new()
            });
            return Ok(());
        }
        let (Some(rewriter), Some(names)) = (ctx.body.as_mut(), ctx.names.as_mut()) else {
            return Ok(());
        };
        if ctx.refusal.is_none() {
            let out = rewriter.feed(body.take(), end_of_stream, names);
            ctx.refusal = self.guard_refusal(ctx.caller.as_ref(), names);
            ctx.rejected = ctx.refusal.is_some();
            // An empty Some means "nothing yet"; None ends the upstream body. At the end,
            // nothing left to send must be None: Pingora writes an empty piece as a
            // chunk of size 0, the terminator, and then terminates the body once more.
            *body = (!out.is_empty() || !end_of_stream).then_some(out);
        }
        if ctx.refusal.is_some() {
            // Refused: read the client's body to its end, send nothing more upstream,
            // then stop before Pingora could send the terminating chunk.
            *body = Some(Bytes::new());
            if end_of_stream {
                return Error::e_explain(ErrorType::HTTPStatus(403), "refused by the guard");
            }
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
            self.metrics.upstream_response(status);
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
        ctx.restorer = plan_restore(
            resp,
            head,
            ctx.models_list,
            pairs,
            ctx,
            &self.restore_budget,
        );
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (status, body) = match &ctx.refusal {
            Some(refusal) => (refusal.status(), refusal.body()),
            None => {
                let (status, kind, code, message) =
                    describe_failure(e, &self.settings.upstream.url);
                (status, openai_error_body(&message, kind, code))
            }
        };
        if status > 0 {
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

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, _error: &Error) -> bool {
        // A refusal is logged (warn) where it is decided, and in the access line.
        ctx.refusal.is_some()
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // Pingora's own summary prints the raw target, query included: `?key=` may be a key.
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        format!("{} {}, Host: {host}", req.method, req.uri.path())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        access::record(&self.metrics, session, e, ctx);
    }
}
