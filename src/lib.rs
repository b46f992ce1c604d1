//! modelmap: a Pingora sidecar that rewrites model names on their way to a LiteLLM
//! gateway and restores them on the way back. See README.md for the why.

pub mod identity;
pub mod mapping;
pub mod rewrite;
