//! What `shipgate rollout` tells its reader: the step summary of a rollout (stages, gates,
//! hooks, the rollback), of a `--dry-run` plan, and the message of a failed rollback.

use std::time::Duration;

use super::gates::{Status, Thresholds};
use super::judge::Judged;
use super::metric::Trial;
use super::plan::{Plan, TimelineStage};
use crate::actions::{self, Table};
use crate::hooks::HookRun;
use crate::state::rollout::{Cause, JudgeVerdict, RolloutFile, StageStatus};
use crate::ui::format_duration;
use crate::ui::mark::{ALARM, FAIL, PASS, ROLLED_BACK};

pub(crate) fn dry_run_summary(
    plan: &Plan,
    timeline: &[TimelineStage],
    version: Option<&str>,
    total: Duration,
    trials: &[Trial],
    judged: &Judged,
) -> String {
    let mut table = Table::new(&[
        "Stage",
        "Weight",
        "Duration",
        "Probe every",
        "Starts",
        "Gates",
        "Worst-case exposure",
    ]);
    for (stage, when) in plan.stages.iter().zip(timeline) {
        let ms = |ms: u64| format_duration(Duration::from_millis(ms));
        table.row(&[
            format!("`{}`", stage.name),
            format!("{}%", stage.weight),
            format_duration(stage.duration),
            format_duration(stage.interval),
            if when.after_approval {
                format!("after approval (+{})", ms(when.starts_after_ms))
            } else {
                format!("+{}", ms(when.starts_after_ms))
            },
            gates_text(&stage.thresholds),
            format!(
                "{}% of traffic for up to {}",
                stage.weight,
                ms(when.worst_case_exposure_ms)
            ),
        ]);
    }
    let mut out = format!(
        "### 🧭 Rollout plan for {} (dry run)\n\n{}\nAll stages: {} if every gate passes. Nothing was run",
        version.map_or_else(|| "the next version".to_string(), |v| format!("`{v}`")),
        table.render(),
        format_duration(total)
    );
    out.push_str(if trials.is_empty() && judged.verdicts.is_empty() {
        ".\n"
    } else {
        "; each metric was evaluated once against its backend, now:\n"
    });
    if !trials.is_empty() {
        let mut metrics = Table::new(&["Gate", "Stage", "Value", "Verdict", "Query"]);
        for t in trials {
            metrics.row(&[
                t.gate.clone(),
                format!("`{}`", t.stage),
                t.value
                    .map_or_else(|| "—".to_string(), crate::metrics::condition::number_text),
                format!("{}: {}", t.verdict, actions::one_line(&t.detail)),
                format!("`{}`", actions::one_line(&t.query).replace('`', "'")),
            ]);
        }
        out.push_str(&format!("\n{}", metrics.render()));
    }
    if !judged.verdicts.is_empty() {
        let mut judge = Table::new(&["Test", "Verdict"]);
        for v in &judged.verdicts {
            judge.row(&[v.gate.clone(), actions::one_line(&v.message)]);
        }
        out.push_str(&format!(
            "\nCanary judge's range queries over the last window:\n\n{}",
            judge.render()
        ));
    }
    out
}

fn gates_text(t: &Thresholds) -> String {
    format!(
        "≥ {}% over {}, p95 < {}, {} failures in a row, ≥ {} samples",
        t.success_rate,
        format_duration(t.window),
        format_duration(t.max_p95),
        if t.consecutive_failures == 0 {
            "no limit on".to_string()
        } else {
            format!("< {}", t.consecutive_failures)
        },
        t.min_samples
    )
}

pub(crate) fn rollback_failed_message(record: &RolloutFile, plan: &Plan) -> String {
    let weight = record
        .stages
        .iter()
        .filter(|s| s.status != StageStatus::NotRun)
        .map(|s| s.weight)
        .max()
        .unwrap_or(0);
    let what = match (&record.rollback.hook_ok, &record.rollback.verification) {
        (Some(false), _) if record.rollback.error.is_some() => {
            record.rollback.error.clone().unwrap_or_default()
        }
        (Some(false), _) => format!(
            "the rollback hook failed ({})",
            record
                .hooks
                .last()
                .map(HookRun::describe)
                .unwrap_or_default()
        ),
        (_, Some(verification)) => format!(
            "the rollback hook ran but the service is not healthy: {}",
            verification.detail
        ),
        _ => "the rollback did not complete".to_string(),
    };
    format!(
        "ACT NOW: the automatic rollback of `{}` failed: {what}. Up to {weight}% of traffic may still reach `{}`{}. Shift traffic back by hand (rollback hook: `{}`) and check the health endpoints. The rollout stopped because: {}",
        record.version,
        record.version,
        record
            .previous_version
            .as_ref()
            .map(|p| format!(" instead of `{p}`"))
            .unwrap_or_default(),
        plan.rollback_hook.display(),
        record.reason.as_deref().unwrap_or("")
    )
}

pub(crate) fn summary(record: &RolloutFile, plan: &Plan) -> String {
    let heading = match record.header.result.as_str() {
        "pass" => format!(
            "### {PASS} Rollout of `{}` passed every stage",
            record.version
        ),
        "rolled_back" => format!(
            "### {ROLLED_BACK} Rollout of `{}` rolled back at stage `{}`",
            record.version,
            record.failed_stage.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "### {ALARM} Rollout of `{}` failed at stage `{}` and the ROLLBACK FAILED",
            record.version,
            record.failed_stage.as_deref().unwrap_or("?")
        ),
    };
    let mut out = format!("{heading}\n\n");
    if let Some(reason) = &record.reason {
        out.push_str(&format!("**Why:** {reason}\n\n"));
    }
    if record.header.result == "rollback_failed" {
        out.push_str(&format!(
            "> [!CAUTION]\n> {}\n\n",
            rollback_failed_message(record, plan)
        ));
    }
    let mut table = Table::new(&[
        "Stage",
        "Weight",
        "Duration",
        "Samples",
        "Success rate",
        "p95",
        "Verdict",
    ]);
    for stage in &record.stages {
        let verdict = match stage.status {
            StageStatus::Passed => {
                let mut text = format!("{PASS} passed");
                if stage.degraded > 0 {
                    text.push_str(&format!(" ({} degraded)", stage.degraded));
                }
                text
            }
            StageStatus::Failed => {
                let stopped_here = record.failed_stage.as_deref() == Some(stage.name.as_str());
                let gate = stage
                    .verdicts
                    .iter()
                    .find(|v| matches!(v.status, Status::Fail | Status::NoData))
                    .map(|v| format!("{}: {} (needs {})", v.gate, v.measured, v.threshold));
                let text = match (record.cause, stopped_here, gate) {
                    (Some(Cause::Gate), true, Some(gate)) => gate,
                    (Some(Cause::Dependency), true, Some(gate)) => {
                        format!("metrics backend failed: {gate}")
                    }
                    (Some(Cause::Hook), true, _) => "the stage hook failed".to_string(),
                    (Some(Cause::Signal), true, _) => "cancelled".to_string(),
                    (Some(Cause::Panic), true, _) => "shipgate bug (panic)".to_string(),
                    (Some(Cause::ApprovalDeadline), true, _) => "not approved in time".to_string(),
                    _ => "failed".to_string(),
                };
                format!("{FAIL} {text}")
            }
            _ => "not run".to_string(),
        };
        table.row(&[
            format!("`{}`", stage.name),
            format!("{}%", stage.weight),
            if stage.status == StageStatus::NotRun {
                format!(
                    "— / {}",
                    format_duration(Duration::from_millis(stage.planned_duration_ms))
                )
            } else {
                format!(
                    "{} / {}",
                    format_duration(Duration::from_millis(stage.elapsed_ms)),
                    format_duration(Duration::from_millis(stage.planned_duration_ms))
                )
            },
            stage.samples.to_string(),
            crate::ui::percent_or_none(stage.success_rate),
            crate::ui::latency_or_none(stage.p95_ms),
            verdict,
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&charts(record));
    out.push_str(&judgements_text(record));
    if let Some(failed) = record
        .stages
        .iter()
        .find(|s| s.status == StageStatus::Failed && !s.verdicts.is_empty())
    {
        let mut gates = Table::new(&["Gate", "Measured", "Threshold", "Verdict"]);
        for view in &failed.verdicts {
            gates.row(&[
                view.gate.clone(),
                view.measured.clone(),
                view.threshold.clone(),
                match view.status {
                    Status::Pass => "pass".to_string(),
                    Status::Fail => "**fail**".to_string(),
                    Status::NoData => "no data".to_string(),
                    Status::Ignored => "no data (ignored)".to_string(),
                },
            ]);
        }
        out.push_str(&format!(
            "\nGates of `{}` when it stopped:\n\n{}",
            failed.name,
            gates.render()
        ));
        let queries: Vec<String> = failed
            .verdicts
            .iter()
            .filter_map(|v| {
                v.query.as_ref().map(|q| {
                    format!(
                        "- `{}`: `{}` — {}",
                        v.gate,
                        actions::one_line(q).replace('`', "'"),
                        actions::one_line(&v.message)
                    )
                })
            })
            .collect();
        if !queries.is_empty() {
            out.push_str(&format!("\nMetric gates:\n\n{}\n", queries.join("\n")));
        }
        if !failed.causes.is_empty() {
            let causes: Vec<String> = failed
                .causes
                .iter()
                .take(5)
                .map(|c| format!("{} × {}", c.count, c.cause))
                .collect();
            out.push_str(&format!(
                "\nFailed probes: {}\n",
                actions::one_line(&causes.join(", "))
            ));
        }
    }
    if record.rollback.ran {
        let hook = match (record.rollback.hook_ok, &record.rollback.error) {
            (Some(true), _) => "the rollback hook succeeded".to_string(),
            (_, Some(error)) => format!("**{error}**"),
            _ => format!(
                "the rollback hook **failed** ({})",
                record
                    .hooks
                    .last()
                    .map(HookRun::describe)
                    .unwrap_or_default()
            ),
        };
        let verified = match &record.rollback.verification {
            Some(v) if v.checked && v.ok => format!("; {}", v.detail),
            Some(v) if v.checked => format!("; **{}**", v.detail),
            Some(v) => format!("; {}", v.detail),
            None => String::new(),
        };
        out.push_str(&format!("\n**Rollback:** {hook}{verified}.\n"));
    }
    if !record.hooks.is_empty() {
        let mut hooks = Table::new(&["Hook", "Stage", "Weight", "Attempts", "Result", "Time"]);
        for run in &record.hooks {
            hooks.row(&[
                run.hook.clone(),
                format!("`{}`", run.stage),
                format!("{}%", run.weight),
                run.attempts.len().to_string(),
                if run.ok {
                    "ok".to_string()
                } else {
                    run.describe()
                },
                format_duration(Duration::from_millis(run.duration_ms)),
            ]);
        }
        out.push_str(&format!(
            "\n<details><summary>Hooks ({})</summary>\n\n{}\n</details>\n",
            record.hooks.len(),
            hooks.render()
        ));
    }
    out.push_str(&format!(
        "\nDecision log: {} (every probe, window and verdict).\n",
        actions::log_reference(&record.log_file)
    ));
    out
}

/// A stage's name as a Mermaid label: plain characters only (a name is the user's text and
/// must not end the code fence or the label's quotes).
fn chart_label(name: &str, weight: u8) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    format!("\"{plain} {weight}%\"")
}

/// A number as Mermaid reads it: at most one decimal, no exponent.
fn chart_number(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// Mermaid charts of the stages that were measured: success rate and p95 per stage (bars)
/// against each stage's gate (the line). GitHub draws them in the step summary; elsewhere they
/// read as a short code block.
fn charts(record: &RolloutFile) -> String {
    let measured: Vec<_> = record
        .stages
        .iter()
        .filter(|s| s.status != StageStatus::NotRun && s.success_rate.is_some())
        .collect();
    if measured.is_empty() {
        return String::new();
    }
    let labels = measured
        .iter()
        .map(|s| chart_label(&s.name, s.weight))
        .collect::<Vec<_>>()
        .join(", ");
    let series = |values: Vec<f64>| {
        values
            .into_iter()
            .map(chart_number)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rates: Vec<f64> = measured
        .iter()
        .map(|s| s.success_rate.unwrap_or(0.0))
        .collect();
    let rate_gates: Vec<f64> = measured.iter().map(|s| s.thresholds.success_rate).collect();
    let floor = rates
        .iter()
        .chain(&rate_gates)
        .fold(100.0_f64, |low, v| low.min(*v));
    let floor = ((floor - 1.0).max(0.0) / 5.0).floor() * 5.0;
    let mut out = format!(
        "\n```mermaid\nxychart-beta\n    title \"Success rate per stage (%), the line is the gate\"\n    x-axis [{labels}]\n    y-axis \"%\" {} --> 100\n    bar [{}]\n    line [{}]\n```\n",
        chart_number(floor),
        series(rates),
        series(rate_gates)
    );
    let with_p95: Vec<_> = measured.iter().filter(|s| s.p95_ms.is_some()).collect();
    if !with_p95.is_empty() {
        let labels = with_p95
            .iter()
            .map(|s| chart_label(&s.name, s.weight))
            .collect::<Vec<_>>()
            .join(", ");
        let p95: Vec<f64> = with_p95.iter().map(|s| s.p95_ms.unwrap_or(0.0)).collect();
        let gates: Vec<f64> = with_p95
            .iter()
            .map(|s| s.thresholds.max_p95_ms as f64)
            .collect();
        out.push_str(&format!(
            "\n```mermaid\nxychart-beta\n    title \"p95 latency per stage (ms), the line is the gate\"\n    x-axis [{labels}]\n    bar [{}]\n    line [{}]\n```\n",
            series(p95),
            series(gates)
        ));
    }
    out
}

/// The canary judge's tests of every stage that ran them, with the numbers behind each verdict.
fn judgements_text(record: &RolloutFile) -> String {
    let mut table = Table::new(&[
        "Stage", "Test", "Canary", "Baseline", "Effect", "p", "Samples", "Verdict",
    ]);
    let mut any = false;
    for stage in &record.stages {
        for j in &stage.judgements {
            any = true;
            let value = |v: Option<f64>| match v {
                Some(v) if j.unit == "ms" => format!("{v:.2} ms"),
                Some(v) if j.unit == "%" => crate::ui::percent(v),
                Some(v) => crate::metrics::condition::number_text(v),
                None => "—".to_string(),
            };
            let (what, effect) = match j.test.as_str() {
                "fisher" => (
                    "errors (Fisher's exact)",
                    j.effect
                        .map_or_else(|| "—".to_string(), |e| format!("{:+.2}%", e * 100.0)),
                ),
                "mann-whitney-spread" => (
                    "spread (MAD)",
                    j.effect
                        .map_or_else(|| "—".to_string(), |e| format!("δ {e:.2}")),
                ),
                _ => (
                    "median",
                    j.effect
                        .map_or_else(|| "—".to_string(), |e| format!("δ {e:.2}")),
                ),
            };
            table.row(&[
                format!("`{}`", stage.name),
                format!("{} {what}", j.gate),
                value(j.canary),
                value(j.baseline),
                effect,
                j.p_value.map_or_else(
                    || "—".to_string(),
                    |p| {
                        if p < 0.001 {
                            format!("{p:.1e}")
                        } else {
                            format!("{p:.3}")
                        }
                    },
                ),
                format!("{} / {}", j.canary_samples, j.baseline_samples),
                match j.verdict {
                    JudgeVerdict::Pass => "pass".to_string(),
                    JudgeVerdict::Fail => "**fail**".to_string(),
                    JudgeVerdict::Inconclusive => "inconclusive".to_string(),
                },
            ]);
        }
    }
    if !any {
        return String::new();
    }
    format!(
        "\nCanary judge (canary against baseline; fails when worse with p < α and Cliff's δ ≥ the effect threshold):\n\n{}",
        table.render()
    )
}

/// What `--dry-run` logs: the plan, its probes and hooks, and how long it takes.
pub(crate) fn log_dry_run(
    plan: &Plan,
    version: Option<&str>,
    previous: Option<&str>,
    total: Duration,
) {
    tracing::info!(
        "rollout plan (dry run) for {} (previous {}); nothing is run",
        version.map_or_else(|| "an unknown version".to_string(), actions::quote),
        previous.map_or_else(|| "unknown".to_string(), actions::quote)
    );
    for line in plan.describe() {
        tracing::info!("{line}");
    }
    let labels = |targets: &[crate::rollout::probe::Target]| {
        targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>()
    };
    tracing::info!("canary probes: {}", labels(&plan.canary).join(", "));
    if !plan.baseline.is_empty() {
        tracing::info!("baseline probes: {}", labels(&plan.baseline).join(", "));
    }
    for line in plan.hook_lines() {
        tracing::info!("{line}");
    }
    tracing::info!(
        "all stages take {} if every gate passes{}",
        format_duration(total),
        if plan.stages.iter().any(|s| s.pause) {
            ", plus the waits for approval"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_labels_and_numbers_cannot_break_the_chart() {
        assert_eq!(chart_label("canary", 5), "\"canary 5%\"");
        assert_eq!(
            chart_label("a\"]\n```x", 50),
            "\"a______x 50%\"",
            "quotes, brackets, newlines and fences become `_`"
        );
        assert_eq!(chart_number(99.0), "99");
        assert_eq!(chart_number(99.456), "99.5");
        assert_eq!(chart_number(1e-9), "0");
    }
}
