//! `shipgate smoke` (seed 004 §7 "Smoke Tests", seed 003's smoke list, seeds 000/001's "no
//! critical backlog growth"): a suite of HTTP, database and TCP checks with asserts, captures
//! (login → token → call), readiness retries within a deadline, concurrency, and
//! before/after snapshots; reports as JUnit, a step summary, annotations, `smoke.json` and
//! `smoke-test-logs-<id>.log`.
//!
//! `shipgate smoke --snapshot NAME` runs before the deploy and records the values that the
//! suite's `before` / `growth` asserts compare with afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::exit;
use crate::process::LogFile;
use crate::settings::{self, Settings};
use crate::smoke::report;
use crate::smoke::runner::{self, Context, Status, TestResult};
use crate::smoke::snapshot::{self, SnapshotFile};
use crate::smoke::suite::{self, Overrides, Suite};
use crate::state::smoke::SmokeFile;
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir};
use crate::util::HumanDuration;

/// The suite read when none is named and no `--url` is given.
const DEFAULT_SUITE: &str = ".github/shipgate/smoke.yml";
/// Independent tests in flight at once.
const DEFAULT_CONCURRENCY: usize = 16;
const MAX_CONCURRENCY: usize = 256;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The smoke suite, YAML (input `suite`) [default: .github/shipgate/smoke.yml, if present
    /// and no `--url` is given]
    #[arg(long, value_name = "FILE")]
    pub(crate) suite: Option<PathBuf>,
    /// Also check that URL is healthy (repeatable; input `urls`, one per line): a GET whose
    /// status and health body (IETF, Spring, ASP.NET, `{"status":"healthy"}`) must say healthy
    #[arg(long = "url", value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// Base for relative URLs (input `base-url`) [default: the suite's `base-url`]
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// A variable for `{{NAME}}` in the suite (repeatable; input `vars`, one `NAME=VALUE` per
    /// line). Never a secret: use `--secret` for those
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub(crate) vars: Vec<String>,
    /// A secret variable `{{NAME}}`, read from the input or environment variable NAME, masked
    /// everywhere (repeatable; input `secrets`, names separated by commas or lines)
    #[arg(long = "secret", value_name = "NAME")]
    pub(crate) secrets: Vec<String>,
    /// Independent tests run at once (input `concurrency`) [default: 16]
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// Timeout of one request or check (input `request-timeout`) [default: 10s, or the
    /// suite's `defaults.timeout`]
    #[arg(long, value_name = "DURATION")]
    pub(crate) request_timeout: Option<HumanDuration>,
    /// Retry every test with backoff until it passes or this deadline passes (input
    /// `ready-timeout`) [default: the suite's `ready` settings; else one attempt]
    #[arg(long, value_name = "DURATION")]
    pub(crate) ready_timeout: Option<HumanDuration>,
    /// Before the deploy: record the values the tests with `snapshot: NAME` compare against
    /// (`before`, `growth`) instead of running the suite (input `snapshot`)
    #[arg(long, value_name = "NAME")]
    pub(crate) snapshot: Option<String>,
    /// Also write the JUnit report here (input `junit`) [always written to the state dir as
    /// smoke-junit.xml]
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
}

pub(crate) use crate::smoke::config::FileConfig;

/// Resolved options.
#[derive(Debug)]
struct Options {
    suite: Option<PathBuf>,
    urls: Vec<String>,
    base_url: Option<String>,
    vars: Vec<(String, String)>,
    secret_names: Vec<String>,
    concurrency: usize,
    request_timeout: Option<Duration>,
    ready_timeout: Option<Duration>,
    snapshot: Option<String>,
    junit: Option<PathBuf>,
}

/// A positive duration setting (a zero time limit would fail every test).
fn positive_duration(
    settings: &Settings,
    name: &str,
    flag: Option<HumanDuration>,
    file: Option<HumanDuration>,
) -> Result<Option<Duration>> {
    match settings.optional_duration(name, flag, file)? {
        Some(d) if d.is_zero() => Err(Error::usage(format!(
            "`{name}` is zero; give a positive duration such as `10s`"
        ))),
        other => Ok(other),
    }
}

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let default = FileConfig::default();
        let file = settings.file.smoke.as_ref().unwrap_or(&default);
        let urls = settings.list("urls", &args.urls, Some(&file.urls));
        let suite = args
            .suite
            .clone()
            .or_else(|| settings::input("suite").map(PathBuf::from))
            .or_else(|| file.suite.clone().map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from(DEFAULT_SUITE);
                (urls.is_empty() && default.exists()).then_some(default)
            });
        let raw_vars = if !args.vars.is_empty() {
            args.vars.clone()
        } else {
            settings.list("vars", &[], None)
        };
        let mut vars = Vec::new();
        for raw in raw_vars {
            let Some((name, value)) = raw.split_once('=') else {
                return Err(Error::usage(format!(
                    "variable {} has no `=`: write `NAME=VALUE`",
                    actions::quote(&raw)
                )));
            };
            vars.push((name.trim().to_string(), value.to_string()));
        }
        let secret_names: Vec<String> = if !args.secrets.is_empty() {
            args.secrets.clone()
        } else if let Some(text) = settings::input("secrets") {
            text.split([',', '\n', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            file.secrets.clone()
        };
        let concurrency = settings
            .value("concurrency", args.concurrency, file.concurrency)?
            .unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(Error::usage(format!(
                "concurrency `{concurrency}` is out of range: use 1 to {MAX_CONCURRENCY}"
            )));
        }
        let snapshot = settings.text("snapshot", args.snapshot.clone(), None);
        if let Some(name) = &snapshot {
            settings::check_name("snapshot name", name)?;
        }
        Ok(Options {
            suite,
            urls,
            base_url: settings.text("base-url", args.base_url.clone(), file.base_url.as_ref()),
            vars,
            secret_names,
            concurrency,
            request_timeout: positive_duration(
                settings,
                "request-timeout",
                args.request_timeout,
                file.request_timeout,
            )?,
            ready_timeout: positive_duration(
                settings,
                "ready-timeout",
                args.ready_timeout,
                file.ready_timeout,
            )?,
            snapshot,
            junit: args
                .junit
                .clone()
                .or_else(|| settings::input("junit").map(PathBuf::from)),
        })
    }
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = Options::resolve(args, settings)?;
    // Secrets first: registered (masked) before anything else is printed.
    let mut secrets = Vec::new();
    for name in &options.secret_names {
        if !crate::smoke::template::valid_name(name) {
            return Err(Error::usage(format!(
                "secret name {} is not valid: use letters, digits, `_`, `-` or `.`",
                actions::quote(name)
            )));
        }
        let value = settings::secret(name, &[name]).ok_or_else(|| {
            Error::usage(format!(
                "secret `{name}` is not set: set the environment variable `{name}` (in Actions: `env: {name}: ${{{{ secrets.… }}}}`) or the input `{name}`"
            ))
        })?;
        secrets.push((name.clone(), value));
    }
    let state = StateDir::open(settings)?;
    let mut builtins = vec![
        ("deployment_id".to_string(), state.id().to_string()),
        ("environment".to_string(), settings.environment.clone()),
    ];
    if let Some(validate) = state.load::<ValidateFile>()? {
        builtins.push(("version".to_string(), validate.version));
        builtins.push(("tag".to_string(), validate.tag));
        builtins.push(("sha".to_string(), validate.sha));
    }
    if options.suite.is_none() && options.urls.is_empty() {
        return Err(Error::usage(format!(
            "nothing to test: pass `--suite FILE` (input `suite`), create `{DEFAULT_SUITE}`, or pass `--url URL` (input `urls`)"
        )));
    }
    let overrides = Overrides {
        base_url: options.base_url.clone(),
        vars: options.vars.clone(),
        secrets,
        builtins,
        urls: options.urls.clone(),
        request_timeout: options.request_timeout,
        ready_timeout: options.ready_timeout,
    };
    let suite = suite::load(options.suite.as_deref(), &overrides)?;
    let suite_name = suite
        .file
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "urls".to_string());

    // Which tests run, and the snapshots they compare with: all checked before anything is sent.
    let selected = snapshot::select(&suite, options.snapshot.as_deref())?;
    let snapshots = if options.snapshot.is_some() {
        BTreeMap::new()
    } else {
        snapshot::load(&state, &suite)?
    };

    let log_path = state.path(&format!("smoke-test-logs-{}.log", state.id()));
    let mut log = LogFile::append(&log_path)?;
    log.line(&format!(
        "[{}] shipgate smoke{}: {} tests from {}, concurrency {}",
        crate::util::now_rfc3339(),
        options
            .snapshot
            .as_ref()
            .map(|s| format!(" --snapshot {s}"))
            .unwrap_or_default(),
        selected.iter().filter(|s| **s).count(),
        suite
            .file
            .as_ref()
            .map(|p| format!("`{}`", p.display()))
            .unwrap_or_else(|| "`--url`".into()),
        options.concurrency
    ));
    let ctx = Context::new(
        suite.base_url.clone(),
        suite.vars.clone(),
        log,
        snapshots,
        options.snapshot.clone(),
    )
    .map_err(|e| Error::dependency(format!("cannot set up the HTTP client: {e}")))?;
    let tests = Arc::new(suite.tests.clone());
    let group = actions::group(&match &options.snapshot {
        Some(name) => format!("Smoke snapshot `{name}`"),
        None => format!(
            "Smoke tests: {} in `{}`",
            selected.iter().filter(|s| **s).count(),
            settings.environment
        ),
    });
    let started = Instant::now();
    let timestamp = crate::util::now_rfc3339();
    let results = runner::run_all(Arc::new(ctx), tests, &selected, options.concurrency).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    drop(group);
    let results: Vec<&TestResult> = results.iter().flatten().collect();

    match &options.snapshot {
        Some(name) => finish_snapshot(&state, name, &suite, &results, &timestamp),
        None => finish_run(
            &state,
            settings,
            &options,
            &suite_name,
            &results,
            &log_path,
            duration_ms,
            &timestamp,
        ),
    }
}

fn finish_snapshot(
    state: &StateDir,
    name: &str,
    suite: &Suite,
    results: &[&TestResult],
    timestamp: &str,
) -> Result<Outcome> {
    let failed: Vec<&&TestResult> = results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .collect();
    if !failed.is_empty() {
        report::annotate(results);
        let lines: Vec<String> = failed
            .iter()
            .map(|r| format!("`{}`: {}", r.name, r.failures.join("; ")))
            .collect();
        return Err(Error::gate(format!(
            "snapshot `{name}` was not taken because {} of its tests failed: {}; fix them and take it again",
            failed.len(),
            lines.join(" | ")
        )));
    }
    let values = snapshot::values_of(name, suite, results);
    let file = SnapshotFile {
        schema_version: 1,
        command: "smoke".into(),
        kind: "snapshot".into(),
        name: name.to_string(),
        result: "pass".into(),
        timestamp: timestamp.to_string(),
        deployment_id: state.id().to_string(),
        values,
    };
    let path = state.write_json(&snapshot::file_name(name), &file)?;
    set_outputs(&[
        ("result", "pass".to_string()),
        ("snapshot", path.display().to_string()),
    ])?;
    actions::append_summary(&report::snapshot_summary(&file))?;
    tracing::info!("snapshot `{name}` recorded in `{}`", path.display());
    Ok(Outcome::success(
        serde_json::to_value(&file).unwrap_or_else(|_| json!({})),
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish_run(
    state: &StateDir,
    settings: &Settings,
    options: &Options,
    suite_name: &str,
    results: &[&TestResult],
    log_path: &Path,
    duration_ms: u64,
    timestamp: &str,
) -> Result<Outcome> {
    let passed = report::count(results, Status::Passed);
    let failed = report::count(results, Status::Failed);
    let skipped = report::count(results, Status::Skipped);
    let ok = failed + skipped == 0;
    let junit_text = report::junit(suite_name, results, duration_ms, timestamp);
    let junit_path = state.path("smoke-junit.xml");
    let write = |path: &Path| {
        crate::util::write_atomic(path, junit_text.as_bytes()).map_err(|e| {
            Error::usage(format!(
                "cannot write the JUnit report `{}`: {e}",
                path.display()
            ))
        })
    };
    write(&junit_path)?;
    if let Some(extra) = &options.junit {
        write(extra)?;
    }
    let result = SmokeFile {
        header: Header {
            timestamp: timestamp.to_string(),
            duration_ms: Some(duration_ms),
            ..Header::now::<SmokeFile>(if ok { "pass" } else { "fail" })
        },
        deployment_id: state.id().to_string(),
        environment: settings.environment.clone(),
        suite: options.suite.as_ref().map(|p| p.display().to_string()),
        concurrency: options.concurrency,
        total: results.len(),
        passed,
        failed,
        skipped,
        tests: results.iter().map(|r| (*r).clone()).collect(),
        junit: junit_path.display().to_string(),
        log_file: log_path.display().to_string(),
    };
    state.save(&result)?;
    let failed_names: Vec<&str> = results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .map(|r| r.name.as_str())
        .collect();
    set_outputs(&[
        ("result", result.header.result.clone()),
        ("total", result.total.to_string()),
        ("passed", passed.to_string()),
        ("failed-count", failed.to_string()),
        ("skipped", skipped.to_string()),
        (
            "failed",
            serde_json::to_string(&failed_names).unwrap_or_else(|_| "[]".into()),
        ),
        ("junit", result.junit.clone()),
        ("log-file", result.log_file.clone()),
    ])?;
    actions::append_summary(&report::summary(
        results,
        duration_ms,
        &settings.environment,
    ))?;
    report::annotate(results);
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    if ok {
        tracing::info!(
            "all {} smoke tests passed in {}",
            result.total,
            runner::fmt_ms(duration_ms)
        );
        Ok(Outcome::success(json))
    } else {
        tracing::error!(
            "smoke tests failed: {failed} failed, {skipped} not run, {passed} of {} passed; JUnit in `{}`, log in `{}`",
            result.total,
            result.junit,
            result.log_file
        );
        Ok(Outcome {
            json,
            status: exit::Status::GateFailed,
            text: None,
        })
    }
}
