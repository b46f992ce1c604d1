//! The gateway side: pingora-core's connector and connection pool, and sending a request
//! head with the first part of its body.
//!
//! A pooled connection can die while idle (the gateway's keep-alive timeout closes it as
//! modelmap picks it up). Such a failure shows as a write error or, more often, as the
//! connection closing before any byte of the answer. When that happens on a reused
//! connection and the whole request is still in hand (nothing of the client's body was
//! consumed beyond what was sent), the request is sent once more on a fresh connection;
//! a fresh connection's failure is the answer.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::upstreams::peer::HttpPeer;
use pingora::upstreams::peer::Peer;
use pingora::{ErrorType, Result};

/// The gateway: where to connect, how long to wait, and the pool of idle connections.
pub(super) struct Gateway {
    transport: TransportConnector,
    /// Where, and the connect and pool-idle timeouts.
    peer: HttpPeer,
    read_timeout: Duration,
}

/// A request ready to go upstream: its head and the body bytes held so far.
pub(super) struct Outgoing<'a> {
    pub head: Box<RequestHeader>,
    pub body: &'a [Bytes],
    /// The body is complete: send its end too.
    pub complete: bool,
}

/// Why a send failed.
pub(super) enum SendError {
    /// A reused connection was dead: send once more, on a fresh one, with the head made
    /// again (rather than kept as a copy on every request).
    Retry,
    Failed(Box<pingora::Error>),
}

impl Gateway {
    pub fn new(
        addr: std::net::SocketAddr,
        connect_timeout: Duration,
        read_timeout: Duration,
        idle_timeout: Duration,
    ) -> Gateway {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(connect_timeout);
        peer.options.total_connection_timeout = Some(connect_timeout);
        peer.options.idle_timeout = Some(idle_timeout);
        Gateway {
            transport: TransportConnector::new(None),
            peer,
            read_timeout,
        }
    }

    /// Connects (or reuses a pooled connection) and sends `req`. With a complete body, the
    /// answer's head is read too (so that a dead pooled connection is found and retried);
    /// otherwise the caller streams the rest of the body.
    pub async fn send(&self, req: Outgoing<'_>) -> std::result::Result<Upstream, SendError> {
        let (mut up, reused) = self.connect().await.map_err(SendError::Failed)?;
        match send_on(&mut up, req).await {
            Ok(()) => Ok(up),
            Err(e) if reused && retryable(&e) => {
                tracing::debug!(
                    error = e.etype().as_str(),
                    "pooled gateway connection was dead; retrying once"
                );
                Err(SendError::Retry)
            }
            Err(e) => Err(SendError::Failed(e)),
        }
    }

    /// Sends `req` on a new connection, past the pool: it may hold more connections the
    /// gateway closed at the same moment.
    pub async fn send_fresh(&self, req: Outgoing<'_>) -> Result<Upstream> {
        let stream = self.transport.new_stream(&self.peer).await?;
        let mut up = self.session(stream);
        send_on(&mut up, req).await?;
        Ok(up)
    }

    async fn connect(&self) -> Result<(Upstream, bool)> {
        let (stream, reused) = self.transport.get_stream(&self.peer).await?;
        Ok((self.session(stream), reused))
    }

    fn session(&self, stream: pingora::protocols::Stream) -> Upstream {
        let mut up = Upstream::new_with_options(stream, &self.peer);
        up.read_timeout = Some(self.read_timeout);
        up.write_timeout = Some(self.read_timeout);
        up
    }

    /// Returns a connection whose exchange ended cleanly to the pool.
    pub async fn release(&self, mut up: Upstream) {
        up.respect_keepalive();
        if let Some(stream) = up.reuse().await {
            self.transport
                .release_stream(stream, self.peer.reuse_hash(), self.peer.idle_timeout());
        }
    }
}

async fn send_on(up: &mut Upstream, req: Outgoing<'_>) -> Result<()> {
    up.write_request_header(req.head).await?;
    for piece in req.body {
        up.write_body(piece).await?;
    }
    if req.complete {
        up.finish_body().await?;
        up.read_response().await?;
    }
    Ok(())
}

/// A failure that a dead pooled connection produces, before any answer arrived.
fn retryable(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::WriteError | ErrorType::ReadError
    )
}
