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
