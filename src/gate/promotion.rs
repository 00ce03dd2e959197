//! The promotion gate: production receives only what an earlier environment proved. The commit
//! passes when the Deployments API shows it deployed successfully to that environment, its
//! latest outcome there is not a failure, and — with a soak — it has been running there long
//! enough.
//!
//! Reading: `GET …/deployments?sha={sha}&environment={env}` (every deployment of this commit
//! there), then `GET …/deployments/{id}/statuses` for each. Over all their statuses, oldest
//! first:
//! * the newest `success`/`failure`/`error` decides: a failure after a success means the commit
//!   was superseded by a failure there;
//! * the soak runs from the first `success` after the last failure until the newest successful
//!   deployment was marked `inactive` (GitHub's `auto_inactive` does that when another
//!   deployment to the environment succeeds) — or until now while it still runs.

use std::time::Duration;

pub(crate) use crate::state::gate::Promotion;

use crate::error::{Result, ResultExt};
use crate::github::{GitHub, deployments};
use crate::ui::format_duration;

const MAX_DEPLOYMENT_PAGES: usize = 3;

struct Event {
    status_id: u64,
    deployment: u64,
    state: String,
    at: jiff::Timestamp,
}

pub(crate) async fn check(
    github: &GitHub,
    sha: &str,
    environment: &str,
    soak: Option<Duration>,
) -> Result<Promotion> {
    let deployments = deployments::list(github, environment, Some(sha), 100, MAX_DEPLOYMENT_PAGES)
        .await
        .context(format!("cannot list the deployments of `{environment}`"))?;
    let mut events = Vec::new();
    let mut unfinished = None;
    for deployment in &deployments {
        let statuses = deployments::statuses(github, deployment.id)
            .await
            .context(format!(
                "cannot read the statuses of deployment {}",
                deployment.id
            ))?;
        if let Some(newest) = statuses.iter().max_by_key(|s| s.id)
            && matches!(newest.state.as_str(), "queued" | "pending" | "in_progress")
            && unfinished.is_none()
        {
            unfinished = Some((deployment.id, newest.state.clone()));
        }
        for status in statuses {
            if let Ok(at) = status.created_at.parse() {
                events.push(Event {
                    status_id: status.id,
                    deployment: deployment.id,
                    state: status.state,
                    at,
                });
            }
        }
    }
    events.sort_by_key(|e| e.status_id);
    Ok(judge(
        environment,
        crate::text::short_sha(sha),
        deployments.is_empty(),
        unfinished,
        &events,
        soak,
        jiff::Timestamp::now(),
    ))
}

fn judge(
    environment: &str,
    sha: &str,
    never_deployed: bool,
    unfinished: Option<(u64, String)>,
    events: &[Event],
    soak: Option<Duration>,
    now: jiff::Timestamp,
) -> Promotion {
    let mut promotion = Promotion {
        environment: environment.to_string(),
        passed: false,
        reason: String::new(),
        deployment_id: None,
        since: None,
        until: None,
        soaked_seconds: None,
        required_soak_seconds: soak.map(|s| s.as_secs()),
    };
    let decisive = |e: &&Event| matches!(e.state.as_str(), "success" | "failure" | "error");
    let Some(last) = events.iter().rfind(decisive) else {
        promotion.reason = if never_deployed {
            format!("commit `{sha}` was never deployed to `{environment}`; deploy it there first")
        } else if let Some((id, state)) = unfinished {
            promotion.deployment_id = Some(id);
            format!(
                "the deployment of `{sha}` to `{environment}` (deployment {id}) has not finished (`{state}`); promote it once it succeeded there"
            )
        } else {
            format!("commit `{sha}` never deployed successfully to `{environment}`")
        };
        return promotion;
    };
    promotion.deployment_id = Some(last.deployment);
    if last.state != "success" {
        let had_success = events
            .iter()
            .any(|e| e.state == "success" && e.status_id < last.status_id);
        promotion.reason = if had_success {
            format!(
                "commit `{sha}` succeeded in `{environment}` but was superseded by a failure there (deployment {}, `{}` at {}); fix it and redeploy to `{environment}` first",
                last.deployment, last.state, last.at
            )
        } else {
            format!(
                "the latest deployment of `{sha}` to `{environment}` failed (deployment {}, `{}` at {}); it has not proved itself there",
                last.deployment, last.state, last.at
            )
        };
        return promotion;
    }
    let last_failure = events
        .iter()
        .filter(|e| e.state == "failure" || e.state == "error")
        .map(|e| e.status_id)
        .max()
        .unwrap_or(0);
    let since = events
        .iter()
        .find(|e| e.state == "success" && e.status_id > last_failure)
        .map_or(last.at, |e| e.at);
    let until = events
        .iter()
        .find(|e| {
            e.deployment == last.deployment && e.state == "inactive" && e.status_id > last.status_id
        })
        .map(|e| e.at);
    let end = until.unwrap_or(now);
    let soaked = Duration::from_secs(end.duration_since(since).as_secs().max(0) as u64);
    promotion.since = Some(since.to_string());
    promotion.until = until.map(|t| t.to_string());
    promotion.soaked_seconds = Some(soaked.as_secs());
    let running = if until.is_some() {
        "ran"
    } else {
        "has been running"
    };
    match soak {
        Some(needed) if soaked < needed => {
            let when = if until.is_none() {
                let ready = since
                    .checked_add(jiff::SignedDuration::from_secs(needed.as_secs() as i64))
                    .map(|t| format!(" (eligible at {t})"))
                    .unwrap_or_default();
                format!("; promote it later{ready}")
            } else {
                format!(
                    " before it was replaced at {end}; redeploy it to `{environment}` and let it soak"
                )
            };
            promotion.reason = format!(
                "commit `{sha}` {running} in `{environment}` for {} since {since}, less than the required soak of {}{when}",
                format_duration(soaked),
                format_duration(needed)
            );
        }
        _ => {
            promotion.passed = true;
            promotion.reason = format!(
                "commit `{sha}` {running} in `{environment}` for {} since {since} (deployment {})",
                format_duration(soaked),
                last.deployment
            );
        }
    }
    promotion
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    fn ev(id: u64, deployment: u64, state: &str, time: &str) -> Event {
        Event {
            status_id: id,
            deployment,
            state: state.into(),
            at: at(time),
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn soak_counts_until_replaced_or_now() {
        let now = at("2026-01-10T00:00:00Z");
        let events = [
            ev(1, 10, "in_progress", "2026-01-01T00:00:00Z"),
            ev(2, 10, "success", "2026-01-01T00:05:00Z"),
        ];
        let p = judge("staging", "abc", false, None, &events, Some(7 * DAY), now);
        assert!(p.passed, "{}", p.reason);
        let replaced = [
            ev(1, 10, "success", "2026-01-01T00:00:00Z"),
            ev(2, 10, "inactive", "2026-01-03T00:00:00Z"),
        ];
        let p = judge("staging", "abc", false, None, &replaced, Some(7 * DAY), now);
        assert!(!p.passed);
        assert!(
            p.reason.contains("ran in `staging` for 2d since"),
            "{}",
            p.reason
        );
        assert!(p.reason.contains("before it was replaced"), "{}", p.reason);
    }

    #[test]
    fn failures_and_absence_refuse() {
        let now = at("2026-01-10T00:00:00Z");
        let p = judge("staging", "abc", true, None, &[], None, now);
        assert!(p.reason.contains("was never deployed"), "{}", p.reason);
        let superseded = [
            ev(1, 10, "success", "2026-01-01T00:00:00Z"),
            ev(2, 11, "failure", "2026-01-02T00:00:00Z"),
        ];
        let p = judge("staging", "abc", false, None, &superseded, None, now);
        assert!(!p.passed);
        assert!(p.reason.contains("superseded by a failure"), "{}", p.reason);
        let pending = judge(
            "staging",
            "abc",
            false,
            Some((12, "in_progress".into())),
            &[],
            None,
            now,
        );
        assert!(
            pending.reason.contains("has not finished"),
            "{}",
            pending.reason
        );
    }
}
