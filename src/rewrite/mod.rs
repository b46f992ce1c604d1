//! Byte-level rewriting of model names, free of any proxy machinery so it can be tested
//! (and fuzzed) on its own.

pub mod body;
pub mod json;
pub mod multipart;
pub mod names;
pub mod path;
pub mod restore;
mod scan;

pub use body::BodyRewriter;
pub use json::{Field, JsonRewriter, NameMapper, Profile};
pub use names::Names;
