//! The response half of an exchange: the gateway's interim answers, its final head with
//! names restored (`response.rs`), the body restored piece by piece, a `101` turned
//! into a tunnel (`upgrade.rs`); the gateway connection pooled when both halves ended
//! cleanly.

use bytes::Bytes;
use http::header::{CONNECTION, TRANSFER_ENCODING};
use http::{Method, StatusCode};
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};

use super::exchange::{Ctx, Stage};
use super::{Proxy, response, upgrade};

impl Proxy {
    /// Relays the gateway's answer to `up`'s request; `Ok(reusable)` when the client
    /// connection can carry another request. `complete`: the request went whole.
    pub(super) async fn relay(
        &self,
        down: &mut HttpSession,
        mut up: Upstream,
        ctx: &mut Ctx,
        shutdown: &ShutdownWatch,
        upgrade: bool,
        complete: bool,
    ) -> std::result::Result<bool, (Stage, Box<Error>)> {
        let before = |e| (Stage::Before, e);
        // 1xx answers before the final one.
        while is_interim(&up) {
            relay_interim(down, &up).await.map_err(before)?;
            up.read_response().await.map_err(before)?;
        }
        let Some(resp) = up.resp_header() else {
            return Err(before(Error::explain(
                ErrorType::InvalidHTTPHeader,
                "no response head",
            )));
        };
        let mut resp = Box::new(resp.clone());
        let status = resp.status.as_u16();
        ctx.upstream_status = status;
        self.metrics.upstream_response(status);
        if status == 101 {
            if !upgrade {
                return Err(before(Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "101 to a request that asked for no upgrade",
                )));
            }
            for name in super::hop_by_hop(&resp.headers, true) {
                resp.remove_header(&name);
            }
            resp.insert_header(CONNECTION, "upgrade").map_err(before)?;
            down.write_response_header(resp)
                .await
                .map_err(|e| (Stage::Started, e.into_down()))?;
            upgrade::tunnel(down, &mut up).await;
            return Ok(false);
        }
        for name in super::hop_by_hop(&resp.headers, false) {
            resp.remove_header(&name);
        }
        let is_head = down.req_header().method == Method::HEAD;
        let mut restorer =
            response::prepare(&mut resp, is_head, ctx, &self.restore_budget).map_err(before)?;
        let length = response::content_length(&resp);
        let chunked = resp.headers.contains_key(TRANSFER_ENCODING);
        if chunked && down.req_header().version < http::Version::HTTP_11 {
            // An HTTP/1.0 client cannot read chunks: the body ends with the connection.
            resp.remove_header(&TRANSFER_ENCODING);
        }
        let bodiless = is_head || matches!(status, 204 | 304);
        let close_delimited = !bodiless
            && length.is_none()
            && !(chunked && down.req_header().version >= http::Version::HTTP_11);
        if *shutdown.borrow() || close_delimited {
            // Draining, or a body that ends with the connection: no further request.
            down.set_server_keepalive(None);
        }
        down.write_response_header(resp)
            .await
            .map_err(|e| (Stage::Started, e.into_down()))?;
        let started = |e| (Stage::Started, e);
        // The gateway connection goes back to the pool before the client can see the
        // response's end, so that the client's next request finds it there: the last
        // piece is written after the release.
        let last = loop {
            match restorer.as_mut() {
                Some(restorer) => {
                    let piece = up.read_body_bytes().await.map_err(started)?;
                    let end = piece.is_none() || up.is_body_done();
                    let out = restorer.feed(piece, end);
                    if end {
                        break out;
                    }
                    if !out.is_empty() {
                        down.write_body(&out)
                            .await
                            .map_err(|e| started(e.into_down()))?;
                    }
                }
                None => {
                    let before = up.body_bytes_received();
                    match up.read_body_ref().await.map_err(started)? {
                        // With a length, the piece that completes it is the last one.
                        Some(piece) if length.is_some_and(|n| before + piece.len() >= n) => {
                            break Bytes::copy_from_slice(piece);
                        }
                        Some(piece) => down
                            .write_body(piece)
                            .await
                            .map_err(|e| started(e.into_down()))
                            .map(drop)?,
                        None => break Bytes::new(),
                    }
                }
            }
        };
        if complete && up.is_body_done() {
            self.gateway.release(up).await;
        }
        if !last.is_empty() {
            down.write_body(&last)
                .await
                .map_err(|e| started(e.into_down()))?;
        }
        down.finish_body()
            .await
            .map_err(|e| started(e.into_down()))?;
        Ok(complete && down.is_body_done())
    }
}

/// Whether the gateway's latest answer is an interim one (1xx), not its final one or a
/// `101`.
pub(super) fn is_interim(up: &Upstream) -> bool {
    up.resp_header()
        .is_some_and(|r| r.status.is_informational() && r.status != StatusCode::SWITCHING_PROTOCOLS)
}

/// Relays the gateway's interim answer to the client: not a `100` (modelmap answers
/// `Expect` itself), and nothing to an HTTP/1.0 client, which cannot read one (RFC 9110
/// §15.2: it would take the 1xx for the answer).
pub(super) async fn relay_interim(down: &mut HttpSession, up: &Upstream) -> Result<()> {
    match up.resp_header() {
        Some(info)
            if info.status != StatusCode::CONTINUE
                && down.req_header().version == http::Version::HTTP_11 =>
        {
            down.write_response_header(Box::new(info.clone()))
                .await
                .map_err(|e| e.into_down())
        }
        _ => Ok(()),
    }
}
