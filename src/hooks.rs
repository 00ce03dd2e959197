//! Hooks: how shipgate tells the outside world to act — shift traffic to a stage's weight
//! (`rollout`) or send it back to the previous version (`rollout`'s automatic rollback, and
//! `rollback`). A hook is either a command (argv, no shell unless the user asked for one) or a
//! webhook (a POST of a JSON payload); both get the same fields, a timeout per attempt and a
//! bounded number of retries, and everything they do goes into the command's log file.
//!
//! Hooks should be idempotent ("set the canary weight to 5"), because a retry repeats them.
//!
//! Both commands resolve their hooks with [`resolve`] (through `Settings::hooks`, which reads
//! [`Limits`]) from the same inputs (`hook`, `hook-url`, `rollback-hook`, `rollback-hook-url`,
//! `hook-shell`, `hook-timeout`, `hook-retries`) and the same `shipgate.yml` keys, so one
//! configuration serves the automatic rollback and the manual one.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Error;
use crate::process::{self, LogFile, ProcessError, Shutdown, Spec};
use crate::secret::Secret;
pub(crate) use crate::state::hook::{Attempt, HookRun};
use crate::util::HumanDuration;

/// Time limit of one attempt unless `hook-timeout` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts after the first unless `hook-retries` says otherwise.
pub(crate) const DEFAULT_RETRIES: u32 = 2;
const MAX_RETRIES: u32 = 10;

/// The pauses between attempts: 1 s, doubling, up to 30 s.
const BACKOFF: crate::util::Backoff = crate::util::Backoff {
    first: Duration::from_secs(1),
    factor: 2.0,
    max: Duration::from_secs(30),
    jitter: false,
};
/// How much of a webhook's answer is kept in the log.
const WEBHOOK_BODY_KEPT: usize = 2048;

/// What a hook runs.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// argv, run directly (a shell only when the user asked for one: `sh -c <script>`).
    Command(Vec<String>),
    /// A POST of the JSON payload to this URL. Webhook URLs carry their credentials, so the URL
    /// is a secret and never printed.
    Webhook(Secret),
}

/// A configured hook.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    /// `stage hook`, `rollback hook`: how logs and errors name it.
    pub(crate) name: String,
    pub(crate) target: Target,
    /// Per attempt.
    pub(crate) timeout: Duration,
    /// Attempts after the first.
    pub(crate) retries: u32,
}

impl Hook {
    /// The hook for logs and summaries: the command (redacted), or `webhook` (never its URL).
    pub(crate) fn display(&self) -> String {
        match &self.target {
            Target::Command(argv) => crate::secret::redact(&argv.join(" ")),
            Target::Webhook(_) => "webhook (POST, URL hidden)".to_string(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.target {
            Target::Command(_) => "command",
            Target::Webhook(_) => "webhook",
        }
    }

    /// Checks that a command hook's program exists and is executable, so that a typo is a usage
    /// error before any traffic moves rather than a failed rollback later.
    pub(crate) fn check(&self) -> Result<(), String> {
        let Target::Command(argv) = &self.target else {
            return Ok(());
        };
        let Some(program) = argv.first() else {
            return Err(format!("the {} command is empty", self.name));
        };
        if find_program(program) {
            Ok(())
        } else {
            Err(format!(
                "the {} command `{}` is not an executable file{}; check the path (relative paths start from the working directory) or the command name",
                self.name,
                crate::secret::redact(program),
                if program.contains('/') {
                    ""
                } else {
                    " on PATH"
                }
            ))
        }
    }

    /// The same target and limits, named `rollback hook`: what runs to roll back when no
    /// rollback hook is configured (the stage hook, with SHIPGATE_EVENT=rollback and weight 0).
    pub(crate) fn as_rollback(&self) -> Hook {
        Hook {
            name: "rollback hook".to_string(),
            ..self.clone()
        }
    }

    /// The longest one run can take: every attempt timing out, plus the pauses between them.
    pub(crate) fn worst_case(&self) -> Duration {
        let mut total = self.timeout * (self.retries + 1);
        for attempt in 1..=self.retries {
            total += BACKOFF.base(attempt);
        }
        total
    }
}

/// The fields every hook receives: as `SHIPGATE_*` environment variables for a command, as the
/// JSON payload for a webhook.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Context {
    /// `stage` (shift traffic to `weight`) or `rollback` (send all traffic back).
    pub(crate) event: &'static str,
    /// The stage name; `rollback` for a rollback.
    pub(crate) stage: String,
    /// Percent of traffic the new version should get (0 for a rollback).
    pub(crate) weight: u8,
    pub(crate) version: String,
    pub(crate) deployment_id: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) environment: String,
    /// For a rollback: the stage that failed, and why.
    pub(crate) failed_stage: Option<String>,
    pub(crate) reason: Option<String>,
}

impl Context {
    /// The environment a command hook gets (every variable set; empty when unknown).
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SHIPGATE_EVENT", self.event.to_string()),
            ("SHIPGATE_STAGE", self.stage.clone()),
            ("SHIPGATE_WEIGHT", self.weight.to_string()),
            ("SHIPGATE_VERSION", self.version.clone()),
            ("SHIPGATE_DEPLOYMENT_ID", self.deployment_id.clone()),
            (
                "SHIPGATE_PREVIOUS_VERSION",
                self.previous_version.clone().unwrap_or_default(),
            ),
            ("SHIPGATE_ENVIRONMENT", self.environment.clone()),
            (
                "SHIPGATE_FAILED_STAGE",
                self.failed_stage.clone().unwrap_or_default(),
            ),
            ("SHIPGATE_REASON", self.reason.clone().unwrap_or_default()),
        ]
    }
}

/// A command as `shipgate.yml` writes it: one line (split like a shell would, without
/// expansion) or an argv list.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(
    untagged,
    expecting = "a command: one line (`deploy/shift.sh --fast`) or a list of words (`[deploy/shift.sh, --fast]`)"
)]
pub(crate) enum CommandLine {
    Line(String),
    Argv(Vec<String>),
}

/// The hook flags one command was given (`rollback` has no `--hook`: the stage hook reaches it
/// only through the `hook`/`hook-url` inputs and `shipgate.yml`).
#[derive(Debug, Default)]
pub(crate) struct Flags<'a> {
    pub(crate) hook: Option<&'a str>,
    pub(crate) rollback_hook: Option<&'a str>,
    pub(crate) shell: bool,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) retries: Option<u32>,
}

/// The hook keys of a `shipgate.yml` section: `hook`, `rollback-hook` (a [`CommandLine`]),
/// `hook-shell`, `hook-timeout`, `hook-retries`. Webhook URLs are secrets and never come from
/// the file.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FileKeys<'a> {
    pub(crate) hook: Option<&'a CommandLine>,
    pub(crate) rollback_hook: Option<&'a CommandLine>,
    pub(crate) shell: Option<bool>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) retries: Option<u32>,
}

impl<'a> FileKeys<'a> {
    /// Key by key: these keys where set, else `fallback`'s.
    pub(crate) fn or(self, fallback: FileKeys<'a>) -> FileKeys<'a> {
        FileKeys {
            hook: self.hook.or(fallback.hook),
            rollback_hook: self.rollback_hook.or(fallback.rollback_hook),
            shell: self.shell.or(fallback.shell),
            timeout: self.timeout.or(fallback.timeout),
            retries: self.retries.or(fallback.retries),
        }
    }
}

/// The hooks a configuration names: each `None` when not configured. Their programs are not
/// checked here: a command checks the hooks it will run with [`Hook::check`].
#[derive(Debug)]
pub(crate) struct Hooks {
    /// `stage hook`: `hook` / `hook-url` (env SHIPGATE_HOOK_URL).
    pub(crate) stage: Option<Hook>,
    /// `rollback hook`: `rollback-hook` / `rollback-hook-url` (env SHIPGATE_ROLLBACK_HOOK_URL).
    pub(crate) rollback: Option<Hook>,
}

/// `hook-shell`, `hook-timeout` and `hook-retries` as the command read them (flag > input >
/// file: `Settings::hooks`); `None` when not given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) shell: bool,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) retries: Option<u32>,
}

/// The hooks from flags > inputs > `file`, with one timeout and retry count for both
/// (`hook-timeout`, default 2m per attempt; `hook-retries`, default 2) and `hook-shell`
/// (`limits`).
pub(crate) fn resolve(
    limits: Limits,
    flags: &Flags<'_>,
    file: FileKeys<'_>,
) -> Result<Hooks, Error> {
    let shell = limits.shell;
    let timeout = limits.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err(Error::usage("`hook-timeout` must be more than 0"));
    }
    let retries = limits.retries.unwrap_or(DEFAULT_RETRIES);
    if retries > MAX_RETRIES {
        return Err(Error::usage(format!(
            "`hook-retries` is {retries}; use at most {MAX_RETRIES}"
        )));
    }
    let hook = |name: &str, target: Option<Target>| {
        target.map(|target| Hook {
            name: name.to_string(),
            target,
            timeout,
            retries,
        })
    };
    let stage = target_from_inputs(
        "hook",
        flags.hook,
        file.hook,
        "hook-url",
        "SHIPGATE_HOOK_URL",
        shell,
    )?;
    let rollback = target_from_inputs(
        "rollback-hook",
        flags.rollback_hook,
        file.rollback_hook,
        "rollback-hook-url",
        "SHIPGATE_ROLLBACK_HOOK_URL",
        shell,
    )?;
    Ok(Hooks {
        stage: hook("stage hook", stage),
        rollback: hook("rollback hook", rollback),
    })
}

/// The HTTP client webhooks are sent with: no redirects (a redirect would resend the payload
/// elsewhere), a connect timeout, and `timeout` as the default limit of a request (each
/// attempt sets its hook's own).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION"), " (hook)"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            Error::dependency(format!(
                "cannot set up the HTTP client for webhooks: {}",
                describe_http_error(e)
            ))
        })
}

/// A hook's target from its inputs: the command `name` (flag > input > `file`) or the webhook
/// URL, a secret read only from the `url_input` input or the `url_env` variable; both set is a
/// usage error. `None` when neither is set.
fn target_from_inputs(
    name: &str,
    flag: Option<&str>,
    file: Option<&CommandLine>,
    url_input: &str,
    url_env: &str,
    shell: bool,
) -> Result<Option<Target>, Error> {
    let command = match (
        flag.map(str::to_string)
            .or_else(|| crate::inputs::input(name)),
        file,
    ) {
        (Some(line), _) => Some(CommandLine::Line(line)),
        (None, Some(file)) => Some(file.clone()),
        (None, None) => None,
    };
    let url = crate::inputs::secret(url_input, &[url_env]);
    match (command, url) {
        (Some(_), Some(_)) => Err(Error::usage(format!(
            "both a command (`{name}`) and a webhook (`{url_input}`) are set for the {}; keep one",
            name.replace('-', " ")
        ))),
        (Some(command), None) => command
            .argv(shell)
            .map(|argv| Some(Target::Command(argv)))
            .map_err(|e| Error::usage(format!("`{name}`: {e}"))),
        (None, Some(url)) => {
            let parsed = url::Url::parse(url.expose()).map_err(|_| {
                Error::usage(format!(
                    "`{url_input}` is not a URL; give the webhook's full https:// address"
                ))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Error::usage(format!(
                    "`{url_input}` is not an http or https URL"
                )));
            }
            Ok(Some(Target::Webhook(url)))
        }
        (None, None) => Ok(None),
    }
}

impl CommandLine {
    /// argv: a list is taken as is; a line is split like a shell would (without expansion), or
    /// run by `sh -c` when `shell` is set.
    pub(crate) fn argv(&self, shell: bool) -> Result<Vec<String>, String> {
        match self {
            CommandLine::Argv(argv) if argv.is_empty() => Err("the command is empty".into()),
            CommandLine::Argv(_) if shell => {
                Err("`hook-shell` needs the command as one string, not a list".to_string())
            }
            CommandLine::Argv(argv) => Ok(argv.clone()),
            CommandLine::Line(line) if shell => {
                if line.trim().is_empty() {
                    Err("the command is empty".into())
                } else {
                    Ok(vec!["sh".into(), "-c".into(), line.clone()])
                }
            }
            CommandLine::Line(line) => crate::process::split_command(line),
        }
    }
}

impl HookRun {
    /// `exit code 0`, `exit code 3 (2 attempts)`, `timed out after 30s (3 attempts)`.
    pub(crate) fn describe(&self) -> String {
        let last = self
            .attempts
            .last()
            .and_then(|a| a.error.clone())
            .unwrap_or_else(|| match self.attempts.last() {
                Some(Attempt {
                    http_status: Some(status),
                    ..
                }) => format!("answered {status}"),
                Some(Attempt {
                    exit_code: Some(code),
                    ..
                }) => format!("exit code {code}"),
                _ => "no attempt".to_string(),
            });
        match self.attempts.len() {
            0 | 1 => last,
            n => format!("{last} ({n} attempts)"),
        }
    }
}

/// Runs `hook` with `context`: attempts until one succeeds, the retries are used up, the error
/// cannot be fixed by retrying (a missing command, a webhook's 4xx), or `shutdown` fires.
pub(crate) async fn run(
    hook: &Hook,
    context: &Context,
    http: &reqwest::Client,
    log: &mut LogFile,
    shutdown: &Shutdown,
) -> HookRun {
    let started = Instant::now();
    let mut run = HookRun {
        hook: hook.name.clone(),
        kind: hook.kind().to_string(),
        command: match &hook.target {
            Target::Command(_) => Some(hook.display()),
            Target::Webhook(_) => None,
        },
        event: context.event.to_string(),
        stage: context.stage.clone(),
        weight: context.weight,
        ok: false,
        cancelled: false,
        started_at: crate::util::now_rfc3339(),
        duration_ms: 0,
        attempts: Vec::new(),
    };
    let attempts = hook.retries + 1;
    for number in 1..=attempts {
        log.line(&format!(
            "[{}] {} `{}` for stage `{}` (weight {}%): attempt {number} of {attempts}",
            crate::util::now_rfc3339(),
            hook.name,
            hook.display(),
            context.stage,
            context.weight
        ));
        let (attempt, retryable) = match &hook.target {
            Target::Command(argv) => command_attempt(hook, argv, context, log, shutdown).await,
            Target::Webhook(url) => webhook_attempt(hook, url, context, http, log, shutdown).await,
        };
        let ok = attempt.error.is_none();
        log.line(&format!(
            "[{}] {} attempt {number}: {} after {}",
            crate::util::now_rfc3339(),
            hook.name,
            attempt.error.as_deref().unwrap_or("succeeded"),
            crate::ui::format_duration(Duration::from_millis(attempt.duration_ms))
        ));
        run.attempts.push(attempt);
        if ok {
            run.ok = true;
            break;
        }
        if shutdown.received().is_some() {
            run.cancelled = true;
            break;
        }
        if !retryable || number == attempts {
            break;
        }
        let pause = BACKOFF.pause(number, None);
        tracing::warn!(
            "{} failed for stage `{}` ({}); retrying in {}",
            hook.name,
            context.stage,
            run.attempts
                .last()
                .and_then(|a| a.error.clone())
                .unwrap_or_default(),
            crate::ui::format_duration(pause)
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => {
                run.cancelled = true;
                break;
            }
        }
    }
    run.duration_ms = started.elapsed().as_millis() as u64;
    run
}

/// Whether `program` names an executable file: a path as is, a bare name on `PATH`.
fn find_program(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &std::path::Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

async fn command_attempt(
    hook: &Hook,
    argv: &[String],
    context: &Context,
    log: &mut LogFile,
    shutdown: &Shutdown,
) -> (Attempt, bool) {
    let mut spec = Spec::new(format!("{} {}", hook.name, context.stage), argv.to_vec())
        .timeout(Some(hook.timeout));
    for (key, value) in context.env() {
        spec = spec.env(key, value);
    }
    let started = Instant::now();
    match process::run_logged(&spec, Some(log), shutdown.wait()).await {
        Ok(finished) => {
            let error = (!finished.success()).then(|| finished.describe());
            (
                Attempt {
                    exit_code: finished.exit_code,
                    signal: finished.signal,
                    http_status: None,
                    timed_out: finished.timed_out,
                    duration_ms: finished.duration_ms,
                    error,
                    left_processes: finished.left_processes,
                    warning: finished.warning,
                },
                true,
            )
        }
        Err(error) => {
            let retryable = !matches!(error, ProcessError::NotFound { .. });
            (
                Attempt {
                    exit_code: None,
                    signal: None,
                    http_status: None,
                    timed_out: false,
                    duration_ms: started.elapsed().as_millis() as u64,
                    left_processes: false,
                    warning: None,
                    error: Some(error.to_string()),
                },
                retryable,
            )
        }
    }
}

async fn webhook_attempt(
    hook: &Hook,
    url: &Secret,
    context: &Context,
    http: &reqwest::Client,
    log: &mut LogFile,
    shutdown: &Shutdown,
) -> (Attempt, bool) {
    let started = Instant::now();
    let delivery = format!(
        "{}.{}.{}",
        context.deployment_id, context.event, context.stage
    );
    let request = http
        .post(url.expose())
        .timeout(hook.timeout)
        .header("x-shipgate-event", context.event)
        .header("x-shipgate-delivery", delivery)
        .json(context)
        .send();
    let answer = tokio::select! {
        answer = async {
            let response = request.await?;
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        } => answer,
        _ = shutdown.wait() => {
            return (
                Attempt {
                    exit_code: None,
                    signal: None,
                    http_status: None,
                    timed_out: false,
                    duration_ms: started.elapsed().as_millis() as u64,
                    left_processes: false,
                    warning: None,
                    error: Some("was stopped because shipgate was cancelled".to_string()),
                },
                false,
            );
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    match answer {
        Ok((status, body)) => {
            let kept = &body[..body.len().min(WEBHOOK_BODY_KEPT)];
            let text = String::from_utf8_lossy(kept);
            if !text.trim().is_empty() {
                log.line(&format!(
                    "[{}] webhook answered {status}: {}",
                    crate::util::now_rfc3339(),
                    crate::actions::one_line(text.trim())
                ));
            }
            let ok = (200..300).contains(&status);
            let retryable = status >= 500 || status == 408 || status == 429;
            (
                Attempt {
                    exit_code: None,
                    signal: None,
                    http_status: Some(status),
                    timed_out: false,
                    duration_ms,
                    left_processes: false,
                    warning: None,
                    error: (!ok).then(|| format!("the webhook answered {status}")),
                },
                retryable,
            )
        }
        Err(error) => {
            let timed_out = error.is_timeout();
            let reason = describe_http_error(error);
            (
                Attempt {
                    exit_code: None,
                    signal: None,
                    http_status: None,
                    timed_out,
                    duration_ms,
                    left_processes: false,
                    warning: None,
                    error: Some(if timed_out {
                        format!(
                            "the webhook timed out after {}",
                            crate::ui::format_duration(hook.timeout)
                        )
                    } else {
                        format!("cannot reach the webhook: {reason}")
                    }),
                },
                true,
            )
        }
    }
}

/// A reqwest error as one short line without its URL (`connection refused`, `timed out`,
/// `connection closed before a response`), for probes and webhooks alike.
pub(crate) fn describe_http_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut innermost = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    let lower = innermost.to_ascii_lowercase();
    let text = if lower.contains("connection refused") {
        "connection refused".to_string()
    } else if lower.contains("connection closed before message completed")
        || lower.contains("connection reset")
        || lower.contains("broken pipe")
        || lower.contains("unexpected eof")
    {
        format!("connection dropped before a response ({innermost})")
    } else if error.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        innermost
    };
    crate::actions::one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            event: "stage",
            stage: "canary".into(),
            weight: 5,
            version: "1.4.0".into(),
            deployment_id: "1-abcdef0".into(),
            previous_version: None,
            environment: "production".into(),
            failed_stage: None,
            reason: None,
        }
    }

    #[test]
    fn every_variable_is_set() {
        let env = context().env();
        let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        assert_eq!(get("SHIPGATE_WEIGHT").as_deref(), Some("5"));
        assert_eq!(get("SHIPGATE_PREVIOUS_VERSION").as_deref(), Some(""));
        assert_eq!(get("SHIPGATE_STAGE").as_deref(), Some("canary"));
    }

    #[test]
    fn worst_case_counts_every_attempt_and_pause() {
        let hook = Hook {
            name: "stage hook".into(),
            target: Target::Command(vec!["true".into()]),
            timeout: Duration::from_secs(60),
            retries: 2,
        };
        assert_eq!(hook.worst_case(), Duration::from_secs(180 + 1 + 2));
        let webhook = Hook {
            target: Target::Webhook(Secret::new("https://hooks.example/T0/very-secret-token")),
            ..hook
        };
        assert!(!webhook.display().contains("very-secret-token"));
        assert!(webhook.check().is_ok());
    }

    #[test]
    fn missing_programs_are_caught_before_running() {
        let hook = |program: &str| Hook {
            name: "stage hook".into(),
            target: Target::Command(vec![program.into(), "--weight".into()]),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        assert!(hook("sh").check().is_ok());
        assert!(hook("/bin/sh").check().is_ok());
        let error = hook("./no-such-shift.sh").check().expect_err("missing");
        assert!(
            error.contains("`./no-such-shift.sh` is not an executable file;"),
            "{error}"
        );
        assert!(
            hook("shipgate-no-such-hook")
                .check()
                .expect_err("missing")
                .contains("on PATH")
        );
    }

    #[tokio::test]
    async fn retries_until_the_command_succeeds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let counter = dir.path().join("count");
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; test $n -ge 2",
            c = counter.display()
        );
        let hook = Hook {
            name: "stage hook".into(),
            target: Target::Command(vec!["sh".into(), "-c".into(), script]),
            timeout: Duration::from_secs(10),
            retries: 2,
        };
        let mut log = LogFile::append(&dir.path().join("log")).expect("log");
        let http = reqwest::Client::new();
        // One pause of a second between the attempts (SHIPGATE_RETRY_SCALE is unset here).
        let run = run(&hook, &context(), &http, &mut log, &Shutdown::never()).await;
        assert!(run.ok, "{run:?}");
        assert_eq!(run.attempts.len(), 2);
        assert_eq!(run.attempts[0].exit_code, Some(1));
        assert_eq!(run.attempts[1].exit_code, Some(0));
    }

    #[tokio::test]
    async fn a_missing_command_is_not_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        let hook = Hook {
            name: "stage hook".into(),
            target: Target::Command(vec!["shipgate-no-such-hook".into()]),
            timeout: Duration::from_secs(10),
            retries: 3,
        };
        let mut log = LogFile::append(&dir.path().join("log")).expect("log");
        let run = run(
            &hook,
            &context(),
            &reqwest::Client::new(),
            &mut log,
            &Shutdown::never(),
        )
        .await;
        assert!(!run.ok);
        assert_eq!(run.attempts.len(), 1);
        assert!(run.describe().contains("not found"), "{}", run.describe());
    }
}
