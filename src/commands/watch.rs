//! `shipgate watch` (seeds 000/003/004: watch the first 60 minutes after a rollout, a check every
//! 5 minutes; seed 002: "no sustained alert ... for 30 minutes after full rollout"): after a
//! successful rollout, watches the rollout's probes and metric gates (alerts included) for
//! `--for` at `--interval`, never past the record's rollback deadline. A breach rolls back as
//! `shipgate rollback` does (hook, database restore only when asked, health), marks the record
//! rolled back with the breach, announces it through `shipgate notify` and exits 1. A clean
//! window exits 0 and marks the record watched; SIGTERM/SIGINT ends the watch without rolling
//! back and exits 4. A re-run continues an interrupted watch and changes nothing after one that
//! ended.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, rollback, rollout, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::exit;
use crate::rollback::run as rolling;
use crate::rollout::plan::Plan;
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::rollout::RolloutFile;
use crate::state::watch::WatchFile;
use crate::ui::format_duration;
use crate::ui::mark::{ALARM, PASS, ROLLED_BACK, STOPPED};
use crate::util::HumanDuration;
use crate::watch::config::FileConfig;
use crate::watch::run::{self as watching, Options, Outside};

/// Seed 000/004: the first 60 minutes, a check every 5 minutes.
const DEFAULT_FOR: Duration = Duration::from_secs(60 * 60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How long to watch after the rollout (input `watch-for`; `watch.for` in shipgate.yml)
    /// [default: 60m]; never past the record's rollback deadline
    #[arg(long = "for", value_name = "DURATION")]
    pub(crate) duration: Option<HumanDuration>,
    /// Time between two checks: each probe target is probed, each metric gate measured (input
    /// `watch-interval`; `watch.interval`) [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) interval: Option<HumanDuration>,
    /// On a breach, also restore the database from the deployment's backup (input
    /// `restore-database`; `watch.restore-database`); writes made since the backup are lost
    #[arg(long)]
    pub(crate) restore_database: bool,
    /// The deployment record (input `record`) [default: the state dir's
    /// `deployment-record-<id>.json`]
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let default = FileConfig::default();
    let file = settings.file.watch.as_ref().unwrap_or(&default);
    let options = Options {
        duration: settings.duration("watch-for", args.duration, file.duration, DEFAULT_FOR)?,
        interval: settings.duration(
            "watch-interval",
            args.interval,
            file.interval,
            DEFAULT_INTERVAL,
        )?,
        versions: None,
    };
    if options.duration.is_zero() {
        return Err(Error::usage(
            "`--for` (input `watch-for`) is 0: give the watch a window, e.g. `60m`",
        ));
    }
    if options.interval < MIN_INTERVAL {
        return Err(Error::usage(format!(
            "`--interval` (input `watch-interval`) is too short: use at least `{}`",
            format_duration(MIN_INTERVAL)
        )));
    }
    let restore_database = settings.switch(
        "restore-database",
        args.restore_database,
        file.restore_database,
        false,
    )?;
    // What is watched: the rollout's probes and metric gates, as `shipgate rollout` reads them.
    let mut plan = Plan::resolve(rollout::plan_inputs(&rollout::Args::default(), settings)?)?;
    // The canary judge compares the canary with the baseline while both serve; after a full
    // rollout there is no baseline traffic left to compare with, so the watch leaves it out.
    plan.judge = None;
    if plan.canary.is_empty() && plan.metrics.is_empty() {
        return Err(Error::usage(
            "nothing to watch: configure the rollout's endpoints (input `endpoints`, `rollout.endpoints`), probes or metric gates (`rollout.metrics`, `rollout.alerts`)",
        ));
    }
    // How a breach rolls back: as `shipgate rollback` does, with its inputs and `rollback:`.
    let rollback_args = rollback::Args {
        record: args.record.clone(),
        restore_database,
        ..rollback::Args::default()
    };
    let mut resolved = rollback::Options::resolve(&rollback_args, settings)?;
    resolved.run.restore_database = restore_database;
    if resolved.run.health_urls.is_empty() {
        // Health after the rollback: the rollout's verify endpoints, as its own rollback checks.
        resolved.run.health_urls = plan
            .verify
            .iter()
            .filter_map(|t| match &t.probe {
                crate::rollout::probe::Probe::Http { url } => Some(url.clone()),
                crate::rollout::probe::Probe::Command { .. } => None,
            })
            .collect();
    }
    if resolved.run.hook.is_none() && !restore_database {
        return Err(Error::usage(
            "a breach could not be rolled back: set the rollback hook (input `rollback-hook` or `hook`, `rollback-hook` or `hook` in shipgate.yml's `rollout:` section) and/or `--restore-database`; nothing was changed",
        ));
    }
    let (state, mut record, record_path) = rollback::open(settings, resolved.record.as_deref())?;

    let previous: Option<WatchFile> = state.load()?;
    if let Some(previous) = &previous
        && let Some(outcome) = already_ended(&state, previous)?
    {
        return Ok(outcome);
    }
    if record.status != "success" {
        return Err(Error::usage(format!(
            "deployment `{}` has status `{}` in its record: only a successful deployment is watched; nothing was changed",
            record.deployment_id, record.status
        )));
    }
    let rollout = state.load::<RolloutFile>()?;
    if let Some(rollout) = &rollout
        && rollout.header.result != "pass"
    {
        return Err(Error::usage(format!(
            "the rollout of deployment `{}` ended `{}` (`rollout.json`): only a successful rollout is watched; nothing was changed",
            record.deployment_id, rollout.header.result
        )));
    }
    // The metric gates are templated as the rollout templated them: its `{{version}}` is the
    // release's SemVer (`2.0.0`), the record's is the tag (`v2.0.0`).
    let options = Options {
        versions: rollout.map(|r| (r.version, r.previous_version)),
        ..options
    };

    let restore_argv = |id: &str, location: &str| {
        settings.shipgate_argv(Some(id), &["restore", "--location", location, "--yes"])
    };
    let github = || settings.github("marking the GitHub deployment");
    let notify_argv = |id: &str, command: &[&str]| settings.shipgate_argv(Some(id), command);
    let outside = Outside {
        rollback: rolling::Outside {
            restore_argv: &restore_argv,
            github: &github,
            actor: settings::actor(),
        },
        notify_argv: &notify_argv,
    };
    let watched = watching::run(
        &state,
        &plan,
        &options,
        &mut record,
        &record_path,
        previous.filter(|p| matches!(p.header.result.as_str(), "in_progress" | "cancelled")),
        &resolved.run,
        &outside,
    )
    .await?;
    let mut error = None;
    if let Some(finished) = watched.rollback {
        rollback::finish(
            &state,
            finished.result,
            started,
            &finished.status,
            finished.incident.as_deref(),
        )?;
        error = finished.error;
    }
    let outcome = report(&watched.file)?;
    match error {
        Some(error) => Err(error.context(format!(
            "the watch of deployment `{}` saw a breach and the rollback did not finish",
            watched.file.deployment_id
        ))),
        None => Ok(outcome),
    }
}

/// A re-run after a watch that ended: nothing to do, the same exit status.
fn already_ended(state: &StateDir, previous: &WatchFile) -> Result<Option<Outcome>> {
    if matches!(previous.header.result.as_str(), "in_progress" | "cancelled") {
        return Ok(None);
    }
    tracing::info!(
        "the watch of deployment `{}` already ended `{}` at {}; nothing to do",
        state.id(),
        previous.header.result,
        previous.header.timestamp
    );
    report(previous).map(Some)
}

/// Outputs, summary and exit status of a watch.
fn report(file: &WatchFile) -> Result<Outcome> {
    let breach = file.breach.as_ref();
    set_outputs(&[
        ("result", file.header.result.clone()),
        (
            "reason",
            breach.map(|b| b.reason.clone()).unwrap_or_default(),
        ),
    ])?;
    actions::append_summary(&summary(file))?;
    let status = match file.header.result.as_str() {
        "pass" => exit::Status::Success,
        "rolled_back" => exit::Status::GateFailed,
        "cancelled" => exit::Status::Timeout,
        _ => exit::Status::RollbackFailed,
    };
    let json = serde_json::to_value(file).unwrap_or_else(|_| json!({}));
    Ok(Outcome {
        json,
        status,
        text: None,
    })
}

fn summary(file: &WatchFile) -> String {
    let head = match file.header.result.as_str() {
        "pass" => format!("{PASS} Watched"),
        "rolled_back" => format!("{ROLLED_BACK} Breach during the watch: rolled back"),
        "cancelled" => format!("{STOPPED} Watch cancelled (nothing rolled back)"),
        _ => format!("{ALARM} Breach during the watch: ROLLBACK FAILED"),
    };
    let mut text = format!(
        "### {head}: `{}` (deployment `{}`)\n\nWindow from {} to {}{}, a check every {}; {} probes, {} metric measurements.\n",
        file.version,
        file.deployment_id,
        file.started_at,
        file.ends_at,
        if file.capped_by_deadline {
            " (cut at the rollback deadline)"
        } else {
            ""
        },
        format_duration(Duration::from_millis(file.interval_ms)),
        file.samples,
        file.measurements
    );
    if let Some(breach) = &file.breach {
        text.push_str(&format!(
            "\n**Breach** (`{}`, {}): {}\n",
            breach.gate,
            breach.at,
            actions::one_line(&breach.reason)
        ));
    }
    if let Some(signal) = &file.cancelled_by {
        text.push_str(&format!(
            "\nCancelled by {signal}; run `shipgate watch` again to continue until {}.\n",
            file.ends_at
        ));
    }
    if !file.verdicts.is_empty() {
        let mut table = actions::Table::new(&["gate", "status", "measured", "needs"]);
        for v in &file.verdicts {
            table.row(&[
                v.gate.clone(),
                format!("{:?}", v.status),
                v.measured.clone(),
                v.threshold.clone(),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}
