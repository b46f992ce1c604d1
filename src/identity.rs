//! Who is calling: the caller's virtual key, its digest, and the team it belongs to.
//!
//! The key is read from the same headers, in the same order, as LiteLLM reads it, so
//! modelmap and the gateway always agree on which credential a request carries. The key
//! itself never leaves this module: callers get its SHA-256 digest (LiteLLM's own
//! `hashed_token`) and, for logs, a short prefix of that digest.
//!
//! Part one resolves teams from the mapping's `keys` table. The gateway lookup
//! (`/key/info`) plugs in behind [`TeamSource`] without changing callers.

use std::fmt;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::mapping::{KeyDigest, Mapping};

/// Headers LiteLLM reads a key from, in its order of preference.
const KEY_HEADERS: [&str; 6] = [
    "x-litellm-api-key",
    "authorization",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
];

/// The caller's credential as a digest; the raw key is not kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub KeyDigest);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// The first 8 hex digits: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

/// Where a request's team came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamSource {
    /// The mapping's `keys` table.
    KeysTable,
    /// No credential, or a credential no source knows: global aliases only.
    Unknown,
}

/// The caller as modelmap sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: Option<KeyHash>,
    pub team: Option<String>,
    pub source: TeamSource,
}

/// Extracts the caller's key the way LiteLLM does.
///
/// `custom_header`, when set, is read first (LiteLLM's `litellm_key_header_name`).
/// `?key=` counts only on Gemini `generateContent` routes, as in LiteLLM.
pub fn extract_key<'a>(
    headers: &'a HeaderMap,
    custom_header: Option<&str>,
    path_and_query: &'a str,
) -> Option<&'a str> {
    let from_headers = custom_header
        .into_iter()
        .chain(KEY_HEADERS)
        .find_map(|name| {
            let value = headers.get(name)?.to_str().ok()?.trim();
            let key = match name {
                "authorization" => strip_bearer(value)?,
                "x-litellm-api-key" => strip_bearer(value).unwrap_or(value),
                _ => value,
            };
            (!key.is_empty()).then_some(key)
        });
    from_headers.or_else(|| query_key(path_and_query))
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn query_key(path_and_query: &str) -> Option<&str> {
    let (path, query) = path_and_query.split_once('?')?;
    if !(path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent")) {
        return None;
    }
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|k| !k.is_empty())
}

/// Resolves the caller's team from the credential it presents.
pub fn identify(mapping: &Mapping, key: Option<&str>) -> Caller {
    let key = key.map(KeyHash::of);
    let team = key
        .and_then(|k| mapping.team_for_key(&k.0))
        .map(str::to_owned);
    let source = if team.is_some() {
        TeamSource::KeysTable
    } else {
        TeamSource::Unknown
    };
    Caller { key, team, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_order_matches_litellm() {
        let h = headers(&[
            ("authorization", "Bearer sk-auth"),
            ("x-litellm-api-key", "sk-lite"),
        ]);
        assert_eq!(extract_key(&h, None, "/"), Some("sk-lite"));
        let h = headers(&[("x-litellm-api-key", "Bearer sk-lite")]);
        assert_eq!(
            extract_key(&h, None, "/"),
            Some("sk-lite"),
            "Bearer prefix is optional there"
        );
        let h = headers(&[("api-key", "sk-azure"), ("x-api-key", "sk-anthropic")]);
        assert_eq!(extract_key(&h, None, "/"), Some("sk-azure"));
        let h = headers(&[
            ("x-goog-api-key", "sk-g"),
            ("ocp-apim-subscription-key", "sk-o"),
        ]);
        assert_eq!(extract_key(&h, None, "/"), Some("sk-g"));
        let h = headers(&[
            ("authorization", "Basic abc"),
            ("x-api-key", "sk-anthropic"),
        ]);
        assert_eq!(
            extract_key(&h, None, "/"),
            Some("sk-anthropic"),
            "non-bearer auth is not a key"
        );
    }

    #[test]
    fn custom_header_wins_and_query_key_only_on_gemini_routes() {
        let h = headers(&[
            ("authorization", "Bearer sk-auth"),
            ("x-my-key", "sk-custom"),
        ]);
        assert_eq!(extract_key(&h, Some("x-my-key"), "/"), Some("sk-custom"));
        let none = HeaderMap::new();
        assert_eq!(
            extract_key(
                &none,
                None,
                "/v1beta/models/gemini:generateContent?alt=sse&key=sk-q"
            ),
            Some("sk-q")
        );
        assert_eq!(
            extract_key(&none, None, "/v1/chat/completions?key=sk-q"),
            None
        );
    }

    #[test]
    fn digest_is_sha256_of_the_whole_key() {
        // sha256("sk-1234"), as LiteLLM stores it.
        let h = KeyHash::of("sk-1234");
        let hex: String = h.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
        assert_eq!(h.short(), "88dc28d0");
        assert!(!format!("{h:?}").contains("sk-"));
    }
}
