//! Test harness: a fake gateway that records exactly what it receives, a raw HTTP/1.1
//! client that controls framing byte for byte, and a guard that runs the real proxy
//! in-process and stops it on drop. Everything listens on 127.0.0.1 only.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod discovery;
pub mod gateway;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod team_e;

pub use client::{Client, Framing, Response};
pub use gateway::{FakeGateway, Recorded, Reply, model_of};
pub use proxy::Proxy;

/// sha256("sk-team-abc") etc. are computed at runtime by the proxy guard's helper.
pub fn key_digest(key: &str) -> String {
    modelmap::identity::KeyHash::of(key)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
