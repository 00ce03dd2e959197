//! `shipgate`: parse, set up logging, run the command, exit with its code.

mod actions;
mod artifacts;
mod backup;
mod cli;
mod commands;
mod drill;
mod error;
mod exit;
mod gate;
mod git;
mod github;
mod health;
mod hooks;
mod inputs;
mod lease;
mod log;
mod metrics;
mod migrate;
mod notify;
mod pipeline;
mod postgres;
mod process;
#[cfg(test)]
mod properties;
mod record;
mod release;
mod rollback;
mod rollout;
mod secret;
mod settings;
mod smoke;
mod state;
mod storage;
mod text;
mod ui;
mod util;
mod version;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Masks first: nothing may be printed before the runner knows every secret.
    secret::on_register(actions::add_mask);
    settings::register_known_secrets();
    if let Some(message) = cli::non_utf8_argument(std::env::args_os()) {
        eprintln!("error: {message}");
        return ExitCode::from(exit::Status::Usage.code());
    }
    let cli = cli::Cli::parse();
    log::init(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            actions::annotate(
                actions::Level::Error,
                None,
                &format!("cannot start the async runtime: {e}"),
            );
            return ExitCode::from(exit::Status::Dependency.code());
        }
    };
    let status = runtime.block_on(cli::run(cli));
    ui::end_progress();
    ExitCode::from(status)
}
