//! Errors modelmap itself answers with, in the OpenAI error shape clients already parse:
//! `{"error": {"message", "type", "param", "code"}}`.

use bytes::Bytes;
use serde_json::json;

use crate::rewrite::unreadable::Unreadable;

/// The body of an OpenAI-style error.
pub fn openai_error_body(message: &str, kind: &str, code: &str) -> Bytes {
    let body = json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    Bytes::from(body.to_string())
}

/// A request modelmap refuses on its own, before the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body names another team's internal model name (the guard).
    OtherTeamsModel { requested: String },
    /// The team lookup failed and `--identity-fail-closed` is set.
    IdentityUnavailable,
    /// A part that may name a model cannot be read as the gateway reads it (the guard
    /// fails closed).
    Unreadable(Unreadable),
    /// A model name with characters it cannot carry as a response header on the gateway.
    InvalidName,
    /// Framing the gateway's HTTP parser could read differently.
    Framing(&'static str),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OtherTeamsModel { .. } => 403,
            Refusal::IdentityUnavailable => 503,
            Refusal::Unreadable(_) | Refusal::InvalidName | Refusal::Framing(_) => 400,
        }
    }

    /// The `reason` label of `modelmap_unreadable_requests_total`, for 400 refusals.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::Unreadable(why) => Some(why.as_str()),
            Refusal::InvalidName => Some("invalid_model_name"),
            Refusal::Framing(_) => Some("framing"),
            Refusal::OtherTeamsModel { .. } | Refusal::IdentityUnavailable => None,
        }
    }

    /// Whether the request's body framing can be trusted to read the body to its end.
    pub fn framing_trusted(&self) -> bool {
        !matches!(self, Refusal::Framing(_))
    }

    /// The OpenAI-shaped body. The guard's message names only what the caller sent.
    pub fn body(&self) -> Bytes {
        match self {
            Refusal::OtherTeamsModel { requested } => openai_error_body(
                &format!(
                    "model {requested:?} is another team's internal model name and is not available to this key; request the model by its public name"
                ),
                "invalid_request_error",
                "team_model_access_denied",
            ),
            Refusal::IdentityUnavailable => openai_error_body(
                "modelmap could not determine the caller's team (the gateway's /key/info did not answer); try again",
                "api_error",
                "identity_unavailable",
            ),
            Refusal::Unreadable(why) => openai_error_body(
                &format!(
                    "modelmap cannot read this request exactly as the gateway would, so it cannot check the model names in it: {}",
                    why.message()
                ),
                "invalid_request_error",
                "unreadable_request",
            ),
            Refusal::InvalidName => openai_error_body(
                "a model name contains control characters (or characters outside Latin-1) that cannot travel in an HTTP header",
                "invalid_request_error",
                "invalid_model_name",
            ),
            Refusal::Framing(why) => openai_error_body(
                &format!("the request's framing is ambiguous: {why}"),
                "invalid_request_error",
                "bad_framing",
            ),
        }
    }
}
