//! The command line, at the top of the layers: global options shared by every command, one
//! subcommand per module, and the dispatch from one to the other.

use clap::{Parser, Subcommand};

use crate::commands::{
    self, Outcome, backup, drill, gate, lease, migrate, notify, pipeline, record, restore,
    rollback, rollout, smoke, validate, watch,
};
use crate::error::Result;
use crate::settings::GlobalArgs;
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "shipgate",
    version,
    about = "GitHub Actions-native deployment pipeline: validate, gate, backup, migrate, roll out, smoke-test, record",
    long_about = "GitHub Actions-native deployment pipeline.\n\nEvery option can also come from the action input of the same name (the runner's `INPUT_<NAME>` variable, hyphens kept) or from `shipgate.yml`; a flag wins over an input, an input over the file. Secrets (`github-token`, database URLs, webhooks) are read only from inputs or the environment, never from flags.",
    after_help = crate::exit::table()
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate the release version and tag, and emit the deployment id
    Validate(validate::Args),
    /// Run the database migrations once, under a lock, after a verified backup; count them
    Migrate(migrate::Args),
    /// Wait for the commit's check runs and commit statuses, then require them to pass
    Gate(gate::Args),
    /// Run the smoke suite: HTTP, database and TCP checks with asserts, captures, readiness
    /// retries and snapshots; JUnit and summary reports
    Smoke(smoke::Args),
    /// Write the deployment record, rollback instructions and failure report; upload them as
    /// artifacts; mirror the deployment on GitHub
    Record(record::Args),
    /// Roll back inside the rollback window: hook, optional database restore, health check
    Rollback(rollback::Args),
    /// Send the deployment's outcome to Slack and/or a JSON webhook
    Notify(notify::Args),
    /// Shift traffic stage by stage with health gates, rolling back automatically on a breach
    Rollout(Box<rollout::Args>),
    /// Run the whole plan from one config: validate, gate, backup, migrate, rollout, smoke,
    /// record, notify, with the failure path (rollback, failure report, notification)
    Pipeline(pipeline::Args),
    /// Back up PostgreSQL to S3 or a directory: streamed, verified, never overwritten
    /// (`backup prune`: retention)
    Backup(backup::Args),
    /// Restore a backup (by id, location or deployment record) after checking its SHA-256
    Restore(restore::Args),
    /// Restore drill: the newest backup into a scratch database; RTO, RPO and parity checks
    Drill(drill::Args),
    /// The deployment lease (one deployment per environment at a time): show who holds it,
    /// take or release it, or break a dead holder's lease with a reason
    Lease(lease::Args),
    /// After a successful rollout, watch its probes and metric gates for a window; roll back
    /// on a breach
    Watch(watch::Args),
}

impl Command {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Validate(_) => "validate",
            Command::Migrate(_) => "migrate",
            Command::Gate(_) => "gate",
            Command::Smoke(_) => "smoke",
            Command::Record(_) => "record",
            Command::Rollback(_) => "rollback",
            Command::Notify(_) => "notify",
            Command::Rollout(_) => "rollout",
            Command::Pipeline(_) => "pipeline",
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
            Command::Drill(_) => "drill",
            Command::Lease(_) => "lease",
            Command::Watch(_) => "watch",
        }
    }
}

/// Runs the command and returns the process exit code.
pub(crate) async fn run(cli: Cli) -> u8 {
    let name = cli.command.name();
    let result: Result<Outcome> = async {
        let settings = Settings::load(&cli.global)?;
        match &cli.command {
            Command::Pipeline(args) => pipeline::run(args, &settings).await,
            Command::Validate(args) => validate::run(args, &settings).await,
            Command::Migrate(args) => migrate::run(args, &settings).await,
            Command::Gate(args) => gate::run(args, &settings).await,
            Command::Smoke(args) => smoke::run(args, &settings).await,
            Command::Record(args) => record::run(args, &settings).await,
            Command::Rollback(args) => rollback::run(args, &settings).await,
            Command::Notify(args) => notify::run(args, &settings).await,
            Command::Rollout(args) => rollout::run(args, &settings).await,
            Command::Backup(args) => backup::run(args, &settings).await,
            Command::Restore(args) => restore::run(args, &settings).await,
            Command::Drill(args) => drill::run(args, &settings).await,
            Command::Lease(args) => lease::run(args, &settings).await,
            Command::Watch(args) => watch::run(args, &settings).await,
        }
    }
    .await;
    // After a run that did its work, an input nothing read was probably misspelt or meant for
    // another command: say so instead of ignoring it silently.
    if result.is_ok() {
        for input in crate::inputs::unused_inputs() {
            crate::actions::annotate(
                crate::actions::Level::Warning,
                Some(&format!("shipgate {name}")),
                &format!(
                    "the input `{input}` is set but `shipgate {name}` does not use it; check its name (action.yml lists every input) or remove it"
                ),
            );
        }
    }
    commands::report(name, result, cli.global.format)
}

/// The first argument that is not UTF-8, as an error naming it (its other bytes as `\u{FFFD}`)
/// and its position; clap's own message names neither.
pub(crate) fn non_utf8_argument(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Option<String> {
    args.into_iter().enumerate().skip(1).find_map(|(n, arg)| {
        arg.to_str().is_none().then(|| {
            format!(
                "argument {n} {} is not valid UTF-8 (the bytes that are not are shown as \u{FFFD}); shipgate reads its arguments as text: pass it in UTF-8",
                crate::text::quote(&arg.to_string_lossy())
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn a_non_utf8_argument_is_named_with_its_position() {
        let args = [
            OsString::from("shipgate"),
            OsString::from("validate"),
            OsString::from("--version"),
            OsString::from_vec(b"v1\xff".to_vec()),
        ];
        let message = super::non_utf8_argument(args.clone()).expect("refused");
        assert!(message.starts_with("argument 3 `v1\u{FFFD}`"), "{message}");
        assert_eq!(super::non_utf8_argument(args[..3].to_vec()), None);
    }
}
