//! One request and its response, in the order of the phase chart in `proxy/mod.rs`.

use std::time::Instant;

use bytes::Bytes;
use http::Method;
use http::header::{ACCEPT_ENCODING, CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};
use tokio::time::timeout_at;

use super::relay::{is_interim, relay_interim};
use super::request::{self, RequestBody};
use super::upstream::{Outgoing, SendError};
use super::{InFlight, Proxy, access};
use crate::error::Refusal;
use crate::identity::{Caller, TeamSource};
use crate::rewrite::Names;
use crate::rewrite::body::WINDOW;
use crate::rewrite::path::decode_path;
use crate::route::Family;

/// Per-request state; each fact has one owner (the snapshot and the team live in
/// `names`, the refusal only in `refusal`).
pub(super) struct Ctx {
    pub start: Instant,
    pub family: Family,
    /// A `GET /v1/models` (or `/models`) whose list is filtered for the caller.
    pub models_list: bool,
    pub caller: Caller,
    /// Every name the request carries is mapped through this one record.
    pub names: Names,
    pub body: Option<RequestBody>,
    /// The path and query to send upstream, when the URL names a model that maps.
    pub uri: Option<String>,
    /// The `x-litellm-model` values to send upstream, when one maps.
    pub model_header: Option<Vec<String>>,
    pub upstream_status: u16,
    pub refusal: Option<Refusal>,
    /// What ended the exchange early, for the access line.
    pub error: Option<&'static str>,
    /// The failure was modelmap's or the gateway's, not the client going away.
    pub failed: bool,
    _in_flight: InFlight,
}

impl Ctx {
    /// One piece of the client's body through its rewriter (as it is when there is
    /// none); returns what may go upstream now.
    fn feed(&mut self, piece: Option<Bytes>, end: bool) -> Bytes {
        match self.body.as_mut() {
            Some(rw) => rw.feed(piece, end, &mut self.names),
            None => piece.unwrap_or_default(),
        }
    }
}

/// How far the response got, when something failed.
pub(super) enum Stage {
    /// Nothing of the response was sent: modelmap can still answer.
    Before,
    /// The response started: the connection can only be closed.
    Started,
}

impl Proxy {
    /// Runs one exchange on `down`, whose head has been read. Returns whether the client
    /// connection can carry another request.
    pub(super) async fn exchange(
        &self,
        down: &mut HttpSession,
        shutdown: &ShutdownWatch,
        in_flight: InFlight,
    ) -> bool {
        let mut ctx = self.decide(down, in_flight).await;
        let reusable = match ctx.refusal.take() {
            Some(refusal) => self.refuse(down, &mut ctx, refusal).await,
            None => match self.forward(down, &mut ctx, shutdown).await {
                Ok(reusable) => reusable,
                Err((stage, e)) => self.fail(down, &mut ctx, stage, &e).await,
            },
        };
        access::record(&self.metrics, down, &ctx);
        reusable
    }

    /// Maps and checks every place of the request the head shows: the framing, the URL,
    /// the model header, and which body rewriter applies.
    async fn decide(&self, down: &HttpSession, in_flight: InFlight) -> Ctx {
        let start = Instant::now();
        let snapshot = self.store.snapshot();
        let req = down.req_header();
        let path_and_query = req.uri.path_and_query().map_or("/", |p| p.as_str());
        // Routes are matched on the path as the gateway's server decodes it.
        let path = decode_path(req.uri.path());
        let framing = request::framing(req.version, &req.headers, &down.get_headers_raw_bytes());
        // A request refused for its framing asks the gateway nothing, /key/info included.
        let mut caller = match framing {
            Some(_) => Caller {
                key: None,
                team: None,
                source: TeamSource::Unknown,
            },
            None => {
                self.identity
                    .identify(&snapshot, &req.headers, path_and_query)
                    .await
            }
        };
        let team = caller.team.take();
        let mut names = Names::new(snapshot, team).guarded(self.settings.guard);
        let (mut uri, mut model_header, mut body) = (None, None, None);
        if framing.is_none() {
            request::check_url(&path, path_and_query, &mut names);
            uri = request::rewrite_uri(path_and_query, &mut names);
            model_header = request::map_model_header(&req.headers, &mut names);
            body = RequestBody::for_request(req, &mut names);
        }
        let mut ctx = Ctx {
            start,
            family: Family::of(&path),
            models_list: req.method == Method::GET && matches!(&*path, "/v1/models" | "/models"),
            caller,
            names,
            body,
            uri,
            model_header,
            upstream_status: 0,
            refusal: None,
            error: None,
            failed: false,
            _in_flight: in_flight,
        };
        ctx.refusal = if let Some(why) = framing {
            let refusal = Refusal::Framing(why);
            self.count_refusal(&refusal);
            Some(refusal)
        } else if ctx.caller.source == TeamSource::LookupFailed && self.identity.fails_closed() {
            Some(Refusal::IdentityUnavailable)
        } else {
            self.guard_refusal(&ctx)
        };
        ctx
    }

    /// The request's head as it goes upstream: names mapped, the trusted team header and
    /// hop-by-hop headers removed, and an uncompressed answer asked for when it may need
    /// restoring (the hop is loopback inside the pod, where compression buys nothing).
    fn upstream_head(
        &self,
        down: &HttpSession,
        ctx: &Ctx,
        framing: Framing,
        upgrade: bool,
    ) -> Result<Box<RequestHeader>> {
        let mut head = Box::new(down.req_header().clone());
        let (uri, model_header) = (ctx.uri.as_deref(), ctx.model_header.as_ref());
        for name in super::hop_by_hop(&head.headers, upgrade) {
            head.remove_header(&name);
        }
        if upgrade {
            head.insert_header(CONNECTION, "upgrade")?;
        }
        // Kept alive whatever the client speaks: the pool serves every client.
        head.set_version(http::Version::HTTP_11);
        // modelmap answers `100 Continue` itself once it decides to read the body.
        head.remove_header(&EXPECT);
        if let Some(name) = self.identity.trusted_header() {
            head.remove_header(name);
        }
        let changed = uri.is_some() || model_header.is_some();
        if let Some(uri) = uri {
            let uri = uri
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewritten URI", e))?;
            head.set_uri(uri);
        }
        if let Some(values) = model_header {
            head.remove_header(request::MODEL_HEADER);
            for value in values {
                head.append_header(request::MODEL_HEADER, value.as_str())?;
            }
        }
        if changed || ctx.body.is_some() || ctx.models_list {
            head.remove_header(&ACCEPT_ENCODING);
        }
        match framing {
            Framing::AsSent => {}
            Framing::Length(len) => {
                head.remove_header(&TRANSFER_ENCODING);
                head.insert_header(CONTENT_LENGTH, len)?;
            }
            Framing::Chunked => {
                head.remove_header(&CONTENT_LENGTH);
                head.insert_header(TRANSFER_ENCODING, "chunked")?;
            }
        }
        Ok(head)
    }

    /// Forwards the request and relays the answer; `Ok(reusable)` when both ended.
    async fn forward(
        &self,
        down: &mut HttpSession,
        ctx: &mut Ctx,
        shutdown: &ShutdownWatch,
    ) -> std::result::Result<bool, (Stage, Box<Error>)> {
        let before = |e| (Stage::Before, e);
        let upgrade = request::is_websocket(down.req_header());
        let has_body = request::has_body(down.req_header());
        if has_body && request::expects_continue(down.req_header()) {
            down.write_continue_response()
                .await
                .map_err(|e| before(e.into_down()))?;
        }
        let deadline =
            tokio::time::Instant::from_std(ctx.start + self.settings.client_body_timeout);
        // The body up to the whole-body window, rewritten, before anything goes upstream.
        let mut held = Vec::new();
        let mut done = !has_body;
        let mut read = 0;
        while !done && read < WINDOW {
            let piece = read_piece(down, deadline).await.map_err(before)?;
            read += piece.as_ref().map_or(0, Bytes::len);
            done = piece.is_none() || down.is_body_done();
            let out = ctx.feed(piece, done);
            if !out.is_empty() {
                held.push(out);
            }
            if let Some(refusal) = self.guard_refusal(ctx) {
                return Ok(self.refuse(down, ctx, refusal).await);
            }
        }
        let framing = if has_body && done {
            Framing::Length(held.iter().map(Bytes::len).sum())
        } else if has_body && ctx.body.is_some() {
            // The rewritten length is not known yet.
            Framing::Chunked
        } else {
            Framing::AsSent
        };
        let outgoing = |head| Outgoing {
            head,
            body: &held,
            complete: done,
        };
        // The client is not watched while the gateway works: a client that half-closes
        // after its request still gets the answer; one that went away is noticed when
        // the answer is written (and a stream's gateway connection then closes).
        let head = self
            .upstream_head(down, ctx, framing, upgrade)
            .map_err(before)?;
        let mut up = match self.gateway.send(outgoing(head)).await {
            Ok(up) => up,
            Err(SendError::Failed(e)) => return Err(before(e)),
            Err(SendError::Retry) => {
                let head = self
                    .upstream_head(down, ctx, framing, upgrade)
                    .map_err(before)?;
                self.gateway
                    .send_fresh(outgoing(head))
                    .await
                    .map_err(before)?
            }
        };
        drop(held);
        let mut complete = done;
        if !done {
            complete = match self.stream_body(down, &mut up, ctx, deadline).await {
                Ok(Streamed::Done) => true,
                Ok(Streamed::AnsweredEarly) => false,
                Ok(Streamed::Refused(refusal)) => {
                    // The gateway sees the connection close before the body's end: an
                    // incomplete request it never handles.
                    drop(up);
                    return Ok(self.refuse(down, ctx, refusal).await);
                }
                Err(e) => return Err(before(e)),
            };
        }
        self.relay(down, up, ctx, shutdown, upgrade, complete).await
    }

    /// Streams the rest of the body upstream, full duplex: if the gateway answers before
    /// the body ends, the upload stops there and the answer is relayed.
    async fn stream_body(
        &self,
        down: &mut HttpSession,
        up: &mut Upstream,
        ctx: &mut Ctx,
        deadline: tokio::time::Instant,
    ) -> Result<Streamed> {
        loop {
            tokio::select! {
                biased;
                answer = up.read_response() => {
                    answer?;
                    if is_interim(up) {
                        // A 103, say: the final answer comes after the body, which goes on.
                        relay_interim(down, up).await?;
                        continue;
                    }
                    return Ok(Streamed::AnsweredEarly);
                }
                piece = read_piece(down, deadline) => {
                    let piece = piece?;
                    let end = piece.is_none() || down.is_body_done();
                    let out = ctx.feed(piece, end);
                    if let Some(refusal) = self.guard_refusal(ctx) {
                        return Ok(Streamed::Refused(refusal));
                    }
                    let sent = async {
                        if !out.is_empty() {
                            up.write_body(&out).await?;
                        }
                        if end {
                            up.finish_body().await?;
                        }
                        Ok::<_, Box<Error>>(())
                    };
                    if let Err(e) = sent.await {
                        // A gateway that answered and stopped reading: its answer may be
                        // waiting.
                        return match up.read_response().await {
                            Ok(_) => Ok(Streamed::AnsweredEarly),
                            Err(_) => Err(e),
                        };
                    }
                    if end {
                        up.read_response().await?;
                        return Ok(Streamed::Done);
                    }
                }
            }
        }
    }
}

/// How the body is framed upstream.
#[derive(Clone, Copy)]
enum Framing {
    /// As the client framed it (no body, or a body streamed untouched).
    AsSent,
    /// Whole, with its (new) length.
    Length(usize),
    /// Streamed through a rewriter: its length is not known yet.
    Chunked,
}

enum Streamed {
    Done,
    AnsweredEarly,
    Refused(Refusal),
}

/// The next piece of the client's body, within the body deadline (Pingora's own read
/// timeout is per read: a client trickling one byte at a time would never hit it).
async fn read_piece(
    down: &mut HttpSession,
    deadline: tokio::time::Instant,
) -> Result<Option<Bytes>> {
    match timeout_at(deadline, down.read_body_bytes()).await {
        Ok(piece) => piece.map_err(|e| e.into_down()),
        Err(_) => Error::e_explain(ErrorType::ReadTimedout, "request body deadline")
            .map_err(|e| e.into_down()),
    }
}
