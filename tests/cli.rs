//! What the `modelmap` command says to a person at a terminal: `check` names each problem
//! once, on a line of its own, in the mapping file's terms (never the YAML library's
//! advice to programmers), and a bad `--upstream` gets its real reason.

use std::process::{Command, Output};

fn modelmap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modelmap"))
        .args(args)
        .env("MODELMAP_LOG", "error")
        .output()
        .expect("run modelmap")
}

/// `modelmap check` on a file with `content`: its exit code and what it printed.
fn check(content: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mapping.yaml");
    std::fs::write(&path, content).expect("write");
    let out = modelmap(&["check", &path.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.code(), text)
}

fn assert_plain(text: &str) {
    for leak in [
        "DuplicateKeyPolicy",
        "Option<",
        "Options",
        "column",
        "error:",
    ] {
        assert!(!text.contains(leak), "library wording {leak:?} in {text:?}");
    }
}

#[test]
fn check_explains_yaml_problems_in_the_files_terms() {
    for (content, says) in [
        (
            "version: 1\naliases:\n  a: b\n  a: c\n",
            "FILE: line 4: \"a\" is listed twice in the same section; keep one entry\n",
        ),
        (
            "version: 1\naliases:\n  a:\n  b: c\n",
            "FILE: line 3: a value is missing (expected a name after the colon)\n",
        ),
        (
            "version: 1\naliases:\n  a: [x, y]\n",
            "FILE: line 3: expected a single name here (a list or a mapping is not allowed)\n",
        ),
        (
            "version: 1\nalias:\n  a: b\n",
            "FILE: line 2: unknown field `alias`, expected one of version, teams, aliases, keys\n",
        ),
    ] {
        let (code, text) = check(content);
        assert_eq!(code, Some(1), "{text}");
        assert_eq!(text, says);
        assert_plain(&text);
    }
}

#[test]
fn check_puts_each_problem_on_its_own_line() {
    let (code, text) = check(
        "version: 1\nteams:\n  t:\n    models:\n      \"a*b*\": x\n      c: \"y*\"\naliases:\n  \" d\": e\n",
    );
    assert_eq!(code, Some(1));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "FILE: 3 problems", "{text}");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].starts_with("  line 5: "), "{text}");
    assert!(lines[2].starts_with("  line 6: "), "{text}");
    assert!(lines[3].starts_with("  line 8: "), "{text}");
    assert!(!text.contains("; "), "{text}");
}

#[test]
fn check_accepts_a_valid_file() {
    let (code, _) = check("version: 1\naliases:\n  a: b\n");
    assert_eq!(code, Some(0));
}

#[test]
fn bad_upstreams_get_their_real_reason() {
    for (url, says) in [
        ("http://127.0.0.1:99999", "invalid port \"99999\""),
        (
            "http://user@127.0.0.1:4000",
            "user information (user@) is not supported",
        ),
        ("http://127.0.0.1:4000/v1", "a path (/v1) is not supported"),
    ] {
        let out = modelmap(&[
            "--upstream",
            url,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: {text}");
        assert!(text.contains(says), "{url}: {text}");
        assert!(!text.contains("resolve"), "{url}: {text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
    }
}
