//! URL paths and queries: never a panic; a rewritten URL holds the new name at the
//! same place, and unmapped URLs are never changed.
//! The body is `target_url_path` in fuzz/src/lib.rs, which tests/fuzz_corpus.rs also runs
//! on every file of corpus/url_path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelmap_fuzz_support::target_url_path(data));
