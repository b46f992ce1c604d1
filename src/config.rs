//! Command line and environment → validated settings.
//!
//! Every serve flag has an environment twin (`MODELMAP_*`); flags win over the
//! environment. The flag names are an interface deploy manifests script against: keep
//! them stable. Defaults work next to a local LiteLLM on :4000.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use http::HeaderName;

use crate::discover::database::Database;
use crate::mapping::KeyDigest;

#[derive(Debug, Parser)]
#[command(
    name = "modelmap",
    version,
    about = "Sidecar proxy for LiteLLM: maps public and alias model names to the gateway's internal team-scoped names, and back.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Validate a mapping file offline; exit 0 if it would be applied, 1 with the reasons if not.
    /// With `--database-url` or `--config`, also exit 1 on stale entries (internal names
    /// the gateway does not have) and missing ones (gateway team models the file does not map).
    Check {
        /// The mapping file to check.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewaySources,
    },
    /// Print the mapping the gateway implies (YAML, each model commented with its id and
    /// creation time), from LiteLLM's database and/or config file.
    Discover {
        #[command(flatten)]
        gateway: GatewaySources,
    },
    /// Show which rules map a model name, and to what.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The mapping file.
    #[arg(long, env = "MODELMAP_MAPPING", default_value = "conf/mapping.yaml")]
    pub mapping: PathBuf,
    /// Resolve as a caller of this team.
    #[arg(long, conflicts_with = "key")]
    pub team: Option<String>,
    /// Resolve as the caller holding this virtual key (looked up in the `keys` table).
    #[arg(long)]
    pub key: Option<String>,
    /// When the `keys` table does not know `--key`, ask the gateway's `/key/info` with it.
    #[arg(long, requires = "key")]
    pub ask_gateway: bool,
    /// The gateway to ask (with `--ask-gateway`).
    #[arg(
        long,
        env = "MODELMAP_UPSTREAM",
        default_value = "http://127.0.0.1:4000"
    )]
    pub upstream: String,
    /// Longest wait for the gateway's answer (with `--ask-gateway`).
    #[arg(long, env = "MODELMAP_IDENTITY_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub identity_timeout: Duration,
    /// Merge in the team models the gateway has, as `serve --discover-*` does.
    #[command(flatten)]
    pub gateway: GatewaySources,
    /// The requested model name (a comma-separated list is resolved name by name).
    pub model: String,
}

/// Where `check` and `discover` read the gateway's team models.
#[derive(Debug, Clone, Args)]
pub struct GatewaySources {
    /// LiteLLM's Postgres database (postgresql://user:password@host:port/db).
    #[arg(long, env = "MODELMAP_DISCOVER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// LiteLLM's config.yaml (team models declared in its model_list).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Longest wait for the database (connect and queries together).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the proxy listens on.
    #[arg(long, env = "MODELMAP_LISTEN", default_value = "0.0.0.0:4001")]
    pub listen: String,
    /// The gateway (LiteLLM) to forward to: http://host:port.
    #[arg(
        long,
        env = "MODELMAP_UPSTREAM",
        default_value = "http://127.0.0.1:4000"
    )]
    pub upstream: String,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "MODELMAP_ADMIN", default_value = "0.0.0.0:9464")]
    pub admin: String,
    /// The mapping file (YAML or JSON). Its directory is watched and reloads are hot.
    #[arg(long, env = "MODELMAP_MAPPING", default_value = "conf/mapping.yaml")]
    pub mapping: PathBuf,
    /// Proxy worker threads.
    #[arg(long, env = "MODELMAP_THREADS", default_value_t = 2)]
    pub threads: usize,
    /// Log format.
    #[arg(long, env = "MODELMAP_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `modelmap=debug`).
    #[arg(long, env = "MODELMAP_LOG", default_value = "info")]
    pub log_level: String,
    /// Time allowed to connect to the gateway (e.g. 5s, 500ms).
    #[arg(long, env = "MODELMAP_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Longest wait for the gateway's next bytes (LLM responses can be slow to start).
    #[arg(long, env = "MODELMAP_READ_TIMEOUT", default_value = "600s", value_parser = humantime::parse_duration)]
    pub read_timeout: Duration,
    /// Longest a client may take to send its whole request body (bounds slow senders).
    #[arg(long, env = "MODELMAP_CLIENT_BODY_TIMEOUT", default_value = "300s", value_parser = humantime::parse_duration)]
    pub client_body_timeout: Duration,
    /// Longest wait for a client's next bytes once its request head has arrived.
    #[arg(long, env = "MODELMAP_CLIENT_READ_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub client_read_timeout: Duration,
    /// Longest a client may take to send a whole request head, from its first byte
    /// (408 after it): bounds clients that trickle a head a byte at a time.
    #[arg(long, env = "MODELMAP_HEAD_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub head_timeout: Duration,
    /// How long an idle client connection is kept open for its next request.
    #[arg(long, env = "MODELMAP_KEEPALIVE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,
    /// How long an idle connection to the gateway is kept for reuse. Below the gateway's
    /// own keep-alive timeout (uvicorn's default is 5 s), so the gateway rarely closes a
    /// connection modelmap is about to reuse.
    #[arg(long, env = "MODELMAP_UPSTREAM_IDLE_TIMEOUT", default_value = "4s", value_parser = humantime::parse_duration)]
    pub upstream_idle_timeout: Duration,
    /// Most client connections open at once; past it a new connection is answered 503
    /// and closed (counted in `modelmap_connections_refused_total`).
    #[arg(long, env = "MODELMAP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// On SIGTERM, how long in-flight requests and streams may take to finish.
    #[arg(long, env = "MODELMAP_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Quiet time after a change in the mapping's directory before it is reloaded.
    #[arg(long, env = "MODELMAP_RELOAD_DEBOUNCE", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub reload_debounce: Duration,
    /// Header carrying the virtual key, read before LiteLLM's standard ones
    /// (set it when LiteLLM's `litellm_key_header_name` is set).
    #[arg(long, env = "MODELMAP_KEY_HEADER")]
    pub key_header: Option<String>,
    /// Ask the gateway (`GET /key/info` with the caller's own key) for the team of a key
    /// the `keys` table does not know. `--identity-lookup=false` turns it off.
    #[arg(long, env = "MODELMAP_IDENTITY_LOOKUP", default_value_t = true, action = ArgAction::Set)]
    pub identity_lookup: bool,
    /// Longest wait for one `/key/info` answer.
    #[arg(long, env = "MODELMAP_IDENTITY_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub identity_timeout: Duration,
    /// How long a key's team, as the gateway told it, is reused.
    #[arg(long, env = "MODELMAP_IDENTITY_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub identity_ttl: Duration,
    /// How long "unknown or invalid key" (401/403/404 from `/key/info`) is reused.
    #[arg(long, env = "MODELMAP_IDENTITY_NEGATIVE_TTL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub identity_negative_ttl: Duration,
    /// Most keys remembered at once (0: no cache, every request asks the gateway).
    #[arg(long, env = "MODELMAP_IDENTITY_CACHE_SIZE", default_value_t = 10_000)]
    pub identity_cache_size: usize,
    /// If a `/key/info` lookup fails, answer 503 instead of continuing with global
    /// aliases only.
    #[arg(long, env = "MODELMAP_IDENTITY_FAIL_CLOSED")]
    pub identity_fail_closed: bool,
    /// A header that carries the caller's team, set by an authenticating ingress that
    /// strips it from clients. Overrides every other source; removed before forwarding.
    #[arg(long, env = "MODELMAP_TRUSTED_TEAM_HEADER")]
    pub trusted_team_header: Option<String>,
    /// SHA-256 (hex) of the gateway's master key: that key has no team and is never
    /// looked up.
    #[arg(long, env = "MODELMAP_MASTER_KEY_HASH")]
    pub master_key_hash: Option<String>,
    /// Most bytes held at once, across all requests, for restoring whole bodies (error
    /// bodies and model lists, each up to 4 MiB). A body that does not fit passes
    /// through unrestored, never truncated. Accepts B, KiB, MiB, GiB (0: hold none).
    #[arg(long, env = "MODELMAP_RESTORE_BUFFER_BUDGET", default_value = "64MiB", value_parser = parse_bytes)]
    pub restore_buffer_budget: usize,
    /// Refuse (403) a request that names another team's internal model name.
    /// `--guard=false` turns it off.
    #[arg(long, env = "MODELMAP_GUARD", default_value_t = true, action = ArgAction::Set)]
    pub guard: bool,
    /// Discover team models from LiteLLM's Postgres database (a URL; a read-only role
    /// is enough, see docs/discovery.md). Off unless set.
    #[arg(long, env = "MODELMAP_DISCOVER_DATABASE_URL", hide_env_values = true)]
    pub discover_database: Option<String>,
    /// Discover team models from LiteLLM's config.yaml (watched like the mapping file).
    #[arg(long, env = "MODELMAP_DISCOVER_CONFIG")]
    pub discover_config: Option<PathBuf>,
    /// How often the database is read.
    #[arg(long, env = "MODELMAP_DISCOVER_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub discover_interval: Duration,
    /// Longest a database round may take (connect and queries); a slower one fails.
    #[arg(long, env = "MODELMAP_DISCOVER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub discover_timeout: Duration,
}

/// A size in bytes: a whole number with an optional binary unit (`B`, `KiB`, `MiB`,
/// `GiB`; `K`, `M`, `G` mean the same).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64MiB"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The gateway address, resolved once at start.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// As given, for messages.
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--upstream {0:?}: only http:// gateways are supported (modelmap runs beside the gateway, in its pod)"
    )]
    Scheme(String),
    #[error("--upstream {url:?}: cannot resolve {authority:?}: {reason}")]
    Resolve {
        url: String,
        authority: String,
        reason: String,
    },
    #[error("--{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

impl Upstream {
    /// `host[:port]` as given, for the `Host` header of modelmap's own requests.
    pub fn authority(&self) -> &str {
        let rest = self.url.strip_prefix("http://").unwrap_or(&self.url);
        rest.split('/').next().unwrap_or_default()
    }

    pub fn parse(url: &str) -> Result<Upstream, ConfigError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ConfigError::Scheme(url.to_string()))?;
        let invalid = |reason: String| ConfigError::Invalid {
            flag: "upstream",
            value: url.to_string(),
            reason,
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if !path.is_empty() && path != "/" {
            return Err(invalid(format!(
                "a path ({path}) is not supported: modelmap forwards each request's own path \
                 unchanged, so give the gateway as http://host:port (a client's /v1/... \
                 arrives as /v1/...)"
            )));
        }
        if authority.contains('@') {
            return Err(invalid(
                "user information (user@) is not supported: callers' own credentials are \
                 forwarded as they are; give the gateway as http://host:port"
                    .into(),
            ));
        }
        // The port is what follows the last ':' outside an IPv6 literal's brackets.
        let port = authority
            .rsplit_once(':')
            .filter(|(_, p)| !p.contains(']'))
            .map(|(_, p)| p);
        let host = port.map_or(authority, |p| &authority[..authority.len() - p.len() - 1]);
        if host.is_empty() {
            return Err(invalid(
                "no host: give the gateway as http://host:port".into(),
            ));
        }
        let with_port = match port {
            None => format!("{authority}:80"),
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => {
                    return Err(invalid(format!(
                        "invalid port {p:?} (a port is a number from 1 to 65535)"
                    )));
                }
                Ok(_) => authority.to_string(),
            },
        };
        let resolve_err = |reason: String| ConfigError::Resolve {
            url: url.to_string(),
            authority: authority.to_string(),
            reason,
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no address".into()))?;
        Ok(Upstream {
            addr,
            url: url.to_string(),
        })
    }
}

/// Validated settings for `serve`, typed and grouped by the part that reads them: the
/// raw flags stay here, in `from_args`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) upstream: Upstream,
    pub(crate) mapping: PathBuf,
    pub(crate) threads: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) reload_debounce: Duration,
    pub(crate) proxy: ProxySettings,
    pub(crate) identity: IdentitySettings,
    pub(crate) discovery: DiscoverySettings,
}

/// What the proxy loop reads.
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    pub guard: bool,
    pub head_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub client_read_timeout: Duration,
    pub client_body_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub max_connections: usize,
    pub restore_buffer_budget: usize,
}

/// How callers are identified (see `identity`).
#[derive(Debug, Clone)]
pub(crate) struct IdentitySettings {
    pub key_header: Option<String>,
    pub lookup: bool,
    pub timeout: Duration,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub cache_size: usize,
    pub fail_closed: bool,
    pub trusted_team_header: Option<HeaderName>,
    pub master_key: Option<KeyDigest>,
}

/// Where team models are discovered from (see `discover`).
#[derive(Debug, Clone)]
pub(crate) struct DiscoverySettings {
    pub database: Option<Database>,
    pub config: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Settings {
    /// How long a SIGTERM drain may take.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
}

/// Whether two listening addresses would claim the same socket: the same port on the
/// same address, or on any address when one of them is the wildcard. Port 0 (any free
/// port) never clashes.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A SHA-256 digest written as 64 hex digits.
pub fn parse_digest(hex: &str) -> Option<KeyDigest> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Settings {
    pub fn from_args(args: ServeArgs) -> Result<Settings, ConfigError> {
        let upstream = Upstream::parse(&args.upstream)?;
        let mut addrs = Vec::with_capacity(2);
        for (flag, value) in [("listen", &args.listen), ("admin", &args.admin)] {
            addrs.push(
                value
                    .parse::<SocketAddr>()
                    .map_err(|e| ConfigError::Invalid {
                        flag,
                        value: value.clone(),
                        reason: e.to_string(),
                    })?,
            );
        }
        if overlap(addrs[0], addrs[1]) {
            return Err(ConfigError::Invalid {
                flag: "admin",
                value: args.admin.clone(),
                reason: format!(
                    "the admin server needs its own port: --listen {} already uses it",
                    args.listen
                ),
            });
        }
        if args.max_connections == 0 {
            return Err(ConfigError::Invalid {
                flag: "max-connections",
                value: "0".into(),
                reason: "at least one connection is needed".into(),
            });
        }
        if args.threads == 0 {
            return Err(ConfigError::Invalid {
                flag: "threads",
                value: "0".into(),
                reason: "at least one worker thread is needed".into(),
            });
        }
        let trusted_team_header = args
            .trusted_team_header
            .as_deref()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| ConfigError::Invalid {
                    flag: "trusted-team-header",
                    value: name.to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let master_key = args
            .master_key_hash
            .as_deref()
            .map(|hex| {
                parse_digest(hex).ok_or_else(|| ConfigError::Invalid {
                    flag: "master-key-hash",
                    // Someone may pass the key itself by mistake: never echo it.
                    value: format!("<{} characters>", hex.chars().count()),
                    reason: "expected the SHA-256 of the master key as 64 hex digits (printf %s \"$KEY\" | sha256sum)".into(),
                })
            })
            .transpose()?;
        if args.identity_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                flag: "identity-timeout",
                value: "0s".into(),
                reason: "a lookup needs some time".into(),
            });
        }
        for (flag, value) in [
            ("discover-interval", args.discover_interval),
            ("discover-timeout", args.discover_timeout),
            ("head-timeout", args.head_timeout),
            ("keepalive-timeout", args.keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid {
                    flag,
                    value: "0s".into(),
                    reason: "must be more than zero".into(),
                });
            }
        }
        let discover_database = args
            .discover_database
            .as_deref()
            .map(|url| {
                Database::parse(url, args.discover_timeout).map_err(|e| ConfigError::Invalid {
                    flag: "discover-database",
                    // The URL holds a password: never echo it.
                    value: "<url>".into(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Settings {
            listen: addrs[0],
            admin: addrs[1],
            upstream,
            mapping: args.mapping,
            threads: args.threads,
            shutdown_timeout: args.shutdown_timeout,
            reload_debounce: args.reload_debounce,
            proxy: ProxySettings {
                guard: args.guard,
                head_timeout: args.head_timeout,
                keepalive_timeout: args.keepalive_timeout,
                client_read_timeout: args.client_read_timeout,
                client_body_timeout: args.client_body_timeout,
                connect_timeout: args.connect_timeout,
                read_timeout: args.read_timeout,
                upstream_idle_timeout: args.upstream_idle_timeout,
                max_connections: args.max_connections,
                restore_buffer_budget: args.restore_buffer_budget,
            },
            identity: IdentitySettings {
                key_header: args.key_header,
                lookup: args.identity_lookup,
                timeout: args.identity_timeout,
                ttl: args.identity_ttl,
                negative_ttl: args.identity_negative_ttl,
                cache_size: args.identity_cache_size,
                fail_closed: args.identity_fail_closed,
                trusted_team_header,
                master_key,
            },
            discovery: DiscoverySettings {
                database: discover_database,
                config: args.discover_config,
                interval: args.discover_interval,
                timeout: args.discover_timeout,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_beside_a_local_gateway() {
        let cli = Cli::try_parse_from(["modelmap"]).expect("no flags needed");
        let s = Settings::from_args(cli.serve).expect("defaults are valid");
        assert_eq!(s.upstream.addr.to_string(), "127.0.0.1:4000");
        assert_eq!(s.listen.to_string(), "0.0.0.0:4001");
        assert_eq!(s.admin.to_string(), "0.0.0.0:9464");
        assert_eq!(s.proxy.head_timeout, Duration::from_secs(10));
        assert_eq!(s.proxy.max_connections, 10_000);
    }

    #[test]
    fn serve_subcommand_and_flags() {
        let cli = Cli::try_parse_from([
            "modelmap",
            "serve",
            "--upstream",
            "http://localhost:9",
            "--read-timeout",
            "2m",
        ])
        .expect("valid");
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve parsed");
        };
        assert_eq!(args.read_timeout, Duration::from_secs(120));
        assert!(Settings::from_args(*args).is_ok());
    }

    #[test]
    fn identity_flags_parse_and_validate() {
        let cli = Cli::try_parse_from(["modelmap"]).expect("no flags needed");
        let s = Settings::from_args(cli.serve).expect("defaults are valid");
        assert!(s.identity.lookup && s.proxy.guard, "on by default");
        assert!(!s.identity.fail_closed);
        assert_eq!(s.identity.ttl, Duration::from_secs(60));
        assert_eq!(s.identity.negative_ttl, Duration::from_secs(5));
        assert_eq!(s.identity.cache_size, 10_000);
        assert!(s.identity.trusted_team_header.is_none() && s.identity.master_key.is_none());

        let digest = "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b";
        let cli = Cli::try_parse_from([
            "modelmap",
            "--guard=false",
            "--identity-lookup",
            "false",
            "--identity-fail-closed",
            "--trusted-team-header",
            "X-Team-Id",
            "--master-key-hash",
            digest,
        ])
        .expect("valid");
        let s = Settings::from_args(cli.serve).expect("valid");
        assert!(!s.proxy.guard && !s.identity.lookup && s.identity.fail_closed);
        assert_eq!(
            s.identity.trusted_team_header.expect("set").as_str(),
            "x-team-id"
        );
        assert_eq!(s.identity.master_key.expect("set")[0], 0x88);

        let cli =
            Cli::try_parse_from(["modelmap", "--master-key-hash", "sk-1234"]).expect("parses");
        let e = Settings::from_args(cli.serve).expect_err("not a digest");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        assert!(
            !e.to_string().contains("sk-1234"),
            "a mistaken key is not echoed: {e}"
        );
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert!(parse_bytes("64MB").is_err());
        assert!(parse_bytes("MiB").is_err());
        let cli = Cli::try_parse_from(["modelmap"]).expect("no flags needed");
        assert_eq!(cli.serve.restore_buffer_budget, 64 << 20);
    }

    #[test]
    fn the_admin_server_needs_its_own_port() {
        for (listen, admin) in [
            ("127.0.0.1:4001", "127.0.0.1:4001"),
            ("0.0.0.0:4001", "127.0.0.1:4001"),
            ("127.0.0.1:4001", "0.0.0.0:4001"),
        ] {
            let cli = Cli::try_parse_from(["modelmap", "--listen", listen, "--admin", admin])
                .expect("parses");
            let e = Settings::from_args(cli.serve).expect_err("same socket twice");
            assert!(e.to_string().contains("its own port"), "{e}");
        }
        let cli = Cli::try_parse_from([
            "modelmap",
            "--listen",
            "127.0.0.1:4001",
            "--admin",
            "127.0.0.2:4001",
        ])
        .expect("parses");
        assert!(
            Settings::from_args(cli.serve).is_ok(),
            "two addresses, one port each"
        );
    }

    #[test]
    fn bad_upstreams_are_explained() {
        let e = Upstream::parse("https://gw:4000").expect_err("tls upstream");
        assert!(e.to_string().contains("only http://"), "{e}");
        for (url, says) in [
            ("http://127.0.0.1:99999", "invalid port \"99999\""),
            ("http://127.0.0.1:0", "invalid port \"0\""),
            ("http://127.0.0.1:", "invalid port \"\""),
            ("http://127.0.0.1:40x0", "invalid port"),
            (
                "http://user@127.0.0.1:4000",
                "user information (user@) is not supported",
            ),
            (
                "http://user:pw@127.0.0.1:4000",
                "user information (user@) is not supported",
            ),
            ("http://127.0.0.1:4000/v1", "a path (/v1) is not supported"),
            (
                "http://127.0.0.1:4000?x=1",
                "a path (?x=1) is not supported",
            ),
            ("http://:4000", "no host"),
        ] {
            let e = Upstream::parse(url).expect_err(url).to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("cannot resolve"), "{url}: {e}");
        }
        for url in [
            "http://127.0.0.1:4000",
            "http://127.0.0.1:4000/",
            "http://localhost",
            "http://[::1]:4000",
        ] {
            assert!(Upstream::parse(url).is_ok(), "{url}");
        }
        let e = Upstream::parse("http://no-such-host.invalid:4000").expect_err("unresolvable");
        assert!(e.to_string().contains("cannot resolve"), "{e}");
    }
}
