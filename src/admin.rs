//! The admin server: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (a mapping has been applied; the body says which sources work). It runs on its own port so scrapes and probes
//! never queue behind proxied traffic.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::store::Store;

pub struct Admin {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let text = "text/plain; charset=utf-8";
        match session.req_header().uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/healthz" => reply(StatusCode::OK, text, b"ok\n".to_vec()),
            "/readyz" => {
                let (ready, why) = self.store.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                reply(status, text, why.into_bytes())
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                text,
                b"not found: try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        }
    }
}
