//! Settings are resolved here and only here: CLI flag > `INPUT_*` environment (as the runner sets
//! it, hyphens kept: `INPUT_DATABASE-URL`) > config file (`shipgate.yml`) > default.
//!
//! Secrets are never read from flags (argv is visible in `ps`) nor from the config file (it is
//! committed): only from `INPUT_*` or the environment.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The default config file, read when present.
pub(crate) const DEFAULT_CONFIG: &str = "shipgate.yml";

/// `shipgate.yml`. Unknown keys are errors naming the file, line and key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    /// Target environment, e.g. `production`.
    pub(crate) environment: Option<String>,
    /// Root of the state directories (`.shipgate`).
    pub(crate) state_dir: Option<PathBuf>,
    /// `owner/name` of the repository (default: `GITHUB_REPOSITORY`).
    pub(crate) repository: Option<String>,
    pub(crate) validate: Option<crate::commands::validate::FileConfig>,
    pub(crate) migrate: Option<crate::commands::migrate::FileConfig>,
    pub(crate) gate: Option<crate::commands::gate::FileConfig>,
    pub(crate) smoke: Option<crate::commands::smoke::FileConfig>,
    pub(crate) record: Option<crate::commands::record::FileConfig>,
    pub(crate) rollback: Option<crate::commands::rollback::FileConfig>,
    pub(crate) notify: Option<crate::commands::notify::FileConfig>,
    pub(crate) rollout: Option<crate::commands::rollout::FileConfig>,
    pub(crate) pipeline: Option<crate::commands::pipeline::FileConfig>,
    pub(crate) backup: Option<crate::commands::backup::FileConfig>,
}

/// Settings shared by every command, resolved once.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) file: FileConfig,
    pub(crate) environment: String,
    pub(crate) state_root: PathBuf,
    pub(crate) deployment_id: Option<String>,
    pub(crate) repository: Option<String>,
    /// The config file named by `--config` / input `config` (none: `shipgate.yml` if present).
    pub(crate) config: Option<String>,
    /// `-v` count.
    pub(crate) verbose: u8,
}

#[allow(dead_code)] // shared API: used by the commands of the next issues
impl Settings {
    pub(crate) fn load(global: &GlobalArgs) -> Result<Settings> {
        let config = global.config.clone().or_else(|| input("config"));
        let file = load_config(config.as_deref())?;
        let environment = global
            .environment
            .clone()
            .or_else(|| input("environment"))
            .or_else(|| file.environment.clone())
            .unwrap_or_else(|| "production".to_string());
        check_name("environment", &environment)?;
        let state_root = global
            .state_dir
            .clone()
            .or_else(|| input("state-dir").map(PathBuf::from))
            .or_else(|| file.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".shipgate"));
        let deployment_id = global
            .deployment_id
            .clone()
            .or_else(|| input("deployment-id"))
            .or_else(|| env("SHIPGATE_DEPLOYMENT_ID"));
        if let Some(id) = &deployment_id {
            crate::state::check_deployment_id(id)?;
        }
        let repository = global
            .repository
            .clone()
            .or_else(|| input("repository"))
            .or_else(|| file.repository.clone())
            .or_else(|| env("GITHUB_REPOSITORY"));
        Ok(Settings {
            file,
            environment,
            state_root,
            deployment_id,
            repository,
            config,
            verbose: global.verbose,
        })
    }

    /// The command line that runs this very executable as a child (a pipeline stage, the
    /// restore of a rollback) with the same global settings — config file, state dir,
    /// environment, repository, deployment id and verbosity — followed by `command`.
    pub(crate) fn shipgate_argv(
        &self,
        deployment_id: Option<&str>,
        command: &[&str],
    ) -> Result<Vec<String>> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::dependency(format!("cannot find the shipgate executable: {e}")))?;
        let mut argv = vec![exe.display().to_string()];
        if let Some(config) = &self.config {
            argv.extend(["--config".to_string(), config.clone()]);
        }
        argv.extend([
            "--state-dir".to_string(),
            self.state_root.display().to_string(),
            "--environment".to_string(),
            self.environment.clone(),
        ]);
        if let Some(repo) = &self.repository {
            argv.extend(["--repository".to_string(), repo.clone()]);
        }
        if let Some(id) = deployment_id.or(self.deployment_id.as_deref()) {
            argv.extend(["--deployment-id".to_string(), id.to_string()]);
        }
        argv.extend((0..self.verbose).map(|_| "-v".to_string()));
        argv.extend(command.iter().map(|s| s.to_string()));
        Ok(argv)
    }

    /// Flag > input > file for a value that parses from text.
    pub(crate) fn value<T>(&self, name: &str, flag: Option<T>, file: Option<T>) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        if flag.is_some() {
            return Ok(flag);
        }
        if let Some(raw) = input(name) {
            return raw.parse::<T>().map(Some).map_err(|e| {
                Error::usage(format!(
                    "input `{name}` has the value `{}`: {e}",
                    crate::secret::redact(&raw)
                ))
            });
        }
        Ok(file)
    }

    /// Flag > input > file for text.
    pub(crate) fn text(
        &self,
        name: &str,
        flag: Option<String>,
        file: Option<&String>,
    ) -> Option<String> {
        flag.or_else(|| input(name)).or_else(|| file.cloned())
    }

    /// A list: the flag's values (repeated flag) > input (one item per line, blank lines and
    /// `#` comments skipped, as multi-line action inputs are written) > file > empty. Items are
    /// trimmed; empty ones are skipped.
    pub(crate) fn list(
        &self,
        name: &str,
        flag: &[String],
        file: Option<&Vec<String>>,
    ) -> Vec<String> {
        let clean = |items: Vec<String>| {
            items
                .into_iter()
                .map(|item| item.trim().to_string())
                .filter(|item| !item.is_empty())
                .collect::<Vec<_>>()
        };
        if !flag.is_empty() {
            return clean(flag.to_vec());
        }
        if let Some(raw) = input(name) {
            return clean(
                raw.lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                    .map(str::to_string)
                    .collect(),
            );
        }
        clean(file.cloned().unwrap_or_default())
    }

    /// A boolean switch: `--flag` > input (`true`/`false`, as the toolkit's `getBooleanInput`
    /// reads them) > file > default.
    pub(crate) fn switch(
        &self,
        name: &str,
        flag: bool,
        file: Option<bool>,
        default: bool,
    ) -> Result<bool> {
        if flag {
            return Ok(true);
        }
        if let Some(raw) = input(name) {
            return parse_bool(&raw).ok_or_else(|| {
                Error::usage(format!(
                    "input `{name}` has the value `{raw}`: expected `true` or `false`"
                ))
            });
        }
        Ok(file.unwrap_or(default))
    }
}

/// A secret: the `name` input, else the first set environment variable of `env_vars`.
pub(crate) fn secret(name: &str, env_vars: &[&str]) -> Option<Secret> {
    input(name)
        .or_else(|| env_vars.iter().find_map(|var| env(var)))
        .map(Secret::new)
}

/// Every secret shipgate may read, registered for masking before anything is printed.
pub(crate) fn register_known_secrets() {
    const SECRET_INPUTS: &[&str] = &[
        "github-token",
        "database-url",
        "slack-webhook-url",
        "webhook-url",
        "hook-url",
        "rollback-hook-url",
        "target-database-url",
        "verify-database-url",
    ];
    const SECRET_ENV: &[&str] = &[
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "PGPASSWORD",
        "DATABASE_URL",
        "SLACK_WEBHOOK_URL",
        "SLACK_WEBHOOK",
        "SHIPGATE_WEBHOOK_URL",
        "SHIPGATE_HOOK_URL",
        "SHIPGATE_ROLLBACK_HOOK_URL",
    ];
    for name in SECRET_INPUTS {
        if let Some(value) = input(name) {
            crate::secret::register(&value);
        }
    }
    for var in SECRET_ENV {
        if let Some(value) = env(var) {
            crate::secret::register(&value);
        }
    }
}

/// The runner's input variable: `INPUT_` + the name upper-cased with spaces as `_` (hyphens
/// kept); empty and unset are the same (the runner sets declared inputs to `""`). Trimmed, as
/// the toolkit's `getInput` does.
pub(crate) fn input(name: &str) -> Option<String> {
    let var = format!("INPUT_{}", name.replace(' ', "_").to_uppercase());
    env(&var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A non-empty environment variable.
pub(crate) fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// YAML 1.2 core-schema booleans, as the toolkit accepts them.
pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim() {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Names used in paths, keys and artifact names: letters, digits, `.`, `_`, `-`.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with(['.', '-'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{what} `{}` is not valid: use 1-128 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`",
            crate::actions::one_line(value)
        )))
    }
}

fn load_config(explicit: Option<&str>) -> Result<FileConfig> {
    let path = Path::new(explicit.unwrap_or(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "cannot read the config file `{}`: {e}; pass an existing file with `--config`",
                path.display()
            )));
        }
    };
    parse_config(path, &text)
}

/// Parses `shipgate.yml`; errors read `file:line:column: message`.
pub(crate) fn parse_config(path: &Path, text: &str) -> Result<FileConfig> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    parse_yaml(path, text)
}

/// Parses any YAML file shipgate reads (the config, smoke suites); errors read
/// `file:line:column: message`, so a user can jump to the problem.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        match e.location() {
            Some(at) => {
                let (line, column) = refine_location(text, at.line(), at.column(), &message);
                Error::usage(format!("{}:{line}:{column}: {message}", path.display()))
            }
            None => Error::usage(format!("{}: {message}", path.display())),
        }
    })
}

/// serde reports a value that fails to convert (a bad duration inside a map) at the start of
/// the enclosing map. When the message quotes the value in backticks, point at the first line
/// from there on that holds it.
fn refine_location(text: &str, line: usize, column: usize, message: &str) -> (usize, usize) {
    let quoted = message
        .split('`')
        .nth(1)
        .filter(|q| q.len() >= 2 && !q.contains('\n'));
    let Some(quoted) = quoted else {
        return (line, column);
    };
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .find_map(|(i, l)| l.find(quoted).map(|c| (i + 1, c + 1)))
        .unwrap_or((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_config_key_names_file_line_and_key() {
        let text = "environment: production\nvalidate:\n  tag-prefix: v\n  alow-downgrade: true\n";
        let err = parse_config(Path::new("shipgate.yml"), text).expect_err("unknown key");
        let message = err.to_string();
        assert!(message.starts_with("shipgate.yml:4:"), "{message}");
        assert!(message.contains("alow-downgrade"), "{message}");
    }

    #[test]
    fn booleans_as_the_toolkit_reads_them() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("FALSE"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn names_refuse_path_tricks() {
        assert!(check_name("deployment id", "1234-abcdef0").is_ok());
        assert!(check_name("deployment id", "../x").is_err());
        assert!(check_name("deployment id", "a/b").is_err());
        assert!(check_name("deployment id", "-rf").is_err());
        assert!(check_name("deployment id", "").is_err());
    }
}
