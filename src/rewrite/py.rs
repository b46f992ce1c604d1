//! The gateway's string semantics, reproduced exactly where model names depend on them.
//!
//! LiteLLM runs on Python, Starlette, uvicorn and python-multipart, and what it reads
//! from a request is decided by their string functions, not by Rust's. Each function
//! here names the Python function it reproduces; the tests pin the differences that
//! matter (Python's `str.strip()` removes `\x1c`–`\x1f`, Rust's `trim()` does not).

/// Python's `str.isspace()` for one character: Unicode white space plus the four
/// information separators `\x1c`–`\x1f`, which Python counts and Rust does not.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `[m.strip() for m in s.split(",")]`, empty entries dropped: how LiteLLM reads a
/// comma-separated model list (`_append_model_candidates`).
pub fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(strip).filter(|m| !m.is_empty())
}

/// Bytes as Latin-1 text: how Starlette turns header values and form bytes into `str`.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `urllib.parse.unquote(s)` (and `unquote_plus` with `plus`): each run of `%XX`
/// escapes is decoded as UTF-8 with invalid sequences replaced by U+FFFD; a `%` not
/// followed by two hex digits stays as it is; every other character is kept.
pub fn unquote(s: &str, plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run: Vec<u8> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            run.push(h << 4 | l);
            i += 3;
            continue;
        }
        if !run.is_empty() {
            out.push_str(&String::from_utf8_lossy(&run));
            run.clear();
        }
        // `s` is valid UTF-8 and `%`/`+` are ASCII: copy up to the next one of them.
        let next = bytes[i + 1..]
            .iter()
            .position(|&b| b == b'%' || b == b'+')
            .map_or(bytes.len(), |p| i + 1 + p);
        let piece = &s[i..next];
        if plus {
            out.push_str(&piece.replace('+', " "));
        } else {
            out.push_str(piece);
        }
        i = next;
    }
    if !run.is_empty() {
        out.push_str(&String::from_utf8_lossy(&run));
    }
    out
}

/// `urllib.parse.parse_qsl(qs, keep_blank_values=True)` as Starlette calls it on the
/// query string (Latin-1 text): pairs split on `&` only, at the first `=`, each side
/// `unquote_plus`ed; a pair without `=` has an empty value; empty pairs are skipped.
/// Each item also carries the raw pair's byte range, for rewriting it in place.
pub fn parse_qsl(qs: &str) -> Vec<(String, String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0;
    for pair in qs.split('&') {
        let range = at..at + pair.len();
        at += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((unquote(k, true), unquote(v, true), range));
    }
    out
}

/// python-multipart's `_parseparam` (vendored from `email.message`): splits a header
/// value at `;`, except inside double quotes, lower-casing each parameter's name. Its
/// quirks are kept on purpose (a `;` inside quotes with an odd number of escaped quotes),
/// since the gateway's reading is the one that counts.
fn parseparam(value: &str) -> Vec<String> {
    let s: Vec<char> = std::iter::once(';').chain(value.chars()).collect();
    let find = |c: char, from: usize, to: usize| -> Option<usize> {
        (from..to.min(s.len())).find(|&i| s[i] == c)
    };
    let count = |from: usize, to: usize, pat: &[char]| -> isize {
        if from >= to {
            return 0;
        }
        let hay = &s[from..to];
        let mut n = 0;
        let mut i = 0;
        while i + pat.len() <= hay.len() {
            if &hay[i..i + pat.len()] == pat {
                n += 1;
                i += pat.len();
            } else {
                i += 1;
            }
        }
        n
    };
    let mut plist = Vec::new();
    let mut start = 0;
    while find(';', start, s.len()) == Some(start) {
        start += 1;
        // `end` mirrors Python's `s.find(";", start)`: -1 when absent.
        let mut end: isize = find(';', start, s.len()).map_or(-1, |e| e as isize);
        let (mut ind, mut diff) = (start as isize, 0isize);
        while end > 0 {
            let (from, to) = (ind.max(0) as usize, end as usize);
            diff += count(from, to, &['"']) - count(from, to, &['\\', '"']);
            if diff % 2 == 0 {
                break;
            }
            let next = find(';', end as usize + 1, s.len()).map_or(-1, |e| e as isize);
            (end, ind) = (ind, next);
        }
        let end = if end < 0 { s.len() } else { end as usize };
        let seg: String = match find('=', start, end) {
            None => s[start..end].iter().collect(),
            Some(i) => {
                let name: String = s[start..i].iter().collect();
                let val: String = s[i + 1..end].iter().collect();
                format!(
                    "{}={}",
                    name.trim_end_matches([' ', '\t']).to_lowercase(),
                    val.trim_start_matches([' ', '\t'])
                )
            }
        };
        plist.push(seg.trim_matches([' ', '\t']).to_string());
        start = end;
    }
    plist
}

/// python-multipart's `parse_options_header` on Latin-1 text: the lower-cased value
/// before the first `;` and its parameters (quotes and `\\`/`\"` escapes removed,
/// extended `name*=` parameters ignored, the last of repeated names kept).
pub fn parse_options_header(value: &str) -> (String, Vec<(String, String)>) {
    if value.is_empty() {
        return (String::new(), Vec::new());
    }
    if !value.contains(';') {
        return (
            value.to_lowercase().trim_matches([' ', '\t']).into(),
            Vec::new(),
        );
    }
    let mut parts = parseparam(value).into_iter();
    let ctype = parts.next().unwrap_or_default().to_lowercase();
    let mut options: Vec<(String, String)> = Vec::new();
    for seg in parts {
        let (key, val) = seg.split_once('=').unwrap_or((&seg, ""));
        if key.contains('*') {
            continue;
        }
        let mut val = val.to_string();
        if val.len() >= 2 && val.starts_with('"') && val.ends_with('"') {
            val = val[1..val.len() - 1]
                .replace("\\\\", "\\")
                .replace("\\\"", "\"");
        }
        if key == "filename" {
            let v: Vec<char> = val.chars().collect();
            let drive = v.get(1..3) == Some(&[':', '\\'][..]);
            if drive || val.starts_with("\\\\") {
                val = val.rsplit('\\').next().unwrap_or_default().to_string();
            }
        }
        options.retain(|(k, _)| k != key);
        options.push((key.to_string(), val));
    }
    (ctype, options)
}

/// The value of parameter `name` from [`parse_options_header`]'s result.
pub fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// LiteLLM's `_normalize_media_type`: the part before the first `;`, `strip()`ped
/// (Python's white space) and lower-cased.
pub fn media_type(content_type: &str) -> String {
    strip(content_type.split(';').next().unwrap_or_default()).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_what_python_removes() {
        assert_eq!(strip("\x1c\x1fgpt\u{3000}\u{85}"), "gpt");
        assert_eq!(
            "\x1cgpt".trim(),
            "\x1cgpt",
            "Rust's trim keeps the separators"
        );
        assert_eq!(
            strip("\u{200b}gpt"),
            "\u{200b}gpt",
            "zero width is not space"
        );
        let l: Vec<&str> = list(" a ,\x1db\x1e, ,c").collect();
        assert_eq!(l, ["a", "b", "c"]);
    }

    #[test]
    fn unquote_like_urllib() {
        assert_eq!(unquote("deployment%73", false), "deployments");
        assert_eq!(unquote("a%2Fb%3a", false), "a/b:");
        assert_eq!(unquote("%ZZ%4", false), "%ZZ%4");
        assert_eq!(unquote("%C3%A9+x", true), "é x");
        assert_eq!(unquote("%C3+", false), "\u{fffd}+");
        assert_eq!(unquote("%E2%82", false), "\u{fffd}");
    }

    #[test]
    fn parse_qsl_like_python() {
        let q = parse_qsl("mod%65l=a&&x&model=b+c");
        let kv: Vec<(&str, &str)> = q.iter().map(|(k, v, _)| (&k[..], &v[..])).collect();
        assert_eq!(kv, [("model", "a"), ("x", ""), ("model", "b c")]);
        assert_eq!(q[2].2, 13..22);
    }

    #[test]
    fn options_header_like_python_multipart() {
        let (ct, o) =
            parse_options_header(r#"multipart/form-data; boundary="a;b"; BOUNDARY=c; x*=1"#);
        assert_eq!(ct, "multipart/form-data");
        assert_eq!(option(&o, "boundary"), Some("c"), "the last one wins");
        assert_eq!(option(&o, "x*"), None);
        let (cd, o) =
            parse_options_header(r#"form-data; name="x; filename=\"y\""; filename*=utf-8''z"#);
        assert_eq!(cd, "form-data");
        assert_eq!(option(&o, "name"), Some(r#"x; filename="y""#));
        assert_eq!(option(&o, "filename"), None, "inside quotes, and * ignored");
        assert_eq!(
            parse_options_header("Multipart/Mixed ").0,
            "multipart/mixed"
        );
        assert_eq!(
            media_type("\x1cMULTIPART/form-data\x1f; b=1"),
            "multipart/form-data"
        );
    }
}
