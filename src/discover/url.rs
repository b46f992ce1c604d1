//! `--discover-database` URLs: what the Postgres client takes, plus what LiteLLM's own
//! `DATABASE_URL` carries (LiteLLM connects through Prisma, whose URLs have options of
//! their own), and the TLS the URL asks for.
//!
//! - Prisma's pool and driver options (`connection_limit`, `pool_timeout`, `pgbouncer`,
//!   `statement_cache_size`, `socket_timeout`) mean nothing for one short connection per
//!   round and are ignored; `schema=X` is honoured (the tables are read in schema X).
//! - `sslmode` as libpq reads it: `disable`; `allow`/`prefer` (the default: TLS if the
//!   server offers it, plain otherwise); `require` (TLS, certificate not verified, as
//!   libpq does without a root certificate); `verify-ca` (verified against the roots);
//!   `verify-full` (and the host name). The roots are the system's, or the file named by
//!   `sslrootcert` (libpq) or `sslcert` (Prisma, where it names the server's CA), which
//!   also turns `require` into `verify-ca`, as in libpq. Prisma's
//!   `sslaccept=strict` means `verify-full`, `accept_invalid_certs` means no checks.
//!   Client certificates (`sslkey`, `sslidentity`) are refused: not supported.
//! - Any other option is refused by name, so a typo never passes silently.
//!
//! The URL's password is never part of an error or a log line.

use std::str::FromStr;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;

use super::DiscoverError;

/// Options the Postgres client itself reads (tokio-postgres 0.7).
const CLIENT_OPTIONS: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];
/// Prisma options with no meaning for one connection per round.
const IGNORED: [&str; 5] = [
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "statement_cache_size",
    "socket_timeout",
];

/// How a round connects.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    /// `None`: plain TCP only (`sslmode=disable`).
    pub tls: Option<MakeTlsConnector>,
    /// Prisma's `schema`: the schema holding LiteLLM's tables.
    pub schema: Option<String>,
}

fn invalid(reason: impl Into<String>) -> DiscoverError {
    DiscoverError::Url(reason.into())
}

/// `%XX` decoding of a query value (`+` is a plus, as in Postgres URLs).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a URL (or a `key=value` connection string) into a connection target.
pub fn parse(url: &str, connect_timeout: Duration) -> Result<Target, DiscoverError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let (mut sslmode, mut root, mut accept, mut schema) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(raw);
        match key {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" | "sslcert" => root = Some(value),
            "sslaccept" => accept = Some(value),
            "schema" => schema = Some(value),
            "sslkey" | "sslidentity" | "sslpassword" => {
                return Err(invalid(format!(
                    "{key}: client certificates are not supported for discovery"
                )));
            }
            k if IGNORED.contains(&k) => {}
            k if CLIENT_OPTIONS.contains(&k) => kept.push(pair),
            k => {
                return Err(invalid(format!("unknown option {k:?} in the URL")));
            }
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    // The client's own message ("invalid connection string") never quotes the URL.
    let mut config = Config::from_str(&rebuilt).map_err(|e| invalid(e.to_string()))?;
    config.connect_timeout(connect_timeout);
    config.application_name("modelmap-discovery");

    // (TLS mode, verify the chain, verify the host name)
    let (mode, chain, host) = match (sslmode.as_deref().unwrap_or("prefer"), accept.as_deref()) {
        ("disable", _) => (SslMode::Disable, false, false),
        (_, Some("strict")) => (SslMode::Require, true, true),
        ("allow" | "prefer", _) => (SslMode::Prefer, false, false),
        ("require", Some("accept_invalid_certs")) => (SslMode::Require, false, false),
        ("require", _) => (SslMode::Require, root.is_some(), false),
        ("verify-ca", _) => (SslMode::Require, true, false),
        ("verify-full", _) => (SslMode::Require, true, true),
        (other, _) => return Err(invalid(format!("sslmode={other}: unknown mode"))),
    };
    config.ssl_mode(mode);
    let tls = if mode == SslMode::Disable {
        None
    } else {
        let tls_err = |e: openssl::error::ErrorStack| invalid(format!("TLS setup: {e}"));
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_err)?;
        if let Some(path) = &root {
            builder
                .set_ca_file(path)
                .map_err(|e| invalid(format!("sslrootcert {path:?}: {e}")))?;
        }
        builder.set_verify(if chain {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        let mut connector = MakeTlsConnector::new(builder.build());
        if !host {
            connector.set_callback(|c, _| {
                c.set_verify_hostname(false);
                Ok(())
            });
        }
        Some(connector)
    };
    Ok(Target {
        config,
        tls,
        schema: schema.filter(|s| !s.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, DiscoverError> {
        parse(url, Duration::from_secs(1))
    }

    #[test]
    fn litellm_prisma_urls_are_accepted() {
        let t = target(
            "postgresql://litellm:p%40ss@db:5432/litellm?schema=gateway&connection_limit=5&pgbouncer=true&sslmode=require",
        )
        .expect("a Prisma URL");
        assert_eq!(t.schema.as_deref(), Some("gateway"));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_password(), Some(&b"p@ss"[..]));
        assert!(t.tls.is_some());
        let plain = target("postgresql://u@h/db?sslmode=disable").expect("valid");
        assert!(plain.tls.is_none());
        assert_eq!(
            target("postgresql://u@h/db")
                .expect("valid")
                .config
                .get_ssl_mode(),
            SslMode::Prefer
        );
    }

    #[test]
    fn unknown_options_and_client_certificates_are_refused_by_name() {
        let e = target("postgresql://u:secret@h/db?sslmdoe=require")
            .err()
            .expect("typo");
        assert!(e.to_string().contains("\"sslmdoe\""), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = target("postgresql://u@h/db?sslkey=/k.pem")
            .err()
            .expect("client cert");
        assert!(e.to_string().contains("client certificates"), "{e}");
        let e = target("postgresql://u@h/db?sslmode=verify-some")
            .err()
            .expect("bad mode");
        assert!(e.to_string().contains("unknown mode"), "{e}");
        let e = target("postgresql://u@h/db?sslrootcert=/no/such.pem")
            .err()
            .expect("no file");
        assert!(e.to_string().contains("/no/such.pem"), "{e}");
    }
}
