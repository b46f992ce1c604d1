//! The `modelmap` command: serve (default), check, explain, discover.

use std::process::ExitCode;

use clap::Parser;
use modelmap::config::{Cli, Command, ExplainArgs, ServeArgs, Settings, Upstream};
use modelmap::discover;
use modelmap::explain::{self, Who};
use modelmap::identity::{Answer, Gateway, KeyHash, LookupError};
use modelmap::server::{self, Drain};
use pingora::server::RunArgs;

/// Exit code for bad configuration (EX_CONFIG-style usage error).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::Check { file, gateway }) => match explain::check(&file) {
            Ok(summary) if gateway.database_url.is_none() && gateway.config.is_none() => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Ok(summary) => match discover::cli::check(&file, summary, &gateway) {
                Ok((report, clean)) => {
                    print!("{report}");
                    if clean {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            },
            Err(e) => {
                eprintln!("{}", e.report());
                ExitCode::FAILURE
            }
        },
        Some(Command::Discover { gateway }) => match discover::cli::discover(&gateway) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Some(Command::Explain(args)) => {
            let mapping = match discover::cli::mapping(&args.mapping, &args.gateway) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let who = match (&args.team, &args.key) {
                (Some(t), _) => Who::Team(t),
                (None, Some(k)) => {
                    let known = mapping.team_for_key(&KeyHash::of(k).0).is_some();
                    let answer = (args.ask_gateway && !known).then(|| ask_gateway(&args, k));
                    match answer {
                        Some(Err(e)) => {
                            eprintln!("{e}");
                            return ExitCode::from(EXIT_CONFIG);
                        }
                        Some(Ok(answer)) => Who::Key(k, Some(answer)),
                        None => Who::Key(k, None),
                    }
                }
                (None, None) => Who::Nobody,
            };
            print!("{}", explain::explain(&mapping, who, &args.model));
            ExitCode::SUCCESS
        }
    }
}

/// `explain --ask-gateway`: one `/key/info` lookup with the given key. The outer error is
/// a setup problem (bad `--upstream`, no runtime); the inner one is the lookup's.
fn ask_gateway(args: &ExplainArgs, key: &str) -> Result<Result<Answer, LookupError>, String> {
    let upstream = Upstream::parse(&args.upstream).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let mut value = http::HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| "--key: not a valid header value".to_string())?;
    value.set_sensitive(true);
    let gateway = Gateway::new(upstream.addr, upstream.authority(), args.identity_timeout);
    Ok(runtime.block_on(gateway.ask("authorization", value)))
}

fn serve(args: ServeArgs) -> ExitCode {
    modelmap::logging::init(args.log_format, &args.log_level);
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let timeout = settings.shutdown_timeout();
    let parts = match server::build(settings) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let drain = Drain {
        in_flight: parts.in_flight.clone(),
        timeout,
    };
    parts.server.run(RunArgs {
        shutdown_signal: Box::new(drain),
    });
    ExitCode::SUCCESS
}
