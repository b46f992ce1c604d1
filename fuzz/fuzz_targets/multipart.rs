//! Multipart forms and batch files: never a panic; the same output whatever the chunk
//! boundaries; a body naming no mapped model passes byte for byte.
//! The body is `target_multipart` in fuzz/src/lib.rs, which tests/fuzz_corpus.rs also runs
//! on every file of corpus/multipart.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelmap_fuzz_support::target_multipart(data));
