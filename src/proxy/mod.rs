//! The proxy loop: modelmap drives each HTTP/1.1 client connection itself on
//! pingora-core (its listeners, server and graceful shutdown, its downstream and upstream
//! HTTP sessions, its connector and pool), not through pingora-proxy's phases, so the
//! order of the work is the order of the code.
//!
//! ```text
//! connection   accepted; over --max-connections: 503 and close
//! ├─ head      first byte within the idle limit (in flight from then on), whole head
//! │            within --head-timeout and MAX_HEAD (head.rs: 408 / 431); then parsed by
//! │            pingora-core's session
//! ├─ decide    framing → snapshot → identity (may await /key/info) → URL, header and
//! │            body places mapped and checked (exchange.rs, request.rs); a refusal
//! │            from the head is answered here (refuse.rs): nothing goes upstream
//! ├─ body      read and rewritten up to the whole-body window (64 KiB of input) or
//! │            its end, before connecting; a refusal here also sends nothing upstream
//! ├─ upstream  connect or reuse (upstream.rs; a dead pooled connection is retried once);
//! │            the head (Content-Length when the body is whole, else chunked) and the
//! │            held body; a longer body streams on, full duplex: an early answer from
//! │            the gateway ends the upload and is relayed
//! ├─ response  1xx forwarded; names restored in headers and body (relay.rs,
//! │            response.rs); 101 turns the connection into a tunnel (upgrade.rs)
//! └─ done      access line and metrics (access.rs); both connections kept alive when
//!              their exchanges ended cleanly; the next pipelined head may already be
//!              in the buffer
//! ```
//!
//! What modelmap answers on its own (refusals, failures) is defined in `crate::error`
//! and written by `refuse.rs`.

mod access;
mod exchange;
mod head;
mod refuse;
mod relay;
mod request;
mod response;
mod upgrade;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::config::{ProxySettings, Settings};
use crate::error::{Failure, raw_response};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::rewrite::budget::Budget;
use crate::store::Store;
pub use head::MAX_HEAD;
pub use request::MODEL_HEADER;
use upstream::Gateway;

/// The proxy's shared state: one per server, read by every connection.
pub struct Proxy {
    settings: ProxySettings,
    upstream_url: String,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    identity: Identity,
    gateway: Gateway,
    in_flight: Arc<AtomicUsize>,
    open: AtomicUsize,
    /// Shared by every body held for restoring.
    restore_budget: Budget,
}

/// Longest time spent reading and discarding a refused request's body before answering.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl Proxy {
    pub fn new(
        settings: &Settings,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        in_flight: Arc<AtomicUsize>,
    ) -> Proxy {
        let args = &settings.proxy;
        let identity = Identity::new(settings, metrics.clone());
        let restore_budget = Budget::new(
            args.restore_buffer_budget,
            metrics.restore_buffered.clone(),
            metrics.restore_over_budget.clone(),
        );
        Proxy {
            settings: args.clone(),
            upstream_url: settings.upstream.url.clone(),
            gateway: Gateway::new(
                settings.upstream.addr,
                args.connect_timeout,
                args.read_timeout,
                args.upstream_idle_timeout,
            ),
            store,
            metrics,
            identity,
            in_flight,
            open: AtomicUsize::new(0),
            restore_budget,
        }
    }

    /// Serves one client connection, request after request, until either side ends it.
    async fn serve(&self, mut stream: Stream, mut shutdown: ShutdownWatch) {
        let mut prefix = BytesMut::new();
        // A new connection waits for its first byte as long as a kept-alive one.
        let idle = self.settings.keepalive_timeout;
        loop {
            if !head::first_byte(&mut stream, &mut prefix, idle, &mut shutdown).await {
                return;
            }
            // From its first byte a request is in flight: a drain waits for it.
            let in_flight = InFlight::new(&self.in_flight, &self.metrics.in_flight);
            let buf = match head::read(&mut stream, prefix, self.settings.head_timeout).await {
                head::Head::Ready(buf) => buf,
                head::Head::Gone => return,
                head::Head::Failed(failure) => return self.answer_raw(stream, &failure).await,
            };
            let mut session = HttpSession::new(stream);
            session.set_pipelining_enabled(true);
            session.set_pipelined_prefix(buf);
            session.set_read_timeout(Some(self.settings.client_read_timeout));
            // The whole head is in the buffer: parsing it reads nothing more.
            match session.read_request().await {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    // Not the error text: it quotes the head, credentials included.
                    tracing::debug!(error = e.etype().as_str(), "unparsable request head");
                    return self
                        .answer_raw(session.into_inner(), &Failure::BadHead)
                        .await;
                }
            }
            // Boxed: an idle connection then holds only this small loop, not the state
            // of a whole exchange.
            let reusable = Box::pin(self.exchange(&mut session, &shutdown, in_flight)).await;
            if !reusable || *shutdown.borrow() {
                session.shutdown().await;
                return;
            }
            match session.reuse().await {
                Ok(Some(next)) => {
                    let (s, p) = next.into_parts();
                    stream = s;
                    prefix = p.unwrap_or_default();
                }
                _ => return,
            }
        }
    }

    /// Answers a connection that has no HTTP session (yet), then closes it.
    async fn answer_raw(&self, mut stream: Stream, failure: &Failure) {
        let body = failure.body(&self.upstream_url);
        let out = raw_response(failure.status(), &body);
        if stream.write_all(&out).await.is_ok() {
            let _ = stream.flush().await;
        }
        let _ = stream.shutdown().await;
    }
}

/// The hop-by-hop headers present (RFC 9110 §7.6.1): those of one connection only, and
/// every header the `Connection` header names; `Upgrade` is kept for an upgrade. One
/// pass over the names (no hashing), and no allocation for the usual head that has none.
fn hop_by_hop(headers: &http::HeaderMap, upgrade: bool) -> Vec<http::HeaderName> {
    use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    let mut out = Vec::new();
    for name in headers.keys() {
        let hop = name == CONNECTION
            || name == TE
            || name == TRAILER
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection"
            || (!upgrade && name == UPGRADE);
        if hop {
            out.push(name.clone());
        }
    }
    if out.is_empty() {
        return out;
    }
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',') {
            let Ok(name) = http::HeaderName::from_bytes(name.trim().as_bytes()) else {
                continue;
            };
            // The framing headers are modelmap's to set, whatever `Connection` says.
            if name != TRANSFER_ENCODING && name != CONTENT_LENGTH && !(upgrade && name == UPGRADE)
            {
                out.push(name);
            }
        }
    }
    out
}

/// The value of a head's Content-Length, when it is one number.
fn length(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Holds a place among the open connections while it lives.
struct Open<'a>(&'a Proxy);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connections_open.dec();
    }
}

#[async_trait]
impl ServerApp for Proxy {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= self.settings.max_connections {
            // Not counted as open: it is answered and closed at once.
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.connections_refused.inc();
            self.answer_raw(stream, &Failure::TooManyConnections).await;
            return None;
        }
        self.metrics.connections_open.inc();
        let slot = Open(self);
        self.serve(stream, shutdown.clone()).await;
        drop(slot);
        None
    }
}

/// Counts a request as in flight (for draining, and the gauge) while it lives.
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
