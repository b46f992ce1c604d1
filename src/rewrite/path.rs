//! Model names in URLs.
//!
//! - Azure style: `…/openai/deployments/{model}/…` and `…/engines/{model}/…`;
//! - Gemini style: `…/models/{model}:generateContent` (also `streamGenerateContent`,
//!   `countTokens`);
//! - `?model=` on the realtime route (`/v1/realtime`, `/realtime`).
//!
//! The name is percent-decoded before lookup (a model name may contain `/`, written
//! literally or as `%2F`, which the gateway's server decodes alike before routing) and
//! the replacement is percent-encoded, leaving only unreserved characters as they are:
//! a `/` in a replacement is written `%2F`, so the rewritten URL splits exactly where the
//! original did (found by fuzzing). Everything else in the URL is kept byte for byte. A
//! name that is not valid UTF-8 once decoded is left alone.

use std::borrow::Cow;

const GEMINI_METHODS: [&str; 3] = [":generateContent", ":streamGenerateContent", ":countTokens"];
/// Endpoints that can follow an Azure deployment name (names may contain `/`).
const AZURE_ENDPOINTS: [&str; 12] = [
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/images/generations",
    "/images/edits",
    "/audio/transcriptions",
    "/audio/translations",
    "/audio/speech",
    "/responses",
    "/moderations",
    "/extensions/chat/completions",
    "/rerank",
];

/// Where the model name sits in a path: a byte range of the (encoded) path.
fn model_span(path: &str) -> Option<(usize, usize)> {
    for prefix in ["/openai/deployments/", "/engines/"] {
        if let Some(at) = path.find(prefix) {
            let start = at + prefix.len();
            let rest = &path[start..];
            // The longest known endpoint suffix decides where the name ends; otherwise
            // the name is one segment.
            let end = AZURE_ENDPOINTS
                .iter()
                .filter(|e| rest.ends_with(*e) && rest.len() > e.len())
                .map(|e| path.len() - e.len())
                .min()
                .unwrap_or_else(|| rest.find('/').map_or(path.len(), |i| start + i));
            return (end > start).then_some((start, end));
        }
    }
    let method = GEMINI_METHODS.iter().find(|m| path.ends_with(*m))?;
    let end = path.len() - method.len();
    let start = path[..end].rfind("/models/")? + "/models/".len();
    (end > start).then_some((start, end))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` as space too, for query values).
fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which URL place a name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPlace {
    Path,
    Query,
}

/// Rewrites the model name in `path_and_query`, if any; `map` returns the new name.
pub fn rewrite(
    path_and_query: &str,
    map: &mut impl FnMut(UrlPlace, &str) -> Option<String>,
) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut new_path = Cow::Borrowed(path);
    if let Some((start, end)) = model_span(path)
        && let Some(name) = decode(&path[start..end], false)
        && let Some(new) = map(UrlPlace::Path, &name)
    {
        new_path = Cow::Owned(format!(
            "{}{}{}",
            &path[..start],
            encode(&new),
            &path[end..]
        ));
    }
    let mut new_query = query.map(Cow::Borrowed);
    if let Some(q) = query
        && (path.ends_with("/realtime"))
    {
        let mut changed = false;
        let pairs: Vec<Cow<'_, str>> = q
            .split('&')
            .map(
                |pair| match pair.strip_prefix("model=").and_then(|v| decode(v, true)) {
                    Some(name) => match map(UrlPlace::Query, &name) {
                        Some(new) => {
                            changed = true;
                            Cow::Owned(format!("model={}", encode(&new)))
                        }
                        None => Cow::Borrowed(pair),
                    },
                    None => Cow::Borrowed(pair),
                },
            )
            .collect();
        if changed {
            new_query = Some(Cow::Owned(pairs.join("&")));
        }
    }
    let changed = matches!(new_path, Cow::Owned(_)) || matches!(new_query, Some(Cow::Owned(_)));
    changed.then(|| match new_query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(uri: &str) -> Option<String> {
        rewrite(uri, &mut |place, name| match (place, name) {
            (_, "gpt-4.1") => Some("model_name_team-abc_1".into()),
            (_, "openrouter/qwen") => Some("team/qwen internal".into()),
            (_, "gemini-pro") => Some("model_name_team-abc_g".into()),
            _ => None,
        })
    }

    #[test]
    fn azure_paths() {
        assert_eq!(
            run("/openai/deployments/gpt-4.1/chat/completions?api-version=2024-02-01").as_deref(),
            Some(
                "/openai/deployments/model_name_team-abc_1/chat/completions?api-version=2024-02-01"
            )
        );
        assert_eq!(
            run("/v1/engines/gpt-4.1/completions").as_deref(),
            Some("/v1/engines/model_name_team-abc_1/completions")
        );
        assert_eq!(
            run("/openai/deployments/openrouter/qwen/chat/completions").as_deref(),
            Some("/openai/deployments/team%2Fqwen%20internal/chat/completions"),
            "names with '/' end at the endpoint"
        );
        assert_eq!(run("/openai/deployments/other/chat/completions"), None);
    }

    #[test]
    fn gemini_paths_and_percent_encoding() {
        assert_eq!(
            run("/v1beta/models/gemini-pro:streamGenerateContent?alt=sse").as_deref(),
            Some("/v1beta/models/model_name_team-abc_g:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            run("/models/gpt%2D4.1:countTokens").as_deref(),
            Some("/models/model_name_team-abc_1:countTokens")
        );
        assert_eq!(
            run("/v1beta/models/openrouter%2Fqwen:generateContent").as_deref(),
            Some("/v1beta/models/team%2Fqwen%20internal:generateContent")
        );
        assert_eq!(
            run("/v1beta/models/gemini-pro"),
            None,
            "a model lookup, not a call"
        );
        assert_eq!(
            run("/models/%ZZ:generateContent"),
            None,
            "bad escapes are left alone"
        );
    }

    #[test]
    fn realtime_query() {
        assert_eq!(
            run("/v1/realtime?intent=x&model=gpt-4.1").as_deref(),
            Some("/v1/realtime?intent=x&model=model_name_team-abc_1")
        );
        assert_eq!(
            run("/v1/realtime?model=openrouter%2Fqwen").as_deref(),
            Some("/v1/realtime?model=team%2Fqwen%20internal")
        );
        assert_eq!(
            run("/v1/chat/completions?model=gpt-4.1"),
            None,
            "only the realtime route"
        );
        assert_eq!(run("/v1/realtime?model=other"), None);
    }
}

#[cfg(test)]
mod slash_tests {
    use super::*;

    /// Found by fuzzing: a replacement containing '/' must not split the name.
    #[test]
    fn a_replacement_with_a_slash_stays_one_name() {
        let uri = "/engines/n%2f%555/x";
        let new = rewrite(uri, &mut |_, name| Some(format!("{name}-X"))).expect("mapped");
        assert_eq!(new, "/engines/n%2FU5-X/x");
        let mut seen = String::new();
        rewrite(&new, &mut |_, name| {
            seen = name.to_string();
            None
        });
        assert_eq!(seen, "n/U5-X", "the rewritten URL holds the whole new name");
    }
}
