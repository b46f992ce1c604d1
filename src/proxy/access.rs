//! What a finished request leaves behind: its metrics and one access log line (never a
//! key, a body or a query string).

use pingora::prelude::*;

use super::Ctx;
use crate::metrics::{Metrics, Outcome};
use crate::request::RequestBody;
use crate::rewrite::names::Place;

pub(super) fn record(metrics: &Metrics, session: &Session, e: Option<&Error>, ctx: &Ctx) {
    // A reverted body reached the gateway as sent: only URL rewrites count then.
    // A refused request reached nothing.
    let reverted = ctx.body.as_ref().is_some_and(RequestBody::reverted) || ctx.refusal.is_some();
    let counted = |p: Place| !reverted || matches!(p, Place::Path | Place::Query);
    let names = ctx.names.as_ref();
    let applied: Vec<_> = names
        .map(|n| n.applied.iter().filter(|a| counted(a.place)).collect())
        .unwrap_or_default();
    let rewrites = if ctx.refusal.is_some() {
        0
    } else if reverted {
        applied.iter().map(|a| a.times as usize).sum()
    } else {
        names.map_or(0, |n| n.count)
    };
    let outcome = if ctx.rejected {
        Outcome::Rejected
    } else if e.is_some_and(|e| e.esource() != &ErrorSource::Downstream) {
        Outcome::Error
    } else if rewrites > 0 {
        Outcome::Rewritten
    } else {
        Outcome::Unchanged
    };
    let family = ctx.family.as_str();
    let m = &metrics;
    m.requests
        .with_label_values(&[outcome.as_str(), family])
        .inc();
    m.duration
        .with_label_values(&[family])
        .observe(ctx.start.elapsed().as_secs_f64());
    if ctx.body.as_ref().is_some_and(RequestBody::passthrough) {
        m.body_passthrough.with_label_values(&[family]).inc();
    }
    let caller = ctx.caller.as_ref();
    let team = caller.and_then(|c| c.team.as_deref());
    let team_label = team.filter(|t| ctx.snapshot.has_team(t)).unwrap_or("other");
    for a in &applied {
        m.rewrites
            .with_label_values(&[team_label, a.place.as_str(), &a.from, &a.to])
            .inc_by(a.times);
    }

    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let (requested, sent) = names
        .filter(|_| !reverted)
        .and_then(|n| n.model.as_ref())
        .map_or(("", ""), |(r, s)| (r.as_str(), s.as_str()));
    tracing::info!(
        target: "modelmap::access",
        method = %req.method,
        path = req.uri.path(),
        status,
        duration_ms = ctx.start.elapsed().as_secs_f64() * 1000.0,
        team = team.unwrap_or("-"),
        identity = caller.map_or("unknown", |c| c.source.as_str()),
        key = caller.and_then(|c| c.key).map(|k| k.short()).unwrap_or_default(),
        requested,
        sent,
        rewrites,
        upstream_status = ctx.upstream_status.unwrap_or(0),
        outcome = outcome.as_str(),
        error = e.map(|e| e.etype().as_str()).unwrap_or_default(),
    );
}
