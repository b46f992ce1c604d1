//! What a finished request leaves behind: its metrics and one access log line (never a
//! key, a body or a query string).

use std::fmt;

use pingora::protocols::http::v1::server::HttpSession;

use super::exchange::Ctx;
use super::request::RequestBody;
use crate::metrics::{Metrics, Outcome};
use crate::rewrite::names::Place;

pub(super) fn record(metrics: &Metrics, session: &HttpSession, ctx: &Ctx) {
    // A reverted body reached the gateway as sent: only URL rewrites count then.
    // A refused request reached nothing.
    let reverted = ctx.body.as_ref().is_some_and(RequestBody::reverted) || ctx.refusal.is_some();
    let counted = |p: Place| !reverted || matches!(p, Place::Path | Place::Query | Place::Header);
    let names = &ctx.names;
    let applied: Vec<_> = names.applied.iter().filter(|a| counted(a.place)).collect();
    let rewrites = if ctx.refusal.is_some() {
        0
    } else if reverted {
        applied.iter().map(|a| a.times as usize).sum()
    } else {
        names.count
    };
    let outcome = if ctx.refusal.is_some() {
        Outcome::Rejected
    } else if ctx.failed {
        Outcome::Error
    } else if rewrites > 0 {
        Outcome::Rewritten
    } else {
        Outcome::Unchanged
    };
    let family = ctx.family.as_str();
    let m = &metrics;
    let elapsed = ctx.start.elapsed();
    m.request_done(outcome, ctx.family, elapsed.as_secs_f64());
    if ctx.body.as_ref().is_some_and(RequestBody::passthrough) {
        m.body_passthrough.with_label_values(&[family]).inc();
    }
    let caller = &ctx.caller;
    let team = names.team();
    let team_label = team
        .filter(|t| names.mapping().has_team(t))
        .unwrap_or("other");
    for a in &applied {
        m.rewrites
            .with_label_values(&[team_label, a.place.as_str(), &a.from, &a.to])
            .inc_by(a.times);
    }

    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let (requested, sent) = Some(names)
        .filter(|_| !reverted)
        .and_then(|n| n.model.as_ref())
        .map_or(("", ""), |(r, s)| (r.as_str(), s.as_str()));
    // Fixed words are written as they are; values that come from a client or the
    // mapping go through `Field`.
    tracing::info!(
        target: "modelmap::access",
        method = %req.method,
        path = %Field(req.uri.path()),
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        team = %Field(team.unwrap_or("-")),
        identity = %caller.source.as_str(),
        key = %caller.key.map(|k| k.short()).unwrap_or_default(),
        requested = %Field(requested),
        sent = %Field(sent),
        rewrites,
        upstream_status = ctx.upstream_status,
        outcome = %outcome.as_str(),
        error = %ctx.error.unwrap_or_default(),
    );
}

/// A value from a client or the mapping in a log line: bare when it cannot be mistaken
/// for anything else (model names, team names and paths nearly always), quoted and
/// escaped otherwise, so no value can forge a field or a line. Bare is the cheap path:
/// quoting walks the value character by character.
/// Values longer than [`FIELD_MAX`] bytes are cut there (marked `…`): a client may send
/// a 16 KiB model list, and a log line is not the place to keep it whole.
struct Field<'a>(&'a str);

/// Longest value written into a log line, in bytes.
const FIELD_MAX: usize = 256;

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = self.0;
        let cut = value.len() > FIELD_MAX;
        if cut {
            let mut end = FIELD_MAX;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value = &value[..end];
        }
        let bare = !cut
            && !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='));
        if bare {
            f.write_str(value)
        } else if cut {
            write!(f, "{:?}", format!("{value}…"))
        } else {
            write!(f, "{value:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Field;

    #[test]
    fn values_that_could_forge_a_field_are_quoted() {
        assert_eq!(Field("gpt-4.1").to_string(), "gpt-4.1");
        assert_eq!(
            Field("/v1/chat/completions").to_string(),
            "/v1/chat/completions"
        );
        assert_eq!(Field("").to_string(), r#""""#);
        assert_eq!(Field("a b").to_string(), r#""a b""#);
        assert_eq!(Field("x\nstatus=200").to_string(), r#""x\nstatus=200""#);
        assert_eq!(Field("team=evil").to_string(), r#""team=evil""#);
        // Not ASCII: quoted (Debug keeps printable characters as they are).
        assert_eq!(Field("café").to_string(), "\"café\"");
        let long = "a".repeat(10_000);
        assert_eq!(
            Field(&long).to_string(),
            format!("\"{}…\"", "a".repeat(256))
        );
    }
}
