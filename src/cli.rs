//! The command line: global options shared by every command, and one subcommand per module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::{
    backup, gate, migrate, notify, pipeline, record, restore, rollback, rollout, smoke, validate,
};

#[derive(Debug, Parser)]
#[command(
    name = "shipgate",
    version,
    about = "GitHub Actions-native deployment pipeline: validate, gate, backup, migrate, roll out, smoke-test, record",
    long_about = "GitHub Actions-native deployment pipeline.\n\nEvery option can also come from the action input of the same name (the runner's `INPUT_<NAME>` variable, hyphens kept) or from `shipgate.yml`; a flag wins over an input, an input over the file. Secrets (`github-token`, database URLs, webhooks) are read only from inputs or the environment, never from flags.",
    after_help = crate::exit::TABLE
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Print the command's result object as JSON on stdout (logs stay on stderr)
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Config file (input `config`) [default: shipgate.yml, if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<String>,
    /// Root of the per-deployment state directories (input `state-dir`) [default: .shipgate]
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Target environment (input `environment`) [default: production]
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) environment: Option<String>,
    /// Deployment id (input `deployment-id`) [default: computed by `validate`, then reused]
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) deployment_id: Option<String>,
    /// Repository as `owner/name` (input `repository`) [default: GITHUB_REPOSITORY]
    #[arg(long, global = true, value_name = "OWNER/NAME")]
    pub(crate) repository: Option<String>,
    /// More detail on stderr (-v debug, -vv trace); `SHIPGATE_LOG` takes a filter
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable logs on stderr; nothing on stdout
    Text,
    /// The result object as JSON on stdout
    Json,
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
        }
    }
}
