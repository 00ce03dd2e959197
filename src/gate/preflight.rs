//! The preflight gates `gate` runs before it polls the commit's checks (seed 004 §2
//! "Pre-Deployment Validation", seeds 000–003's go/no-go lists): each optional, each a row in
//! `gate.json`, the summary and the record with a reason naming what it measured. The first to
//! refuse decides; the rest still run, so the summary shows every verdict at once.

use crate::state::gate::{PreflightRow, PreflightVerdict};

use super::window::Calendar;

/// An explicit decision to deploy outside the change window.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) by: String,
    pub(crate) reason: String,
}

/// The preflight gates turned on, as `gate` resolved them.
#[derive(Debug, Default)]
pub(crate) struct Preflight {
    pub(crate) window: Option<Calendar>,
    pub(crate) override_window: Option<Override>,
}

impl Preflight {
    pub(crate) fn is_empty(&self) -> bool {
        self.window.is_none()
    }

    /// Every gate's verdict, in order.
    pub(crate) fn run(&self, now: jiff::Timestamp) -> Vec<PreflightRow> {
        let mut rows = Vec::new();
        if let Some(calendar) = &self.window {
            rows.push(window_row(calendar, self.override_window.as_ref(), now));
        }
        rows
    }
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
