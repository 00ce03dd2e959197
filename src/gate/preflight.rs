//! The preflight gates `gate` runs before it polls the commit's checks (seed 004 §2
//! "Pre-Deployment Validation", seeds 000–003's go/no-go lists): each optional, each a row in
//! `gate.json`, the summary and the record with a reason naming what it measured. The first to
//! refuse decides; the rest still run, so the summary shows every verdict at once.

use std::time::Duration;

use crate::backup::prune::list_backups;
use crate::error::{Error, Result};
use crate::github::GitHub;
use crate::metrics::alerts::{Api, Selector, firing};
use crate::metrics::prometheus::Client;
use crate::process::Shutdown;
use crate::state::gate::{PreflightRow, PreflightVerdict};
use crate::storage::{Location, Storage};
use crate::ui::format_duration;

use super::endpoint::EndpointGate;
use super::security::{self, SecurityGate};
use super::window::Calendar;

/// An explicit decision to deploy outside the change window.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) by: String,
    pub(crate) reason: String,
}

/// The backup-recency gate (seed 002: "latest successful PostgreSQL backup exists (<24h old,
/// restorable)"): the newest complete backup at a destination, its age and verification.
pub(crate) struct Recency {
    pub(crate) location: Location,
    pub(crate) storage: Storage,
    pub(crate) max_age: Duration,
}

/// The preflight gates turned on, as `gate` resolved them.
#[derive(Default)]
pub(crate) struct Preflight {
    pub(crate) window: Option<Calendar>,
    pub(crate) override_window: Option<Override>,
    pub(crate) recency: Option<Recency>,
    pub(crate) security: Option<SecurityGate>,
    pub(crate) alerts: Option<AlertsGate>,
    pub(crate) endpoints: Vec<EndpointGate>,
}

/// The no-firing-alerts gate (seed 002 "no active Sev-1/Sev-2 incidents", seed 000 "unresolved
/// P0 incident"): alerts matching `selector` firing at the backend refuse the deployment.
pub(crate) struct AlertsGate {
    pub(crate) client: Client,
    pub(crate) api: Api,
    pub(crate) selector: Selector,
    /// The selector as written, for the row.
    pub(crate) text: String,
}

impl Preflight {
    pub(crate) fn is_empty(&self) -> bool {
        self.window.is_none()
            && self.recency.is_none()
            && self.security.is_none()
            && self.alerts.is_none()
            && self.endpoints.is_empty()
    }

    /// Every gate's verdict, in order. A destination that cannot be read is an error (exit 3),
    /// never a pass.
    pub(crate) async fn run(
        &self,
        github: &GitHub,
        now: jiff::Timestamp,
        shutdown: &Shutdown,
    ) -> Result<Vec<PreflightRow>> {
        let mut rows = Vec::new();
        if let Some(calendar) = &self.window {
            rows.push(window_row(calendar, self.override_window.as_ref(), now));
        }
        if let Some(gate) = &self.security {
            rows.push(security::check(github, gate).await?);
        }
        if let Some(alerts) = &self.alerts {
            rows.push(alerts_row(alerts).await?);
        }
        for endpoint in &self.endpoints {
            rows.push(endpoint.row().await?);
        }
        if let Some(recency) = &self.recency {
            rows.push(recency_row(recency, now, shutdown).await?);
        }
        Ok(rows)
    }
}

async fn alerts_row(gate: &AlertsGate) -> Result<PreflightRow> {
    let firing = firing(&gate.client, gate.api, &gate.selector)
        .await
        .map_err(|e| {
            Error::dependency(format!(
                "cannot read the firing alerts from {} ({}): {e}",
                gate.client.label(),
                gate.api.name()
            ))
        })?;
    let (verdict, reason) = if firing.is_empty() {
        (
            PreflightVerdict::Pass,
            format!(
                "no alert matching `{}` is firing at {}",
                gate.text,
                gate.client.label()
            ),
        )
    } else {
        let named: Vec<String> = firing.iter().take(5).map(|a| a.describe()).collect();
        (
            PreflightVerdict::Fail,
            format!(
                "{} alert(s) matching `{}` firing at {}: {}{}",
                firing.len(),
                gate.text,
                gate.client.label(),
                named.join("; "),
                if firing.len() > 5 {
                    format!(" and {} more", firing.len() - 5)
                } else {
                    String::new()
                }
            ),
        )
    };
    Ok(PreflightRow {
        gate: "no-firing-alerts".into(),
        verdict,
        reason,
        measured: Some(format!("{} firing", firing.len())),
        links: Vec::new(),
        override_by: None,
        override_reason: None,
    })
}

async fn recency_row(
    recency: &Recency,
    now: jiff::Timestamp,
    shutdown: &Shutdown,
) -> Result<PreflightRow> {
    let found = list_backups(&recency.storage, &recency.location, shutdown).await?;
    let max = format_duration(recency.max_age);
    let destination = recency.location.display();
    let newest = found.iter().find(|b| b.complete);
    let (verdict, reason, measured, links) = match newest {
        None => (
            PreflightVerdict::Fail,
            format!(
                "no complete backup in `{destination}`{}; run `shipgate backup` first",
                if found.is_empty() {
                    String::new()
                } else {
                    format!(" ({} incomplete)", found.len())
                }
            ),
            None,
            Vec::new(),
        ),
        Some(backup) => {
            let age = Duration::from_secs((now.as_second() - backup.taken).max(0) as u64);
            let shown = format!(
                "`{}` taken {} ({} ago)",
                backup.backup_id,
                backup.timestamp,
                format_duration(age)
            );
            let link = vec![recency.storage.url(&format!("{}.json", backup.backup_id))];
            if age > recency.max_age {
                (
                    PreflightVerdict::Fail,
                    format!(
                        "the newest backup in `{destination}`, {shown}, is older than `max-backup-age` {max}; take a fresh backup before deploying"
                    ),
                    Some(format_duration(age)),
                    link,
                )
            } else if !backup.verified {
                (
                    PreflightVerdict::Fail,
                    format!(
                        "the newest backup in `{destination}`, {shown}, was not verified; it is not known to be restorable (take one with `verify: sha256` or `restore`)"
                    ),
                    Some(format_duration(age)),
                    link,
                )
            } else {
                (
                    PreflightVerdict::Pass,
                    format!("the newest backup, {shown}, is within {max} and verified"),
                    Some(format_duration(age)),
                    link,
                )
            }
        }
    };
    Ok(PreflightRow {
        gate: "backup-recency".into(),
        verdict,
        reason,
        measured,
        links,
        override_by: None,
        override_reason: None,
    })
}

fn window_row(
    calendar: &Calendar,
    overridden: Option<&Override>,
    now: jiff::Timestamp,
) -> PreflightRow {
    let judged = calendar.judge(now);
    let mut row = PreflightRow {
        gate: "change-window".into(),
        verdict: if judged.open {
            PreflightVerdict::Pass
        } else {
            PreflightVerdict::Fail
        },
        reason: judged.reason,
        measured: Some(judged.local_time),
        links: Vec::new(),
        override_by: None,
        override_reason: None,
    };
    if let (PreflightVerdict::Fail, Some(o)) = (row.verdict, overridden) {
        row.verdict = PreflightVerdict::Overridden;
        row.reason = format!(
            "{}; overridden by `{}`: {}",
            row.reason,
            crate::text::one_line(&o.by),
            crate::text::one_line(&o.reason)
        );
        row.override_by = Some(o.by.clone());
        row.override_reason = Some(o.reason.clone());
    }
    row
}
