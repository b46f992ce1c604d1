//! The `modelmap` command: serve (default), check, explain.

use std::process::ExitCode;

use clap::Parser;
use modelmap::config::{Cli, Command, ServeArgs, Settings};
use modelmap::explain::{self, Who};
use modelmap::mapping::Mapping;
use modelmap::server::{self, Drain};
use pingora::server::RunArgs;

/// Exit code for bad configuration (EX_CONFIG-style usage error).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check { file }) => match explain::check(&file) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Explain(args)) => {
            let mapping = match Mapping::load(&args.mapping) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let who = match (&args.team, &args.key) {
                (Some(t), _) => Who::Team(t),
                (None, Some(k)) => Who::Key(k),
                (None, None) => Who::Nobody,
            };
            print!("{}", explain::explain(&mapping, who, &args.model));
            ExitCode::SUCCESS
        }
    }
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
    let timeout = settings.args.shutdown_timeout;
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
