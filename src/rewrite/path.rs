//! Model names in URLs, read as the gateway reads them.
//!
//! uvicorn percent-decodes the path before Starlette routes on it (`unquote`: `%73` is
//! `s`, `%2F` is `/`, `%3A` is `:`), so every match here is made on the decoded path:
//! - Azure style: `/openai/deployments/{model}/…` and `/engines/{model}/…`; the name
//!   runs up to the endpoint at the end of the path (Starlette's `{model:path}` is
//!   greedy; names may contain `/`);
//! - Gemini style: `/v1beta/models/{model}:generateContent` (also
//!   `streamGenerateContent`, `countTokens`) and `/models/{model}:…`.
//!
//! Query parameters are read as Starlette reads them (`parse_qsl`, split on `&`,
//! `unquote_plus`): every `model` ([`Place::Query`]) and `target_model_names`
//! ([`Place::Target`]) parameter, in any case and however its name is encoded
//! (`mod%65l`), on every route; the path's model is at [`Place::Path`]. LiteLLM lets `?model=` win
//! over the body on inference routes and reads it on files, batches and realtime routes.
//!
//! A mapped name is written back percent-encoded (only unreserved characters, `/` and
//! `:` left as they are); when the path holds the name the whole path is written from its
//! decoded form, which the gateway decodes to the same route. Everything else is kept
//! byte for byte, and a URL that maps nothing is never changed.
//!
//! For the guard, [`segment_runs`] lists every stretch of the decoded path between two
//! separators: a superset of every reading of a model name from the path (LiteLLM's auth
//! regexes take `[^/]+` or `[^:]+`, its route templates the greedy `.*`, its
//! pass-through routes look for known names inside the path).

use std::borrow::Cow;

use super::names::{NameMapper, Place};
use super::py;

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
/// Most path separators whose stretches are checked; a longer path is unreadable.
pub const MAX_SEPARATORS: usize = 64;
/// Most query parameters read; a longer query is unreadable.
pub const MAX_PARAMS: usize = 256;

/// Where the model name sits in a decoded path: a byte range of it.
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
    // Starlette's templates are anchored: the name starts right after the route's own
    // `/models/`, whatever `/models/` the name itself contains.
    let start = ["/v1beta/models/", "/models/"]
        .iter()
        .find(|p| path.starts_with(*p))
        .map(|p| p.len())
        .or_else(|| path[..end].rfind("/models/").map(|i| i + "/models/".len()))?;
    (end > start).then_some((start, end))
}

/// The path as the gateway routes on it (uvicorn's `unquote`).
pub fn decode_path(path: &str) -> Cow<'_, str> {
    if path.contains('%') {
        Cow::Owned(py::unquote(path, false))
    } else {
        Cow::Borrowed(path)
    }
}

/// Every stretch of `path` that starts at its beginning or after a `/` and ends at its
/// end or before a `/` or `:`; `None` when there are more than [`MAX_SEPARATORS`]
/// separators (too many to check).
pub fn segment_runs(path: &str) -> Option<Vec<&str>> {
    let seps: Vec<usize> = path
        .char_indices()
        .filter(|(_, c)| matches!(c, '/' | ':'))
        .map(|(i, _)| i)
        .collect();
    if seps.len() > MAX_SEPARATORS {
        return None;
    }
    let starts = std::iter::once(0).chain(
        seps.iter()
            .filter(|&&i| path.as_bytes()[i] == b'/')
            .map(|i| i + 1),
    );
    let mut runs = Vec::new();
    for start in starts {
        for end in seps
            .iter()
            .copied()
            .filter(|&e| e > start)
            .chain([path.len()])
        {
            if end > start {
                runs.push(&path[start..end]);
            }
        }
    }
    Some(runs)
}

fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a decoded query parameter name names models, and where.
fn query_place(key: &str) -> Option<Place> {
    if key.eq_ignore_ascii_case("model") {
        Some(Place::Query)
    } else if key.eq_ignore_ascii_case("target_model_names") {
        Some(Place::Target)
    } else {
        None
    }
}

/// Rewrites the model names in `path_and_query`, if any maps; `mapper` gives the new
/// name (and may record what it saw). It is asked for the path's model and for every
/// model-naming query parameter, in order.
pub fn rewrite(path_and_query: &str, mapper: &mut impl NameMapper) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let decoded = decode_path(path);
    let mut new_path = Cow::Borrowed(path);
    if let Some((start, end)) = model_span(&decoded)
        && let Some(new) = mapper.map_at(Place::Path, &decoded[start..end])
    {
        new_path = Cow::Owned(format!(
            "{}{}{}",
            encode(&decoded[..start], b"/:"),
            encode(&new, b""),
            encode(&decoded[end..], b"/:")
        ));
    }
    let mut new_query = query.map(Cow::Borrowed);
    if let Some(q) = query {
        let mut rebuilt = String::new();
        let mut last = 0;
        for (key, value, range) in py::parse_qsl(q) {
            let Some(place) = query_place(&key) else {
                continue;
            };
            if let Some(new) = mapper.map_at(place, &value) {
                let raw_key = q[range.clone()].split('=').next().unwrap_or_default();
                rebuilt.push_str(&q[last..range.start]);
                rebuilt.push_str(raw_key);
                rebuilt.push('=');
                rebuilt.push_str(&encode(&new, b""));
                last = range.end;
            }
        }
        if last > 0 {
            rebuilt.push_str(&q[last..]);
            new_query = Some(Cow::Owned(rebuilt));
        }
    }
    let changed = matches!(new_path, Cow::Owned(_)) || matches!(new_query, Some(Cow::Owned(_)));
    changed.then(|| match new_query {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path.into_owned(),
    })
}

/// The number of query parameters, to bound the work of reading them.
pub fn query_params(path_and_query: &str) -> usize {
    path_and_query
        .split_once('?')
        .map_or(0, |(_, q)| q.split('&').filter(|p| !p.is_empty()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(uri: &str) -> Option<String> {
        rewrite(uri, &mut |place: Place, name: &str| match (place, name) {
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
            run("/v1/chat/completions?mod%65l=gpt-4.1&x=1").as_deref(),
            Some("/v1/chat/completions?mod%65l=model_name_team-abc_1&x=1"),
            "every route, the name decoded as Starlette decodes it"
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
        let uri = "/openai/deployments/n%2f%555/chat/completions";
        let new =
            rewrite(uri, &mut |_: Place, name: &str| Some(format!("{name}/X"))).expect("mapped");
        assert_eq!(new, "/openai/deployments/n%2FU5%2FX/chat/completions");
        let mut seen = String::new();
        rewrite(&new, &mut |_: Place, name: &str| {
            seen = name.to_string();
            None
        });
        assert_eq!(seen, "n/U5/X", "the rewritten URL holds the whole new name");
    }

    #[test]
    fn paths_are_decoded_before_matching() {
        let mut seen = Vec::new();
        rewrite(
            "/openai/deployment%73/a%2Cb/chat/completions",
            &mut |p: Place, name: &str| {
                seen.push((p, name.to_string()));
                None
            },
        );
        assert_eq!(seen, [(Place::Path, "a,b".to_string())]);
        let mut seen = Vec::new();
        rewrite(
            "/v1beta/models/m%3AgenerateContent?Model=x&target_model_names=y",
            &mut |p: Place, name: &str| {
                seen.push((p, name.to_string()));
                None
            },
        );
        assert_eq!(
            seen,
            [
                (Place::Path, "m".to_string()),
                (Place::Query, "x".to_string()),
                (Place::Target, "y".to_string())
            ]
        );
        let runs = segment_runs("/v1beta/models/a/b:generateContent").expect("few");
        for run in [
            "a",
            "a/b",
            "models/a/b",
            "b",
            "v1beta/models/a/b:generateContent",
        ] {
            assert!(runs.contains(&run), "{run} in {runs:?}");
        }
    }
}
