//! Byte-level rewriting of model names, free of any proxy machinery so it can be tested
//! (and fuzzed) on its own.
//!
//! Every rewriter here (JSON, forms, multipart, URLs, response restoring) finds values
//! and asks one interface, [`NameMapper`], what each value found at a [`Place`] becomes;
//! [`Names`] is the request's implementation, `restore::Pairs` the response's.

pub mod body;
pub mod budget;
pub mod form;
pub mod json;
pub mod multipart;
pub mod names;
pub mod path;
pub mod py;
pub mod resource_id;
pub mod restore;
mod scalar;
mod scan;
pub mod unreadable;

use bytes::{Bytes, BytesMut};

pub use body::BodyRewriter;
pub use json::{JsonRewriter, Profile};
pub use names::{NameMapper, Names, Place};

/// Joins output pieces, draining `parts` (its capacity is kept for reuse): no copy for
/// zero or one non-empty piece, one exact allocation otherwise.
pub fn concat(parts: &mut Vec<Bytes>) -> Bytes {
    parts.retain(|p| !p.is_empty());
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in parts.drain(..) {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        }
    }
}
