//! Settings are resolved here and only here: CLI flag > `INPUT_*` environment (as the runner sets
//! it, hyphens kept: `INPUT_DATABASE-URL`) > config file (`shipgate.yml`) > default.
//!
//! Secrets are never read from flags (argv is visible in `ps`) nor from the config file (it is
//! committed): only from `INPUT_*` or the environment.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};
pub(crate) use crate::inputs::{actor, check_name, env, input, parse_bool, parse_yaml, secret};
use crate::util::HumanDuration;

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
    pub(crate) validate: Option<crate::release::config::FileConfig>,
    pub(crate) migrate: Option<crate::migrate::config::FileConfig>,
    pub(crate) gate: Option<crate::gate::config::FileConfig>,
    pub(crate) smoke: Option<crate::smoke::config::FileConfig>,
    pub(crate) record: Option<crate::record::config::FileConfig>,
    pub(crate) rollback: Option<crate::rollback::config::FileConfig>,
    pub(crate) notify: Option<crate::notify::config::FileConfig>,
    pub(crate) rollout: Option<crate::rollout::config::FileConfig>,
    pub(crate) pipeline: Option<crate::pipeline::config::FileConfig>,
    pub(crate) backup: Option<crate::backup::config::FileConfig>,
    pub(crate) lease: Option<crate::lease::config::FileConfig>,
    pub(crate) watch: Option<crate::watch::config::FileConfig>,
}

/// The global flags every command takes (`shipgate --config … <command>`), as clap parsed them;
/// [`Settings::load`] resolves them against inputs and the config file.
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

impl crate::state::StateRoot for Settings {
    fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn deployment_id(&self) -> Option<&str> {
        self.deployment_id.as_deref()
    }
}

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
        let state_root = match global
            .state_dir
            .clone()
            .or_else(|| input("state-dir").map(PathBuf::from))
            .or_else(|| file.state_dir.clone())
        {
            Some(given) => given,
            None => {
                // Not chosen by the user: a link here would send every state file elsewhere.
                let default = PathBuf::from(".shipgate");
                crate::state::refuse_link(&default, "state directory")?;
                default
            }
        };
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

    /// A duration setting, flag > input > file > `default`. The flag and the file value come
    /// parsed (by clap and by the YAML loader, whose errors name the value and its line); the
    /// input is parsed here by the same parser, its error naming the input and its value.
    pub(crate) fn duration(
        &self,
        name: &str,
        flag: Option<HumanDuration>,
        file: Option<HumanDuration>,
        default: std::time::Duration,
    ) -> Result<std::time::Duration> {
        Ok(self.optional_duration(name, flag, file)?.unwrap_or(default))
    }

    /// A duration setting, flag > input > file, or `None` when none is set.
    pub(crate) fn optional_duration(
        &self,
        name: &str,
        flag: Option<HumanDuration>,
        file: Option<HumanDuration>,
    ) -> Result<Option<std::time::Duration>> {
        Ok(self.value(name, flag, file)?.map(|d| d.0))
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

impl Settings {
    /// The hooks a command names (`hooks::resolve`), with `hook-shell`, `hook-timeout` and
    /// `hook-retries` read flag > input > `file` like every other setting.
    pub(crate) fn hooks(
        &self,
        flags: &crate::hooks::Flags<'_>,
        file: crate::hooks::FileKeys<'_>,
    ) -> Result<crate::hooks::Hooks> {
        let limits = crate::hooks::Limits {
            shell: self.switch("hook-shell", flags.shell, file.shell, false)?,
            timeout: self.value("hook-timeout", flags.timeout, file.timeout)?,
            retries: self.value("hook-retries", flags.retries, file.retries)?,
        };
        crate::hooks::resolve(limits, flags, file)
    }
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
        "drill-database-url",
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
        "SHIPGATE_DRILL_DATABASE_URL",
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

fn load_config(explicit: Option<&str>) -> Result<FileConfig> {
    let path = Path::new(explicit.unwrap_or(DEFAULT_CONFIG));
    let text = match crate::inputs::read_text_file(path) {
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

/// GitHub's REST API when `GITHUB_API_URL` does not name another (GHES).
const GITHUB_API: &str = "https://api.github.com";

impl Settings {
    /// The token for GitHub's API: the `github-token` input, else GITHUB_TOKEN / GH_TOKEN.
    pub(crate) fn github_token(&self) -> Option<crate::secret::Secret> {
        secret("github-token", &["GITHUB_TOKEN", "GH_TOKEN"])
    }

    /// The one builder of GitHub clients: the token, the repository (checked) and
    /// `GITHUB_API_URL`. `purpose` says who needs it, in the error when something is missing.
    pub(crate) fn github(&self, purpose: &str) -> Result<crate::github::GitHub> {
        let token = self.github_token().ok_or_else(|| {
            Error::usage(format!(
                "{purpose} needs a token: set the `github-token` input (default `${{{{ github.token }}}}`, with the permissions the command's docs list), or GITHUB_TOKEN / GH_TOKEN"
            ))
        })?;
        self.github_with(&token, purpose)
    }

    /// A GitHub client with a token the caller already has.
    pub(crate) fn github_with(
        &self,
        token: &crate::secret::Secret,
        purpose: &str,
    ) -> Result<crate::github::GitHub> {
        let repo = self.repository.clone().ok_or_else(|| {
            Error::usage(format!(
                "{purpose} needs the repository: pass `--repository owner/name` or set GITHUB_REPOSITORY"
            ))
        })?;
        crate::github::check_repository(&repo)?;
        let api = env("GITHUB_API_URL").unwrap_or_else(|| GITHUB_API.to_string());
        Ok(crate::github::GitHub::new(&api, token, &repo)?)
    }
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
