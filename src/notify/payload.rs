//! The two bodies a notification is sent as: Slack's Block Kit (mrkdwn escaped, dates in each
//! reader's time zone) and a generic JSON webhook.

use serde_json::{Value, json};

use super::message::{Message, title};
use crate::actions;
use crate::state::deployment_record::Record;
use crate::ui::mark::WARN;

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; untrusted text is also made one line.
pub(crate) fn slack_escape(text: &str) -> String {
    actions::one_line(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack's date token, shown in each reader's time zone, with the UTC text as fallback.
pub(crate) fn slack_date(rfc3339: &str) -> String {
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
pub(crate) fn slack_payload(message: &Message) -> Value {
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
            body.push(format!(
                "{WARN} *ACTION REQUIRED*: Manual investigation needed"
            ));
            if let Some(stage) = &message.failed_stage {
                body.push(format!("Failed stage: `{}`", slack_escape(stage)));
            }
            if let Some(error) = &message.error {
                body.push(format!(
                    "Error: {}",
                    slack_escape(&crate::text::truncate(error, 300))
                ));
            }
            if let Some(action) = &message.action_required {
                body.push(slack_escape(&crate::text::truncate(action, 500)));
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

pub(crate) fn webhook_payload(message: &Message, record: Option<&Record>) -> Value {
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
