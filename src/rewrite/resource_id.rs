//! Model names hidden inside LiteLLM's managed file and batch ids.
//!
//! LiteLLM hands out file and batch ids that carry the model they belong to, base64url
//! encoded: `file-`/`batch_` + base64 of `litellm:…;model,{name};…`, or base64 of
//! `litellm_proxy:…;target_model_names,{a},{b};…`. When such an id comes back (a body's
//! `file_id`, `input_file_id`, …, or a path segment), the gateway decodes it and
//! authorizes and routes on the names inside (`decode_model_from_file_id`,
//! `get_models_from_unified_file_id`). A caller can write such an id itself, so the
//! guard reads the names out the same way. Ids are never rewritten: they name files the
//! gateway created.

use super::py;

/// Body fields LiteLLM reads managed ids from (`_MODEL_ROUTING_ID_FIELDS`).
pub const ID_FIELDS: [&str; 11] = [
    "file_id",
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "batch_id",
    "fine_tuning_job_id",
    "training_file",
    "validation_file",
    "vector_store_id",
    "video_id",
    "character_id",
];

/// Python's `base64.urlsafe_b64decode` after LiteLLM re-pads the id, byte by byte:
/// characters outside the alphabet are discarded (Python's non-validating decode),
/// decoding stops at padding. A superset reading: whatever Python decodes, this
/// decodes too.
fn b64_bytes(s: &str) -> impl Iterator<Item = u8> + '_ {
    let (mut acc, mut bits) = (0u32, 0u32);
    s.bytes()
        .take_while(|&b| b != b'=')
        .filter_map(|b| match b {
            b'A'..=b'Z' => Some(b - b'A'),
            b'a'..=b'z' => Some(b - b'a' + 26),
            b'0'..=b'9' => Some(b - b'0' + 52),
            b'-' | b'+' => Some(62),
            b'_' | b'/' => Some(63),
            _ => None,
        })
        .filter_map(move |v| {
            acc = acc << 6 | u32::from(v);
            bits += 6;
            (bits >= 8).then(|| {
                bits -= 8;
                (acc >> bits) as u8
            })
        })
}

fn b64decode(s: &str) -> Vec<u8> {
    b64_bytes(s).collect()
}

/// Whether `b64decode(s)` contains `model`, without decoding into memory: most path
/// segments and ids the guard reads are nothing of the kind, and this keeps them cheap.
fn decodes_to_model(s: &str) -> bool {
    const MODEL: u64 = u64::from_be_bytes([0, 0, 0, b'm', b'o', b'd', b'e', b'l']);
    let mut window = 0u64;
    b64_bytes(s).any(|b| {
        window = (window << 8 | u64::from(b)) & 0xff_ffff_ffff;
        window == MODEL
    })
}

/// The text after `marker` up to the next `;`, for every occurrence of `marker`.
fn fields<'a>(text: &'a str, marker: &'a str) -> impl Iterator<Item = &'a str> {
    text.match_indices(marker).map(move |(at, _)| {
        let rest = &text[at + marker.len()..];
        &rest[..rest.find(';').unwrap_or(rest.len())]
    })
}

/// Every model name the gateway may read from `id`: a superset of LiteLLM's readings
/// (`decode_model_from_file_id`, `get_models_from_unified_file_id`,
/// `get_model_id_from_unified_batch_id`, `parse_unified_id`, the video and character id
/// decoders). The id is read as it is (`parse_unified_id` takes an undecoded
/// `litellm_proxy:…` too) and base64-decoded whole and after any prefix (`file-`,
/// `batch_`, `video_`, …). A `model_id` is resolved by the gateway through its router,
/// and kept as it is when it names no deployment id: so it is checked as a name too.
pub fn models(id: &str) -> Vec<String> {
    let after = |sep: char| id.split_once(sep).map(|(_, rest)| rest);
    if !id.contains("model")
        && ![Some(id), after('-'), after('_')]
            .into_iter()
            .flatten()
            .any(decodes_to_model)
    {
        return Vec::new();
    }
    let decoded: Vec<String> = [Some(id), after('-'), after('_')]
        .into_iter()
        .flatten()
        .map(|c| String::from_utf8_lossy(&b64decode(c)).into_owned())
        .collect();
    let mut out = Vec::new();
    for text in std::iter::once(id).chain(decoded.iter().map(String::as_str)) {
        if !text.contains("model") {
            continue;
        }
        for marker in [";model,", "model_id:", "model_id,"] {
            out.extend(fields(text, marker).map(|n| py::strip(n).to_string()));
        }
        for list in fields(text, "target_model_names,") {
            out.extend(py::list(list).map(str::to_string));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn the_quick_check_agrees_with_decoding() {
        for text in [
            "model",
            "xmodel",
            "xxmodel",
            "litellm:application/jsonl;model,m;x",
            "mode",
            "completions",
            "nothing here",
        ] {
            for id in [b64(text), format!("file-{}", b64(text)), text.to_string()] {
                let decoded = b64decode(&id);
                let has = decoded.windows(5).any(|w| w == b"model");
                assert_eq!(decodes_to_model(&id), has, "{id:?} ({text:?})");
            }
        }
    }

    #[test]
    fn names_inside_managed_ids_are_found() {
        let file = format!(
            "file-{}",
            b64("litellm:application/jsonl;model, model_name_u_2 ;x")
        );
        assert_eq!(models(&file), ["model_name_u_2"]);
        let unified =
            b64("litellm_proxy:application/octet-stream;unified_id,1;target_model_names,a, b");
        assert_eq!(models(&unified), ["a", "b"]);
        let noisy: String = b64("litellm:x;model,m")
            .chars()
            .flat_map(|c| [c, '!'])
            .collect();
        assert_eq!(
            models(&noisy),
            ["m"],
            "Python drops characters outside the alphabet"
        );
        assert!(models("file-abc123").is_empty());
        let batch = b64("litellm_proxy;model_id:model_name_u_2;llm_batch_id:batch_1");
        assert_eq!(models(&batch), ["model_name_u_2"]);
        assert_eq!(
            models("litellm_proxy:vector_store;unified_id,1;target_model_names,m"),
            ["m"],
            "an id LiteLLM reads undecoded"
        );
    }
}
