//! URL paths and queries: never a panic; a rewritten URL holds the new name at the
//! same place, and unmapped URLs are never changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelmap::rewrite::path::rewrite;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        rewrite(uri, &mut |_, _| None),
        None,
        "nothing mapped: nothing changes"
    );
    if let Some(new) = rewrite(uri, &mut |_, name| Some(format!("{name}-X"))) {
        // Mapping back (strip the marker) must give a URL that maps the same way again.
        let back = rewrite(&new, &mut |_, name| {
            name.strip_suffix("-X").map(str::to_string)
        });
        assert!(
            back.is_some(),
            "the rewritten name is found again at the same place: {uri} -> {new}"
        );
    }
});
