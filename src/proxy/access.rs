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
    if !tracing::enabled!(target: "modelmap::access", tracing::Level::INFO) {
        return;
    }
    let line = Line {
        method: req.method.as_str(),
        path: req.uri.path(),
        status,
        micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        team: team.unwrap_or("-"),
        identity: caller.source.as_str(),
        key: caller.key.map(|k| k.short()).unwrap_or_default(),
        requested,
        sent,
        rewrites,
        upstream_status: ctx.upstream_status,
        outcome: outcome.as_str(),
        error: ctx.error.unwrap_or_default(),
    };
    if crate::logging::structured() {
        // Fixed words are written as they are; values that come from a client or the
        // mapping go through `Field`.
        tracing::info!(
            target: "modelmap::access",
            method = line.method,
            path = %Field(line.path),
            status,
            duration_ms = line.micros as f64 / 1000.0,
            team = %Field(line.team),
            identity = line.identity,
            key = line.key.as_str(),
            requested = %Field(requested),
            sent = %Field(sent),
            rewrites,
            upstream_status = line.upstream_status,
            outcome = line.outcome,
            error = line.error,
        );
    } else {
        // The text line is written here, into one reused buffer, and handed to the
        // subscriber whole: field by field, its formatting was a tenth of a request.
        LINE.with_borrow_mut(|buf| {
            buf.clear();
            line.write_to(buf);
            tracing::info!(target: "modelmap::access", "{buf}");
        });
    }
}

thread_local! {
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One access line's values.
struct Line<'a> {
    method: &'a str,
    path: &'a str,
    status: u16,
    micros: u64,
    team: &'a str,
    identity: &'a str,
    key: String,
    requested: &'a str,
    sent: &'a str,
    rewrites: usize,
    upstream_status: u16,
    outcome: &'a str,
    error: &'a str,
}

impl Line<'_> {
    /// `name=value` pairs, as the structured line prints them in text.
    fn write_to(&self, out: &mut String) {
        out.push_str("method=");
        out.push_str(self.method);
        out.push_str(" path=");
        Field(self.path).write_to(out);
        out.push_str(" status=");
        push_number(out, u64::from(self.status));
        out.push_str(" duration_ms=");
        push_number(out, self.micros / 1000);
        out.push('.');
        let frac = self.micros % 1000;
        for digit in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push_str(" team=");
        Field(self.team).write_to(out);
        out.push_str(" identity=");
        out.push_str(self.identity);
        out.push_str(" key=");
        out.push_str(&self.key);
        out.push_str(" requested=");
        Field(self.requested).write_to(out);
        out.push_str(" sent=");
        Field(self.sent).write_to(out);
        out.push_str(" rewrites=");
        push_number(out, self.rewrites as u64);
        out.push_str(" upstream_status=");
        push_number(out, u64::from(self.upstream_status));
        out.push_str(" outcome=");
        out.push_str(self.outcome);
        out.push_str(" error=");
        out.push_str(self.error);
    }
}

/// A decimal number, without the formatter.
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
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

impl Field<'_> {
    fn write_to(&self, out: &mut String) {
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
            out.push_str(value);
        } else if cut {
            let _ = fmt::Write::write_fmt(out, format_args!("{:?}", format!("{value}…")));
        } else {
            let _ = fmt::Write::write_fmt(out, format_args!("{value:?}"));
        }
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::{Field, Line};

    #[test]
    fn the_text_line_has_every_field_and_quotes_what_could_forge_one() {
        let line = Line {
            method: "POST",
            path: "/v1/chat/completions",
            status: 403,
            micros: 12_045,
            team: "team-abc",
            identity: "keys",
            key: "88dc28d0".into(),
            requested: "x\nstatus=200",
            sent: "",
            rewrites: 0,
            upstream_status: 0,
            outcome: "rejected",
            error: "",
        };
        let mut out = String::new();
        line.write_to(&mut out);
        assert_eq!(
            out,
            r#"method=POST path=/v1/chat/completions status=403 duration_ms=12.045 team=team-abc identity=keys key=88dc28d0 requested="x\nstatus=200" sent="" rewrites=0 upstream_status=0 outcome=rejected error="#
        );
    }

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
