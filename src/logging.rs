//! Log setup. Pingora logs through the `log` crate; tracing-subscriber bridges it, so
//! every line comes out in one format. Access lines carry no key and no body.
//!
//! Pingora's own debug and trace lines print whole request headers (credentials
//! included), so its crates are held at `info` unless the filter names them explicitly:
//! `--log-level debug` debugs modelmap without ever logging a key.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

use crate::config::LogFormat;

/// Pingora crates whose debug output includes request headers.
const PINGORA_TARGETS: [&str; 3] = ["pingora_core", "pingora_proxy", "pingora"];

/// The filter for `spec`, with Pingora capped at `info` unless `spec` mentions it.
pub fn filter(spec: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    let verbose = filter
        .max_level_hint()
        .is_none_or(|max| max > tracing::level_filters::LevelFilter::INFO);
    if verbose && !spec.contains("pingora") {
        for target in PINGORA_TARGETS {
            if let Ok(directive) = format!("{target}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// Whether log lines are JSON (set once by [`init`]; text until then).
static STRUCTURED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines are JSON: access lines then keep their fields, in text they are
/// written whole (see `proxy/access.rs`).
pub fn structured() -> bool {
    STRUCTURED.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn init(format: LogFormat, spec: &str) {
    STRUCTURED.store(
        format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let filter = filter(spec);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(PlainFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `name=value` fields, space-separated, the message first and bare: the default text
/// layout, without the styling calls the default field formatter makes for every field
/// name even when colours are off (a third of the cost of an access line).
struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for PlainVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // The `log` bridge's metadata, already shown as the target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let gap = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            write!(self.writer, "{gap}{value:?}")
        } else {
            write!(self.writer, "{gap}{name}={value:?}")
        };
    }
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    #[test]
    fn pingora_stays_at_info_when_debugging() {
        assert_eq!(
            super::filter("warn").max_level_hint(),
            Some(LevelFilter::WARN)
        );
        let f = super::filter("debug").to_string();
        assert!(
            f.contains("pingora_core=info") && f.contains("pingora_proxy=info"),
            "{f}"
        );
        let f = super::filter("debug,pingora_proxy=debug").to_string();
        assert!(
            !f.contains("pingora_core=info"),
            "an explicit choice wins: {f}"
        );
    }
}
