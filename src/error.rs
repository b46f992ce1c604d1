//! Errors modelmap itself answers with, in the OpenAI error shape clients already parse:
//! `{"error": {"message", "type", "param", "code"}}`.

use bytes::Bytes;
use serde_json::json;

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
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OtherTeamsModel { .. } => 403,
            Refusal::IdentityUnavailable => 503,
        }
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
        }
    }
}
