//! SSE restoring: never a panic; the same output whatever the chunk boundaries; a
//! stream with neither the sent name nor an escape passes byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelmap_fuzz_support::*;

fuzz_target!(|data: &[u8]| {
    let Some((cuts, body)) = split_input(data) else {
        return;
    };
    let whole = restore_stream(body, &[]);
    assert_eq!(
        restore_stream(body, &cuts),
        whole,
        "chunk boundaries changed the output"
    );
    let may_change = body.contains(&b'\\') || body.windows(10).any(|w| w == b"TARGET-gpt");
    if !may_change {
        assert_eq!(whole, body, "nothing to restore: untouched");
    }
});
