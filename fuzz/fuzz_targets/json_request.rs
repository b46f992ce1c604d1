//! JSON request bodies: never a panic; cutting the body anywhere changes nothing; and
//! when the body is a JSON object, the output is that object with exactly the mapped
//! model values changed (checked through serde_json, independently of the scanner).
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelmap_fuzz_support::*;

fuzz_target!(|data: &[u8]| {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    let whole = rewrite_json(body, &[]);
    assert_eq!(
        rewrite_json(body, &cuts),
        whole,
        "chunk boundaries changed the output"
    );
    check_json_oracle(body, &whole);
});
