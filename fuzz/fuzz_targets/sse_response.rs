//! SSE restoring: never a panic; the same output whatever the chunk boundaries; a
//! stream with neither the sent name nor an escape passes byte for byte.
//! The body is `target_sse_response` in fuzz/src/lib.rs, which tests/fuzz_corpus.rs also runs
//! on every file of corpus/sse_response.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelmap_fuzz_support::target_sse_response(data));
