use std::sync::Arc;

use super::*;
use crate::mapping::Mapping;
use crate::rewrite::names::Names;

fn names() -> Names {
    let m = Mapping::parse(
        "version: 1\nteams:\n  t:\n    models:\n      whisper-1: model_name_t_whisper\n      gpt-4.1: model_name_t_gpt\n",
        "t",
    )
    .expect("valid");
    Names::new(Arc::new(m), Some("t".into()))
}

const B: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

fn part(name: &str, filename: Option<&str>, body: &[u8]) -> Vec<u8> {
    let file = filename
        .map(|f| format!("; filename=\"{f}\""))
        .unwrap_or_default();
    let ctype = if filename.is_some() {
        "Content-Type: application/octet-stream\r\n"
    } else {
        ""
    };
    [
        format!("--{B}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n{ctype}\r\n")
            .as_bytes(),
        body,
        b"\r\n",
    ]
    .concat()
}

fn form(parts: &[Vec<u8>]) -> Vec<u8> {
    [parts.concat(), format!("--{B}--\r\n").into_bytes()].concat()
}

fn run(body: &[u8], batch: bool, cuts: &[usize]) -> (Vec<u8>, Names) {
    let mut rw = MultipartRewriter::new(B, batch);
    let mut n = names();
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts {
        out.extend_from_slice(&rw.feed(
            Some(Bytes::copy_from_slice(&body[last..cut])),
            false,
            &mut n,
        ));
        last = cut;
    }
    out.extend_from_slice(&rw.feed(Some(Bytes::copy_from_slice(&body[last..])), true, &mut n));
    (out, n)
}

/// File content full of near-boundaries.
fn tricky_file() -> Vec<u8> {
    format!(
        "abc\r\n--{}\r\n\r\nnot a boundary\r\n--{B}X still not\r\n-\r",
        &B[..10]
    )
    .into_bytes()
}

#[test]
fn model_field_after_a_file_is_rewritten_at_every_split() {
    let body = form(&[
        part("file", Some("audio.mp3"), &tricky_file()),
        part("language", None, b"en"),
        part("model", None, b"whisper-1"),
    ]);
    let expect = form(&[
        part("file", Some("audio.mp3"), &tricky_file()),
        part("language", None, b"en"),
        part("model", None, b"model_name_t_whisper"),
    ]);
    for cut in 0..=body.len() {
        let (out, n) = run(&body, false, &[cut]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expect),
            "split at {cut}"
        );
        assert_eq!(
            n.restores,
            [("model_name_t_whisper".to_string(), "whisper-1".to_string())]
        );
    }
    let every: Vec<usize> = (1..body.len()).collect();
    assert_eq!(run(&body, false, &every).0, expect, "one byte at a time");
}

#[test]
fn unmapped_and_malformed_forms_pass_through() {
    let unmapped = form(&[part("model", None, b"other"), part("file", Some("a"), b"x")]);
    assert_eq!(run(&unmapped, false, &[5, 60]).0, unmapped);
    let truncated = &form(&[part("model", None, b"whisper-1")])[..60];
    assert_eq!(
        run(truncated, false, &[7]).0,
        truncated,
        "a body cut short is not invented"
    );
    let garbage = b"no boundary here at all\r\n--nope".to_vec();
    assert_eq!(run(&garbage, false, &[3]).0, garbage);
}

#[test]
fn file_content_is_not_held() {
    let mut rw = MultipartRewriter::new(B, false);
    let mut n = names();
    let head = part("file", Some("big.bin"), b"");
    let head = &head[..head.len() - 2];
    let sent = rw.feed(Some(Bytes::copy_from_slice(head)), false, &mut n);
    assert_eq!(sent.len(), head.len());
    for _ in 0..100 {
        let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
        let out = rw.feed(Some(chunk.clone()), false, &mut n);
        assert_eq!(out, chunk, "file bytes leave as they arrive");
    }
    assert!(rw.carry.capacity() < 64 * 1024, "nothing accumulates");
}

#[test]
fn batch_files_rewrite_body_model_on_every_line() {
    let lines: String = (0..50)
        .map(|i| {
            let model = if i % 2 == 0 { "gpt-4.1" } else { "other" };
            format!(
                "{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"model\":\"gpt-4.1\",\"body\":{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"model gpt-4.1\"}}]}}}}\n"
            )
        })
        .collect();
    let expect_lines = lines.replace(
        "\"body\":{\"model\":\"gpt-4.1\"",
        "\"body\":{\"model\":\"model_name_t_gpt\"",
    );
    let body = form(&[
        part("purpose", None, b"batch"),
        part("file", Some("batch.jsonl"), lines.as_bytes()),
    ]);
    let expect = form(&[
        part("purpose", None, b"batch"),
        part("file", Some("batch.jsonl"), expect_lines.as_bytes()),
    ]);
    for cuts in [
        vec![],
        vec![300, 301, 2000],
        (1..body.len()).step_by(97).collect(),
    ] {
        let (out, n) = run(&body, true, &cuts);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expect)
        );
        assert_eq!(n.count, 25);
        assert!(
            n.restores.is_empty(),
            "batch lines are not the upload's response model"
        );
    }
    let (out, _) = run(&body, false, &[]);
    assert_eq!(
        out, body,
        "file parts elsewhere are not read as batch input"
    );
}

#[test]
fn boundaries_are_read_from_content_types() {
    use crate::rewrite::unreadable::Unreadable;
    let b = |ct: &str| boundary(ct).map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(
        b(&format!("multipart/form-data; boundary={B}")),
        Ok(B.into())
    );
    assert_eq!(
        b("Multipart/Form-Data;charset=UTF8; boundary=\"a b\""),
        Ok("a b".into())
    );
    assert_eq!(
        b("multipart/form-data; boundary=\"x;y\"; boundary=z"),
        Ok("z".into()),
        "the last of repeated parameters, quotes kept whole"
    );
    assert_eq!(b("multipart/form-data"), Err(Unreadable::Boundary));
    assert_eq!(
        b("multipart/form-data; boundary=a; charset=utf-16"),
        Err(Unreadable::Charset)
    );
    let long = "b".repeat(2000);
    assert_eq!(
        b(&format!("multipart/form-data; boundary={long}")),
        Err(Unreadable::Boundary)
    );
}

#[test]
fn part_headers_are_read_as_python_multipart_reads_them() {
    use super::disposition;
    let (name, file) = disposition(
        b"Content-Disposition: form-data; name=\"x\"\r\ncontent-disposition:   form-data; name=\"model\"",
    );
    assert_eq!(
        (name.as_deref(), file),
        (Some("model"), false),
        "the last one counts"
    );
    let (name, file) = disposition(b"Content-Disposition: form-data; name=\"model; filename=x\"");
    assert_eq!((name.as_deref(), file), (Some("model; filename=x"), false));
    let (name, file) = disposition(b"Content-Disposition: form-data; name=model; filename=\"\"");
    assert_eq!(
        (name.as_deref(), file),
        (Some("model"), true),
        "an empty filename is a file"
    );
}
