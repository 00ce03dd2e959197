//! The migration command: where it comes from (after `--`, the `migration-command` input, or
//! `migrate.command` in shipgate.yml), its argv (split without a shell, or one `sh -c` script),
//! and the check that its program can start at all.

use std::path::Path;

use super::config::CommandConfig;
use crate::actions;
use crate::error::{Error, Result};

/// Where the command came from.
pub(crate) enum CommandSource {
    /// After `--`: argv as given.
    Args(Vec<String>),
    /// The `migration-command` input: one line.
    Input(String),
    /// `migrate.command` in the config file.
    File(CommandConfig),
}

pub(crate) fn command_argv(source: CommandSource, shell: bool) -> Result<Vec<String>> {
    let argv = if shell {
        let script = match source {
            CommandSource::Args(args) if args.len() == 1 => args[0].clone(),
            CommandSource::Args(args) => {
                return Err(Error::usage(format!(
                    "with `--shell` the command is one script argument, but {} were given; quote the script: `shipgate migrate --shell -- 'make db-migrate && ./check'`",
                    args.len()
                )));
            }
            CommandSource::Input(line) | CommandSource::File(CommandConfig::Line(line)) => line,
            CommandSource::File(CommandConfig::Argv(list)) if list.len() == 1 => list[0].clone(),
            CommandSource::File(CommandConfig::Argv(_)) => {
                return Err(Error::usage(
                    "with `shell: true`, `migrate.command` in shipgate.yml is one script string, not a list",
                ));
            }
        };
        if script.trim().is_empty() {
            return Err(Error::usage(
                "the migration script is empty; give the command to run",
            ));
        }
        vec!["sh".to_string(), "-c".to_string(), script]
    } else {
        match source {
            CommandSource::Args(args) => args,
            CommandSource::File(CommandConfig::Argv(list)) => list,
            CommandSource::Input(line) => crate::process::split_command(&line)
                .map_err(|e| Error::usage(format!("input `migration-command` {e}")))?,
            CommandSource::File(CommandConfig::Line(line)) => crate::process::split_command(&line)
                .map_err(|e| Error::usage(format!("`migrate.command` in shipgate.yml {e}")))?,
        }
    };
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(Error::usage(
            "the migration command is empty; give the program to run, e.g. `npx prisma migrate deploy`",
        ));
    }
    Ok(argv)
}

/// Refuses, before anything happens, a program that cannot be started: "command not found" is a
/// usage error, not a failed migration.
pub(crate) fn check_program(program: &str) -> Result<()> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        if executable(path) {
            return Ok(());
        }
        let why = if path.exists() {
            "is not an executable file; `chmod +x` it, or run it through a shell with `--shell`"
        } else {
            "does not exist; check the path (relative paths start from the working directory)"
        };
        return Err(Error::usage(format!(
            "the migration command {} {why}",
            actions::quote(program)
        )));
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "the migration command {} was not found on PATH; install it where shipgate runs (the job, or an image built on shipgate's), give its path, or run it with `--shell`",
            actions::quote(program)
        )))
    }
}
