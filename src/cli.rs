//! The command line: global options shared by every command, and one subcommand per module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::validate;
use crate::commands::{backup, restore};

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
            Command::Backup(_) => "backup",
            Command::Restore(_) => "restore",
        }
    }
}
