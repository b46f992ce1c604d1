//! Finding where a JSON string ends, 64 bytes at a time.
//!
//! Almost every byte of a chat request is inside a string (message text), so this is
//! where the scanner spends its time. Inside a string only `"` and `\` matter, and real
//! prompts carry an escape every few dozen bytes (newlines, quotes, code). Searching for
//! the next `"` or `\` and restarting after each escape costs a call per escape; instead
//! each 64-byte block becomes two bit masks (quotes, backslashes), the escaped
//! characters are computed from the backslash mask without branching (the method of
//! simdjson, Langdale & Lemire, "Parsing Gigabytes of JSON per Second"), and the first
//! quote that is not escaped, if any, is the string's end. A block without an unescaped
//! quote costs a handful of instructions whatever it holds.
//!
//! The masks are built with AVX2 when the CPU has it (checked once at run time), with
//! SSE2 otherwise on x86_64 (part of the baseline), and with a plain loop elsewhere.

/// Bits of the odd byte positions.
const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// Quote and backslash masks of one block with AVX2: bit `i` is byte `i`.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masks_avx2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    // SAFETY: each unaligned 32-byte load at 32 * k (k < 2) lies inside `block`.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let mask = |v, c| u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, c)) as u32);
    (
        mask(lo, quote) | (mask(hi, quote) << 32),
        mask(lo, backslash) | (mask(hi, backslash) << 32),
    )
}

/// The search, with the CPU's AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn string_end_avx2(bytes: &[u8], escaped_first: bool) -> Result<usize, bool> {
    // SAFETY: this function only runs on a CPU with AVX2 (its own contract).
    search(bytes, escaped_first, |block| unsafe { masks_avx2(block) })
}

/// Quote and backslash masks of one block: bit `i` is byte `i`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
    // available; each unaligned 16-byte load at 16 * k (k < 4) lies inside `block`.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let (mut q, mut b) = (0u64, 0u64);
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            q |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16) << (16 * k);
            b |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)) as u16) << (16 * k);
        }
        (q, b)
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    let (mut q, mut b) = (0u64, 0u64);
    for (i, &c) in block.iter().enumerate() {
        q |= u64::from(c == b'"') << i;
        b |= u64::from(c == b'\\') << i;
    }
    (q, b)
}

/// The characters escaped by a backslash in this block; `carry` says whether the
/// block's first byte is escaped, and is updated for the next block.
#[inline(always)]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    if backslash == 0 {
        return std::mem::take(carry);
    }
    // A backslash that is itself escaped starts nothing.
    let potential = backslash & !*carry;
    // Runs of backslashes that start on an even byte come out of the subtraction as
    // ones, runs that start on an odd byte as zeros; XOR with the odd bits then leaves
    // exactly the escaping backslashes and the characters they escape.
    let codes = (((potential << 1) | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
    let escaped = codes ^ (backslash | *carry);
    *carry = (codes & backslash) >> 63;
    escaped
}

/// Where the string that `bytes` starts inside ends.
///
/// `escaped` says whether the first byte is escaped (the previous piece ended in an
/// unfinished escape). Returns the index of the closing quote, or, if the string goes
/// on past `bytes`, whether the byte after them is escaped.
pub(crate) fn string_end(bytes: &[u8], escaped_first: bool) -> Result<usize, bool> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, just checked (the answer is cached by std).
        return unsafe { string_end_avx2(bytes, escaped_first) };
    }
    search(bytes, escaped_first, masks)
}

#[inline(always)]
fn search(
    bytes: &[u8],
    escaped_first: bool,
    masks: impl Fn(&[u8; 64]) -> (u64, u64),
) -> Result<usize, bool> {
    let mut carry = u64::from(escaped_first);
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 64) {
        let block: &[u8; 64] = block.try_into().unwrap_or(&[0; 64]);
        let (quote, backslash) = masks(block);
        if quote | backslash | carry == 0 {
            at += 64;
            continue;
        }
        let ends = quote & !escaped(backslash, &mut carry);
        if ends != 0 {
            return Ok(at + ends.trailing_zeros() as usize);
        }
        at += 64;
    }
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Err(carry != 0);
    }
    let mut block = [0u8; 64];
    block[..rest.len()].copy_from_slice(rest);
    let (quote, backslash) = masks(&block);
    let esc = escaped(backslash, &mut carry);
    let ends = quote & !esc;
    if ends != 0 {
        return Ok(at + ends.trailing_zeros() as usize);
    }
    // The padding is zeros, so the escape state of the first byte past the input is the
    // bit just after it.
    Err((esc >> rest.len()) & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte-at-a-time answer.
    fn reference(bytes: &[u8], mut escaped: bool) -> Result<usize, bool> {
        for (i, &b) in bytes.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                return Ok(i);
            }
        }
        Err(escaped)
    }

    #[test]
    fn ends_and_escapes() {
        assert_eq!(string_end(b"abc\"def", false), Ok(3));
        assert_eq!(string_end(b"a\\\"b\"", false), Ok(4), "an escaped quote");
        assert_eq!(
            string_end(b"a\\\\\"b", false),
            Ok(3),
            "an escaped backslash"
        );
        assert_eq!(string_end(b"\"x\"", true), Ok(2), "first byte escaped");
        assert_eq!(string_end(b"abc\\", false), Err(true), "ends mid escape");
        assert_eq!(string_end(b"abc\\\\", false), Err(false));
        assert_eq!(string_end(b"", true), Err(true));
        let mut long = vec![b'x'; 200];
        long[63] = b'\\';
        long[64] = b'"';
        long[130] = b'"';
        assert_eq!(
            string_end(&long, false),
            Ok(130),
            "escape across a block edge"
        );
        long[62] = b'\\';
        assert_eq!(
            string_end(&long, false),
            Ok(64),
            "an escaped backslash at the edge"
        );
        assert_eq!(string_end(&long[..64], false), Err(false));
        assert_eq!(string_end(&long[..63], false), Err(true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn matches_the_reference(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), any::<u8>()], 0..300),
            escaped in any::<bool>(),
        ) {
            prop_assert_eq!(string_end(&bytes, escaped), reference(&bytes, escaped));
            prop_assert_eq!(
                search(&bytes, escaped, masks),
                reference(&bytes, escaped),
                "the baseline path too, whatever this CPU has"
            );
        }

        #[test]
        fn matches_the_reference_on_backslash_runs(
            runs in proptest::collection::vec((0usize..9, prop_oneof![Just(b'"'), Just(b'x')]), 0..60),
            escaped in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            for (n, end) in runs {
                bytes.extend(std::iter::repeat_n(b'\\', n));
                bytes.push(end);
            }
            prop_assert_eq!(string_end(&bytes, escaped), reference(&bytes, escaped));
        }
    }
}
