//! Reading the caller's credential the way LiteLLM reads it, and its digest.
//!
//! Headers are tried in LiteLLM's order (an operator's custom header first), then `?key=`
//! on Gemini `generateContent` routes only. The key itself stays in the request: callers
//! of this module keep its SHA-256 digest (LiteLLM's own `hashed_token`) and, for logs, a
//! short prefix of that digest. [`Credential::lookup_header`] re-presents the credential
//! exactly as the caller sent it, for the gateway's `/key/info`.

use std::fmt;

use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::mapping::KeyDigest;

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
        // A client sends the same key on every request of a connection, and most
        // workers see few keys: the last digest per thread is remembered (the key is
        // compared whole, so a different key is never given another's digest).
        thread_local! {
            static LAST: std::cell::RefCell<(String, KeyDigest)> =
                const { std::cell::RefCell::new((String::new(), [0; 32])) };
        }
        LAST.with_borrow_mut(|(last, digest)| {
            if last.is_empty() || last != key {
                *digest = Sha256::digest(key.as_bytes()).into();
                last.clear();
                last.push_str(key);
            }
            KeyHash(*digest)
        })
    }

    /// The first 8 hex digits: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(8);
        for b in &self.0[..4] {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        out
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", self.short())
    }
}

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// This request header (lowercase name), whose raw value is `value`.
    Header(&'a str, &'a HeaderValue),
    /// `?key=` on a Gemini route.
    Query,
}

/// The caller's credential, borrowed from the request for the request's lifetime only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The key, without any `Bearer ` prefix.
    pub key: &'a str,
    pub place: Place<'a>,
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.place {
            Place::Header(name, _) => name,
            Place::Query => "?key=",
        };
        write!(f, "Credential({place}, {:?})", self.hash())
    }
}

impl Credential<'_> {
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.key)
    }

    /// The header to present to the gateway: the caller's own header and value, byte for
    /// byte; a `?key=` credential becomes `Authorization: Bearer <key>`.
    pub fn lookup_header(&self) -> Option<(&str, HeaderValue)> {
        match self.place {
            Place::Header(name, value) => Some((name, value.clone())),
            Place::Query => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", self.key)).ok()?;
                value.set_sensitive(true);
                Some(("authorization", value))
            }
        }
    }

    /// Whether the credential is a JWT (three base64url segments) rather than a key.
    /// LiteLLM's JWT callers have no key hash and so no team modelmap could look up.
    pub fn is_jwt(&self) -> bool {
        let base64url = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        let mut parts = self.key.split('.');
        !self.key.starts_with("sk-")
            && parts.by_ref().take(3).filter(|p| base64url(p)).count() == 3
            && parts.next().is_none()
    }
}

/// Finds the caller's credential the way LiteLLM does.
///
/// `custom_header`, when set, is read first (LiteLLM's `litellm_key_header_name`).
/// `?key=` counts only on Gemini `generateContent` routes, as in LiteLLM.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    custom_header: Option<&'a str>,
    path_and_query: &'a str,
) -> Option<Credential<'a>> {
    let from_headers = custom_header
        .into_iter()
        .chain(KEY_HEADERS)
        .find_map(|name| {
            let raw = headers.get(name)?;
            let value = raw.to_str().ok()?.trim();
            let key = match name {
                "authorization" => strip_bearer(value)?,
                "x-litellm-api-key" => strip_bearer(value).unwrap_or(value),
                _ => value,
            };
            (!key.is_empty()).then_some(Credential {
                key,
                place: Place::Header(name, raw),
            })
        });
    from_headers.or_else(|| {
        query_key(path_and_query).map(|key| Credential {
            key,
            place: Place::Query,
        })
    })
}

/// The key alone (see [`extract`]).
pub fn extract_key<'a>(
    headers: &'a HeaderMap,
    custom_header: Option<&'a str>,
    path_and_query: &'a str,
) -> Option<&'a str> {
    extract(headers, custom_header, path_and_query).map(|c| c.key)
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn query_key(path_and_query: &str) -> Option<&str> {
    let (path, query) = path_and_query.split_once('?')?;
    // The route is matched on the decoded path (`%3AgenerateContent` is the same route).
    let path = crate::rewrite::path::decode_path(path);
    if !(path.ends_with(":generateContent") || path.ends_with(":streamGenerateContent")) {
        return None;
    }
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_remembered_digest_is_only_ever_the_same_keys() {
        let a = KeyHash::of("sk-1234");
        let b = KeyHash::of("sk-1235");
        assert_ne!(a, b);
        assert_eq!(KeyHash::of("sk-1234"), a);
        assert_eq!(KeyHash::of("sk-1235"), b);
        assert_eq!(a.short(), "88dc28d0");
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

    #[test]
    fn lookup_header_is_the_callers_own() {
        let h = headers(&[("x-api-key", "sk-anthropic"), ("x-goog-api-key", "sk-g")]);
        let c = extract(&h, None, "/").expect("found");
        let (name, value) = c.lookup_header().expect("header");
        assert_eq!(
            (name, value.to_str().ok()),
            ("x-api-key", Some("sk-anthropic"))
        );
        let h = headers(&[("x-litellm-api-key", "Bearer sk-lite")]);
        let c = extract(&h, None, "/").expect("found");
        assert_eq!(
            c.lookup_header()
                .map(|(n, v)| (n, v.to_str().map(str::to_owned).ok())),
            Some(("x-litellm-api-key", Some("Bearer sk-lite".to_owned()))),
            "the value goes as sent, prefix and all"
        );
        let none = HeaderMap::new();
        let c = extract(
            &none,
            None,
            "/v1beta/models/g:streamGenerateContent?key=sk-q",
        )
        .expect("found");
        let (name, value) = c.lookup_header().expect("header");
        assert_eq!(
            (name, value.to_str().ok()),
            ("authorization", Some("Bearer sk-q"))
        );
        assert!(value.is_sensitive());
        assert!(
            !format!("{c:?}").contains("sk-q"),
            "Debug shows the digest only"
        );
    }

    #[test]
    fn jwts_are_recognised() {
        let jwt = |key: &'static str| Credential {
            key,
            place: Place::Query,
        };
        assert!(jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_x").is_jwt());
        assert!(!jwt("sk-a.b.c").is_jwt(), "virtual keys are never JWTs");
        assert!(!jwt("a.b").is_jwt());
        assert!(!jwt("a.b.c.d").is_jwt());
        assert!(!jwt("a..c").is_jwt());
        assert!(!jwt("a.b/c.d").is_jwt());
    }
}
