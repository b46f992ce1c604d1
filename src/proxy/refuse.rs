//! modelmap's own answers on the wire: refusals (the guard, what cannot be read,
//! identity failing closed: counted, logged without the key, answered in the OpenAI
//! shape from `crate::error`) and failures before the response started.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora::Error;
use pingora::Result;
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;

use super::exchange::{Ctx, Stage};
use super::request;
use super::{DRAIN_LIMIT, Proxy};
use crate::error::{Failure, Refusal};
use crate::rewrite::names::Verdict;

impl Proxy {
    /// Answers a refusal. The body is read and discarded first (within the drain limit)
    /// so the connection can be kept and closing it cannot reset the answer away; a
    /// client waiting for `100 Continue`, or a body whose framing is in doubt, gets the
    /// answer at once and the connection closes.
    pub(super) async fn refuse(
        &self,
        down: &mut HttpSession,
        ctx: &mut Ctx,
        refusal: Refusal,
    ) -> bool {
        let drained =
            !request::expects_continue(down.req_header()) && refusal.framing_trusted() && {
                down.set_total_drain_timeout(Some(self.settings.read_timeout.min(DRAIN_LIMIT)));
                down.drain_request_body().await.is_ok()
            };
        if !drained {
            down.set_server_keepalive(None);
        }
        let sent = answer(down, refusal.status(), refusal.body()).await;
        ctx.refusal = Some(refusal);
        sent.is_ok() && drained
    }

    /// Answers a failure if the response has not started; the connection then closes.
    pub(super) async fn fail(
        &self,
        down: &mut HttpSession,
        ctx: &mut Ctx,
        stage: Stage,
        e: &Error,
    ) -> bool {
        ctx.error = Some(e.etype().as_str());
        let failure = Failure::from_pingora(e);
        ctx.failed = failure.is_some() && e.esource() != &pingora::ErrorSource::Downstream;
        match (stage, failure) {
            (Stage::Before, Some(failure)) => {
                // The kind only: Pingora's error text can quote a head (a key with it).
                tracing::warn!(error = e.etype().as_str(), side = ?e.esource(), "request failed");
                down.set_server_keepalive(None);
                let _ = answer(down, failure.status(), failure.body(&self.upstream_url)).await;
            }
            _ => tracing::debug!(error = e.etype().as_str(), "exchange ended early"),
        }
        false
    }

    /// The refusal the names seen so far call for, if any; counted and logged once (the
    /// name as sent, never the key).
    pub(super) fn guard_refusal(&self, ctx: &Ctx) -> Option<Refusal> {
        let verdict = ctx.names.verdict.clone()?;
        let key = ctx.caller.key.map(|k| k.short()).unwrap_or_default();
        let team = ctx.names.team().unwrap_or("-");
        let refusal = match verdict {
            Verdict::Denied(requested) => {
                self.metrics.guard_rejections.inc();
                tracing::warn!(key, team, requested = %requested, "guard: refusing another team's internal model name");
                return Some(Refusal::OtherTeamsModel { requested });
            }
            Verdict::Invalid(_) => Refusal::InvalidName,
            Verdict::Unreadable(why) => Refusal::Unreadable(why),
        };
        self.count_refusal(&refusal);
        tracing::warn!(
            key,
            team,
            reason = refusal.reason().unwrap_or_default(),
            "refusing a request modelmap cannot check"
        );
        Some(refusal)
    }

    pub(super) fn count_refusal(&self, refusal: &Refusal) {
        if let Some(reason) = refusal.reason() {
            self.metrics.unreadable.with_label_values(&[reason]).inc();
        }
    }
}

/// Writes a whole JSON answer of modelmap's own.
async fn answer(down: &mut HttpSession, status: u16, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    down.write_response_header(Box::new(resp)).await?;
    down.write_body(&body).await?;
    down.finish_body().await?;
    Ok(())
}
