//! The fuzz targets' committed corpora, replayed as ordinary tests: every file of
//! fuzz/corpus/<target> goes through the very function its fuzz target calls
//! (fuzz/src/lib.rs), with the same oracles, in the normal build. The corpus holds what
//! earlier fuzzing found interesting (and every crash it ever found, once fixed), so
//! this is the fuzz suite's regression check without cargo-fuzz or an instrumented
//! build; fuzz/run.sh looks for new inputs.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `target` on every corpus file of `name`; fails naming each file that panics.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 100,
        "{name}: only {} corpus files",
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).expect("read corpus file");
            catch_unwind(AssertUnwindSafe(|| target(&data)))
                .is_err()
                .then(|| path.display().to_string())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} of {} corpus files fail (reproduce one with `fuzz/run.sh {name}`, or \
         `cargo fuzz run {name} <file>` in fuzz/): {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn json_request_corpus() {
    replay("json_request", fuzz_support::target_json_request);
}

#[test]
fn sse_response_corpus() {
    replay("sse_response", fuzz_support::target_sse_response);
}

#[test]
fn multipart_corpus() {
    replay("multipart", fuzz_support::target_multipart);
}

#[test]
fn url_path_corpus() {
    replay("url_path", fuzz_support::target_url_path);
}
