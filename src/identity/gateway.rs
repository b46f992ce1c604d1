//! Asking the gateway which team a key belongs to: `GET /key/info` with the caller's own
//! credential header (LiteLLM allows that for any valid key; no admin key is involved).
//!
//! - 200 with `{"info": {"team_id": "team-abc" | null, ...}}` is a valid key, with or
//!   without a team (an empty `team_id` counts as none);
//! - 401 and 403 mean the key is unknown or not allowed: no team (the gateway will refuse
//!   the request itself); 404 is LiteLLM's "Key not found in database" for a credential
//!   it accepts but has no key record of (the master key): no team either;
//! - anything else (another status, a body that is not that shape, a connection failure,
//!   no answer within the timeout) is a [`LookupError`]: modelmap does not know.
//!
//! The request goes through Pingora's own HTTP/1 connector, so lookups reuse pooled
//! connections to the gateway exactly as proxied requests do, with no second HTTP stack.
//! A pooled connection the gateway has just closed is retried once on a fresh one.
//! Errors never carry the key or the gateway's body text (a body may echo the key).

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use serde::Deserialize;

/// Largest `/key/info` body read; LiteLLM's is a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// What the gateway said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A valid key, and its team (`None`: a key without a team).
    Valid(Option<String>),
    /// 401/403/404: unknown, invalid, expired or blocked, or no key record (master key).
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no answer from /key/info within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the gateway for /key/info: {0}")]
    Transport(&'static str),
    #[error("/key/info answered HTTP {0}")]
    Status(u16),
    #[error("/key/info answered 200 with a body that is not LiteLLM's key info ({0})")]
    Unparseable(&'static str),
}

#[derive(Deserialize)]
struct KeyInfo {
    info: Info,
}

#[derive(Deserialize)]
struct Info {
    #[serde(default)]
    team_id: Option<String>,
}

/// Reads an answer from a status and body.
pub fn interpret(status: u16, body: &[u8]) -> Result<Answer, LookupError> {
    match status {
        200 => {
            let parsed: KeyInfo = serde_json::from_slice(body).map_err(|e| {
                // serde's message may quote the body (and so the key): keep the category.
                LookupError::Unparseable(match e.classify() {
                    serde_json::error::Category::Data => "unexpected shape",
                    serde_json::error::Category::Syntax => "invalid JSON",
                    serde_json::error::Category::Eof => "truncated JSON",
                    serde_json::error::Category::Io => "read error",
                })
            })?;
            Ok(Answer::Valid(
                parsed.info.team_id.filter(|t| !t.trim().is_empty()),
            ))
        }
        401 | 403 | 404 => Ok(Answer::Invalid),
        other => Err(LookupError::Status(other)),
    }
}

/// A `/key/info` client for one gateway.
pub struct Gateway {
    connector: Connector,
    peer: HttpPeer,
    host: String,
    timeout: Duration,
}

enum Attempt {
    Done(Result<Answer, LookupError>),
    /// The pooled connection was dead before any answer: worth one fresh try.
    Stale,
}

impl Gateway {
    pub fn new(addr: SocketAddr, host: &str, timeout: Duration) -> Gateway {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        Gateway {
            connector: Connector::new(None),
            peer,
            host: host.to_string(),
            timeout,
        }
    }

    /// Asks the gateway about the credential in `header: value`, within the timeout.
    pub async fn ask(&self, header: &str, value: HeaderValue) -> Result<Answer, LookupError> {
        let attempts = async {
            for _ in 0..2 {
                if let Attempt::Done(result) = self.attempt(header, value.clone()).await {
                    return result;
                }
            }
            Err(LookupError::Transport("connection closed"))
        };
        tokio::time::timeout(self.timeout, attempts)
            .await
            .unwrap_or(Err(LookupError::Timeout(self.timeout)))
    }

    async fn attempt(&self, header: &str, value: HeaderValue) -> Attempt {
        use pingora::ErrorType::*;
        let (mut http, reused) = match self.connector.get_http_session(&self.peer).await {
            Ok(s) => s,
            Err(e) => return Attempt::Done(Err(transport(&e))),
        };
        match exchange(&mut http, self.request(header, value)).await {
            Ok((status, body)) => {
                self.connector
                    .release_http_session(http, &self.peer, None)
                    .await;
                Attempt::Done(interpret(status, &body))
            }
            Err(e)
                if reused
                    && matches!(
                        e.etype(),
                        ConnectionClosed | ReadError | WriteError | H1Error | InvalidHTTPHeader
                    ) =>
            {
                Attempt::Stale
            }
            Err(e) => Attempt::Done(Err(transport(&e))),
        }
    }

    fn request(&self, header: &str, value: HeaderValue) -> Option<RequestHeader> {
        let mut req = RequestHeader::build("GET", b"/key/info", None).ok()?;
        req.insert_header("host", self.host.as_str()).ok()?;
        req.insert_header("accept", "application/json").ok()?;
        req.insert_header(
            "user-agent",
            concat!("modelmap/", env!("CARGO_PKG_VERSION")),
        )
        .ok()?;
        req.insert_header(header.to_string(), value).ok()?;
        Some(req)
    }
}

fn transport(e: &pingora::Error) -> LookupError {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => LookupError::Transport("timed out"),
        other => LookupError::Transport(other.as_str()),
    }
}

/// Sends the request and reads the whole response (status and capped body).
async fn exchange(
    http: &mut HttpSession,
    req: Option<RequestHeader>,
) -> pingora::Result<(u16, Vec<u8>)> {
    use pingora::{Error, ErrorType};
    let req = req.ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "credential"))?;
    http.write_request_header(Box::new(req)).await?;
    http.read_response().await?;
    let status = http.get_status().map_or(0, |s| s.as_u16());
    let mut body = Vec::new();
    while let Some(chunk) = http.read_body_bytes().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "key info body too large");
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_shapes() {
        let body = br#"{"key":"sk-1234","info":{"key_alias":null,"team_id":"team-abc","models":["gpt-4.1"],"aliases":{},"blocked":null,"expires":null}}"#;
        assert_eq!(
            interpret(200, body),
            Ok(Answer::Valid(Some("team-abc".into())))
        );
        let body = br#"{"key":"sk-1234","info":{"team_id":null,"models":[]}}"#;
        assert_eq!(interpret(200, body), Ok(Answer::Valid(None)));
        assert_eq!(
            interpret(200, br#"{"info":{"team_id":""}}"#),
            Ok(Answer::Valid(None))
        );
        let denied = br#"{"error":{"message":"Authentication Error, Invalid proxy server token passed","type":"auth_error","param":"None","code":"401"}}"#;
        assert_eq!(interpret(401, denied), Ok(Answer::Invalid));
        assert_eq!(interpret(403, b""), Ok(Answer::Invalid));
        let master = br#"{"error":{"message":"Key not found in database","type":"not_found_error","param":"key","code":"404"}}"#;
        assert_eq!(
            interpret(404, master),
            Ok(Answer::Invalid),
            "the master key"
        );
    }

    #[test]
    fn anything_else_is_an_error_that_quotes_nothing() {
        assert_eq!(interpret(500, b"oops"), Err(LookupError::Status(500)));
        assert_eq!(interpret(400, b""), Err(LookupError::Status(400)));
        assert_eq!(interpret(429, b""), Err(LookupError::Status(429)));
        let e =
            interpret(200, br#"{"key":"sk-secret","info":{"team_id":42}}"#).expect_err("bad type");
        assert_eq!(e, LookupError::Unparseable("unexpected shape"));
        assert!(!e.to_string().contains("sk-secret"));
        let e = interpret(200, br#"{"key":"sk-secret""#).expect_err("truncated");
        assert!(!e.to_string().contains("sk-secret"), "{e}");
        assert!(interpret(200, b"{}").is_err(), "info is required");
    }
}
