//! modelmap: a Pingora sidecar that rewrites model names on their way to a LiteLLM
//! gateway, so the gateway's own auth and fallback lookups match. See README.md.

pub mod admin;
pub mod config;
pub mod discover;
pub mod error;
pub mod explain;
pub mod identity;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod proxy;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod store;
pub mod watch;
