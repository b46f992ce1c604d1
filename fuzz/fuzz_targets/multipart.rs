//! Multipart forms and batch files: never a panic; the same output whatever the chunk
//! boundaries; a body naming no mapped model passes byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelmap_fuzz_support::*;

fuzz_target!(|data: &[u8]| {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    for batch in [false, true] {
        let whole = rewrite_multipart(body, &[], batch);
        assert_eq!(
            rewrite_multipart(body, &cuts, batch),
            whole,
            "chunk boundaries changed the output"
        );
        let names_a_model = [&b"gpt-4.1"[..], b"claude-", b"\\"]
            .iter()
            .any(|n| body.windows(n.len()).any(|w| w == *n))
            || body
                .split(|&b| !b.is_ascii_alphanumeric())
                .any(|w| w == b"a");
        if !names_a_model {
            assert_eq!(whole, body, "nothing mapped: untouched");
        }
    }
});
