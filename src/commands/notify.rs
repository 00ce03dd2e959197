//! `shipgate notify` (seed 004 "Notifications"): tells Slack (an incoming webhook, Block Kit) and/or
//! a generic JSON webhook how the deployment ended — version, deployment id, environment, the
//! rollback deadline or the action required, and a link to the run. Webhook URLs are secrets:
//! they come only from inputs or the environment and never appear in any output. A notification
//! that cannot be delivered warns; it fails the step only with `--required`.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::record::{self, Record};
use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::settings::{self, Settings};
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::notify::{Delivery, NotifyFile};
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir};

/// Attempts per destination (transport errors, 429, 5xx).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_secs(2);

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

pub(crate) use crate::record::notify_config::FileConfig;

/// What is announced.
#[derive(Debug, Clone, Serialize)]
struct Message {
    status: String,
    deployment_id: String,
    version: String,
    environment: String,
    environment_url: Option<String>,
    rollback_deadline: Option<String>,
    rollback_window_minutes: Option<u64>,
    failed_stage: Option<String>,
    error: Option<String>,
    action_required: Option<String>,
    backup_id: Option<String>,
    run_url: Option<String>,
    message: Option<String>,
}

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
        record::check_http_url("environment-url", url)?;
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
    let record = match record::load(&state, record_path.as_deref()) {
        Ok((record, _)) => Some(record),
        Err(e) if record_path.is_some() => return Err(e),
        Err(_) => None,
    };
    let mut message = match &record {
        Some(record) => from_record(record),
        None => from_state(&state, settings)?,
    };
    if let Some(status) = status_flag {
        message.status = record::normalize_status(&status)
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

fn from_record(record: &Record) -> Message {
    Message {
        status: record.status.clone(),
        deployment_id: record.deployment_id.clone(),
        version: record.version.clone(),
        environment: record.environment.clone(),
        environment_url: record.environment_url.clone(),
        rollback_deadline: Some(record.rollback_deadline.clone()),
        rollback_window_minutes: Some(record.rollback_window_minutes),
        failed_stage: record.failure.as_ref().map(|f| f.stage.clone()),
        error: record.failure.as_ref().map(|f| f.error.clone()),
        action_required: record.failure.as_ref().map(|f| f.action_required.clone()),
        backup_id: record.database_backup.as_ref().map(|b| b.backup_id.clone()),
        run_url: record
            .run
            .as_ref()
            .and_then(|r| r.url.clone())
            .or_else(record::log_url),
        message: None,
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
        run_url: record::log_url(),
        message: None,
    })
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; untrusted text is also made one line.
fn slack_escape(text: &str) -> String {
    actions::one_line(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn title(message: &Message) -> String {
    let environment = capitalize(&message.environment);
    match message.status.as_str() {
        "success" => format!("✅ {environment} deployment successful"),
        "rolled_back" => format!("↩️ {environment} deployment rolled back"),
        _ => format!("🚨 {environment} deployment FAILED"),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

/// Slack's date token, shown in each reader's time zone, with the UTC text as fallback.
fn slack_date(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(at) => format!(
            "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
            at.as_second(),
            slack_escape(rfc3339)
        ),
        Err(_) => slack_escape(rfc3339),
    }
}

/// The Block Kit message (with `text` as the notification fallback).
fn slack_payload(message: &Message) -> Value {
    let heading = title(message);
    let environment = match &message.environment_url {
        Some(url) => format!(
            "<{}|{}>",
            slack_escape(url),
            slack_escape(&message.environment)
        ),
        None => slack_escape(&message.environment),
    };
    let mut body: Vec<String> = Vec::new();
    match message.status.as_str() {
        "success" => {
            body.push("All services healthy and operational".into());
            if let (Some(minutes), Some(deadline)) =
                (message.rollback_window_minutes, &message.rollback_deadline)
            {
                body.push(format!(
                    "Rollback available for {minutes} minutes, until {}",
                    slack_date(deadline)
                ));
            }
        }
        "rolled_back" => {
            body.push("Production was rolled back to the previous version".into());
        }
        _ => {
            body.push("⚠️ *ACTION REQUIRED*: Manual investigation needed".into());
            if let Some(stage) = &message.failed_stage {
                body.push(format!("Failed stage: `{}`", slack_escape(stage)));
            }
            if let Some(error) = &message.error {
                body.push(format!("Error: {}", slack_escape(&truncate(error, 300))));
            }
            if let Some(action) = &message.action_required {
                body.push(slack_escape(&truncate(action, 500)));
            }
            body.push(match &message.backup_id {
                Some(id) => format!(
                    "Database backup `{}` available for rollback",
                    slack_escape(id)
                ),
                None => "No database backup recorded".into(),
            });
            body.push("Check workflow logs for failure details".into());
        }
    }
    if let Some(extra) = &message.message {
        body.push(slack_escape(extra));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": heading, "emoji": true}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Version:*\n{}", slack_escape(&message.version))},
            {"type": "mrkdwn", "text": format!("*Deployment ID:*\n`{}`", slack_escape(&message.deployment_id))},
            {"type": "mrkdwn", "text": format!("*Environment:*\n{environment}")},
            {"type": "mrkdwn", "text": format!("*Status:*\n{}", slack_escape(&message.status))},
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": body.join("\n")}}),
    ];
    if let Some(url) = &message.run_url {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("<{}|Workflow run> · shipgate", slack_escape(url))}
        ]}));
    }
    json!({
        "text": format!("{heading}: {} ({})", actions::one_line(&message.version), message.deployment_id),
        "blocks": blocks,
    })
}

fn webhook_payload(message: &Message, record: Option<&Record>) -> Value {
    json!({
        "event": "deployment",
        "title": title(message),
        "status": message.status,
        "deployment_id": message.deployment_id,
        "version": message.version,
        "environment": message.environment,
        "environment_url": message.environment_url,
        "rollback_deadline": message.rollback_deadline,
        "rollback_window_minutes": message.rollback_window_minutes,
        "failed_stage": message.failed_stage,
        "error": message.error,
        "action_required": message.action_required,
        "backup_id": message.backup_id,
        "run_url": message.run_url,
        "message": message.message,
        "record": record,
        "sent_at": crate::util::now_rfc3339(),
        "generator": concat!("shipgate ", env!("CARGO_PKG_VERSION")),
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// POSTs `payload` with retries; the URL never reaches an error message.
async fn deliver(
    http: &reqwest::Client,
    destination: &'static str,
    url: &Secret,
    payload: &Value,
) -> Delivery {
    let body = crate::secret::redact(&payload.to_string());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = http
            .post(url.expose())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retry, after, error) = match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::info!("{destination} notification delivered");
                return Delivery {
                    destination: destination.to_string(),
                    delivered: true,
                    attempts: attempt,
                    error: None,
                };
            }
            Ok(response) => {
                let status = response.status();
                let after: Option<u64> = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                let text = response.text().await.unwrap_or_default();
                let said = truncate(&actions::one_line(&crate::github::strip_urls(&text)), 200);
                (
                    status.as_u16() == 429 || status.is_server_error(),
                    after,
                    format!(
                        "the {destination} endpoint answered {}{}",
                        status.as_u16(),
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(" `{said}`")
                        }
                    ),
                )
            }
            Err(e) => (
                true,
                None,
                format!(
                    "cannot reach the {destination} endpoint: {}",
                    crate::secret::redact(&e.without_url().to_string())
                ),
            ),
        };
        if !retry || attempt >= ATTEMPTS {
            return Delivery {
                destination: destination.to_string(),
                delivered: false,
                attempts: attempt,
                error: Some(format!("{error} (after {attempt} attempt(s))")),
            };
        }
        tracing::warn!("{error}; retrying (attempt {attempt} of {ATTEMPTS})");
        let pause = match after {
            Some(secs) => Duration::from_secs(secs.clamp(1, 60)),
            None => FIRST_RETRY * 2u32.pow(attempt - 1),
        };
        tokio::time::sleep(crate::util::retry_delay(pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(status: &str) -> Message {
        Message {
            status: status.into(),
            deployment_id: "123-abcdef0".into(),
            version: "v1.2.3".into(),
            environment: "production".into(),
            environment_url: Some("https://azora.world".into()),
            rollback_deadline: Some("2026-01-01T01:00:00Z".into()),
            rollback_window_minutes: Some(60),
            failed_stage: Some("rollout".into()),
            error: Some("canary <unhealthy> & slow".into()),
            action_required: None,
            backup_id: Some("backup-123".into()),
            run_url: None,
            message: None,
        }
    }

    #[test]
    fn success_message_has_the_seed_lines() {
        let payload = slack_payload(&message("success")).to_string();
        assert!(
            payload.contains("✅ Production deployment successful"),
            "{payload}"
        );
        assert!(
            payload.contains("Rollback available for 60 minutes"),
            "{payload}"
        );
        assert!(
            payload.contains("<https://azora.world|production>"),
            "{payload}"
        );
        assert!(payload.contains("<!date^1767229200^"), "{payload}");
    }

    #[test]
    fn failure_message_escapes_untrusted_text() {
        let payload = slack_payload(&message("failure")).to_string();
        assert!(
            payload.contains("🚨 Production deployment FAILED"),
            "{payload}"
        );
        assert!(payload.contains("ACTION REQUIRED"), "{payload}");
        assert!(
            payload.contains("canary &lt;unhealthy&gt; &amp; slow"),
            "{payload}"
        );
        assert!(
            payload.contains("Database backup `backup-123` available"),
            "{payload}"
        );
    }
}
