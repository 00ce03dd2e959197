//! What a notification announces: the deployment's status, version, environment, rollback
//! window or the action required, and the run's link — from the record, or from the state files
//! when there is no record yet.

use serde::Serialize;

use crate::state::deployment_record::Record;
use crate::ui::mark::{ALARM, PASS, ROLLED_BACK};

/// What is announced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    pub(crate) status: String,
    pub(crate) deployment_id: String,
    pub(crate) version: String,
    pub(crate) environment: String,
    pub(crate) environment_url: Option<String>,
    pub(crate) rollback_deadline: Option<String>,
    pub(crate) rollback_window_minutes: Option<u64>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) action_required: Option<String>,
    pub(crate) backup_id: Option<String>,
    pub(crate) run_url: Option<String>,
    pub(crate) message: Option<String>,
}

/// The message of a recorded deployment.
pub(crate) fn from_record(record: &Record) -> Message {
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
            .or_else(crate::actions::run_url),
        message: None,
    }
}

pub(crate) fn title(message: &Message) -> String {
    let environment = capitalize(&message.environment);
    match message.status.as_str() {
        "success" => format!("{PASS} {environment} deployment successful"),
        "rolled_back" => format!("{ROLLED_BACK} {environment} deployment rolled back"),
        _ => format!("{ALARM} {environment} deployment FAILED"),
    }
}

pub(crate) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}
