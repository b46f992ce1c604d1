//! JSON request bodies: never a panic; cutting the body anywhere changes nothing; and
//! when the body is a JSON object, the output is that object with exactly the mapped
//! model values changed (checked through serde_json, independently of the scanner).
//! The body is `target_json_request` in fuzz/src/lib.rs, which tests/fuzz_corpus.rs also runs
//! on every file of corpus/json_request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| modelmap_fuzz_support::target_json_request(data));
