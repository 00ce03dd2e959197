//! `shipgate notify` (seed 004 "Notifications"): tells Slack (an incoming webhook, Block Kit) and/or
//! a generic JSON webhook how the deployment ended — version, deployment id, environment, the
//! rollback deadline or the action required, and a link to the run. Webhook URLs are secrets:
//! they come only from inputs or the environment and never appear in any output. A notification
//! that cannot be delivered warns; it fails the step only with `--required`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::inputs::check_http_url;
use crate::notify::deliver::deliver;
use crate::notify::message::{Message, from_record};
use crate::notify::payload::{slack_payload, webhook_payload};
use crate::record::assemble::normalize_status;
use crate::record::model::load;
use crate::secret::Secret;
use crate::settings::{self, Settings};
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::notify::NotifyFile;
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How the deployment ended: `success`, `failure`, `cancelled` or `rolled_back` (input
    /// `status`) [default: the record's status]
    #[arg(long, value_name = "STATUS")]
    pub(crate) status: Option<String>,
    /// Fail (exit 3) when a notification cannot be delivered (input `notify-required`)
    #[arg(long)]
    pub(crate) required: bool,
    /// An extra line for the message (input `message`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) message: Option<String>,
    /// The deployment record to announce (input `record`) [default: the state dir's]
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<std::path::PathBuf>,
    /// URL of the deployed environment (input `environment-url`) [default: the record's]
    #[arg(long, value_name = "URL")]
    pub(crate) environment_url: Option<String>,
}

pub(crate) use crate::notify::config::FileConfig;

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let default = FileConfig::default();
    let file = settings.file.notify.as_ref().unwrap_or(&default);
    let required = settings.switch("notify-required", args.required, file.required, false)?;
    let slack = settings::secret("slack-webhook-url", &["SLACK_WEBHOOK_URL", "SLACK_WEBHOOK"]);
    let webhook = settings::secret("webhook-url", &["SHIPGATE_WEBHOOK_URL"]);
    for (input, secret) in [("slack-webhook-url", &slack), ("webhook-url", &webhook)] {
        if let Some(secret) = secret {
            check_webhook(input, secret)?;
        }
    }
    let status_flag = settings.text("status", args.status.clone(), None);
    let environment_url = settings.text("environment-url", args.environment_url.clone(), None);
    if let Some(url) = &environment_url {
        check_http_url("environment-url", url)?;
    }
    let extra = settings
        .text("message", args.message.clone(), file.message.as_ref())
        .map(|m| actions::one_line(&m));
    let record_path = settings
        .text(
            "record",
            args.record.as_ref().map(|p| p.display().to_string()),
            None,
        )
        .map(std::path::PathBuf::from);

    let state = match &record_path {
        // A record given as a file names its deployment; its state may not be here yet.
        Some(_) => StateDir::open(settings)?,
        None => StateDir::existing(settings)?,
    };
    let record = match load(&state, record_path.as_deref()) {
        Ok((record, _)) => Some(record),
        Err(e) if record_path.is_some() => return Err(e),
        Err(_) => None,
    };
    let mut message = match &record {
        Some(record) => from_record(record),
        None => from_state(&state, settings)?,
    };
    if let Some(status) = status_flag {
        message.status = normalize_status(&status)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::usage(format!(
                    "status {} is not one of `success`, `failure`, `cancelled`, `rolled_back`",
                    actions::quote(&status)
                ))
            })?;
    }
    if message.status.is_empty() {
        return Err(Error::usage(
            "no status to announce: run `shipgate record` first, or pass `--status success|failure` (input `status`)",
        ));
    }
    if environment_url.is_some() {
        message.environment_url = environment_url;
    }
    message.message = extra;

    let mut deliveries = Vec::new();
    if slack.is_none() && webhook.is_none() {
        if required {
            return Err(Error::usage(
                "`notify-required` is set but no destination is configured: set the `slack-webhook-url` input (or SLACK_WEBHOOK_URL) and/or `webhook-url`",
            ));
        }
        tracing::info!(
            "no notification destination configured (`slack-webhook-url`, `webhook-url`): nothing sent"
        );
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20))
        .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::dependency(format!("cannot set up HTTP: {}", e.without_url())))?;
    if let Some(url) = &slack {
        deliveries.push(deliver(&http, "slack", url, &slack_payload(&message)).await);
    }
    if let Some(url) = &webhook {
        deliveries.push(
            deliver(
                &http,
                "webhook",
                url,
                &webhook_payload(&message, record.as_ref()),
            )
            .await,
        );
    }

    let failed: Vec<String> = deliveries
        .iter()
        .filter(|d| !d.delivered)
        .map(|d| {
            format!(
                "the {} notification was not delivered: {}",
                d.destination,
                d.error.as_deref().unwrap_or("unknown error")
            )
        })
        .collect();
    for text in &failed {
        let level = if required {
            actions::Level::Error
        } else {
            actions::Level::Warning
        };
        actions::annotate(level, Some("shipgate notify"), text);
    }
    let result = if deliveries.is_empty() {
        "skipped"
    } else if failed.is_empty() {
        "pass"
    } else {
        "fail"
    };
    let outcome = NotifyFile {
        header: Header {
            duration_ms: Some(started.elapsed().as_millis() as u64),
            ..Header::now::<NotifyFile>(result)
        },
        deployment_id: message.deployment_id.clone(),
        status: message.status.clone(),
        deliveries,
    };
    state.save(&outcome)?;
    let delivered: Vec<&str> = outcome
        .deliveries
        .iter()
        .filter(|d| d.delivered)
        .map(|d| d.destination.as_str())
        .collect();
    set_outputs(&[
        ("result", result.to_string()),
        ("delivered", delivered.join(",")),
    ])?;
    let mut summary = format!(
        "### 📣 Notification for `{}` ({})\n\n",
        message.deployment_id, message.status
    );
    for delivery in &outcome.deliveries {
        summary.push_str(&format!(
            "- {}: {}\n",
            delivery.destination,
            if delivery.delivered {
                format!("delivered ({} attempt(s))", delivery.attempts)
            } else {
                format!(
                    "**not delivered**: {}",
                    delivery.error.as_deref().unwrap_or("unknown error")
                )
            }
        ));
    }
    if outcome.deliveries.is_empty() {
        summary.push_str("- no destination configured\n");
    }
    actions::append_summary(&summary)?;
    if required && !failed.is_empty() {
        return Err(Error::dependency(format!(
            "{} notification(s) not delivered and `notify-required` is set",
            failed.len()
        )));
    }
    let json = serde_json::to_value(&outcome).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

/// A webhook URL must be http(s); the value itself is never shown. Its path (Slack's token) is
/// registered as a secret of its own, in case a library prints a path without the host.
fn check_webhook(input: &str, url: &Secret) -> Result<()> {
    match url::Url::parse(url.expose()) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            if parsed.path().len() > 8 {
                crate::secret::register(parsed.path());
            }
            Ok(())
        }
        _ => Err(Error::usage(format!(
            "the `{input}` input is not an http(s) URL (value hidden: it is a secret); use the webhook URL Slack or the service gave you"
        ))),
    }
}

/// Without a record (notify before or instead of `record`): what `validate` and `backup` left.
fn from_state(state: &StateDir, settings: &Settings) -> Result<Message> {
    let validate: Option<ValidateFile> = state.load().ok().flatten();
    let backup: Option<BackupFile> = state.load().ok().flatten();
    Ok(Message {
        status: String::new(),
        deployment_id: state.id().to_string(),
        version: validate
            .map(|v| if v.tag.is_empty() { v.version } else { v.tag })
            .unwrap_or_else(|| "unknown".into()),
        environment: settings.environment.clone(),
        environment_url: None,
        rollback_deadline: None,
        rollback_window_minutes: None,
        failed_stage: None,
        error: None,
        action_required: None,
        backup_id: backup.as_ref().and_then(|b| match &b.outcome {
            BackupOutcome::Taken(taken) => Some(taken.backup_id.clone()),
            BackupOutcome::Failed(failed) => failed.backup_id.clone(),
        }),
        run_url: crate::actions::run_url(),
        message: None,
    })
}
