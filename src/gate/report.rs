//! What a gate run reports: `gate.json` (every check's row, the required set, the promotion
//! gate, the API requests it cost), the one-line reason, the annotations and the step summary.

use std::time::Duration;

use crate::actions::{self, Level, Table};
use crate::error::Result;
use crate::gate::poll::{Decision, Poll, names};
use crate::gate::verdict::{self, Entry, Mode, Requirement, Standing};
use crate::github::GitHub;
use crate::state::gate::{
    CheckResult, CheckRow, GateFile, PreflightRow, PreflightVerdict, Requests, RequiredSet,
};
use crate::state::{Header, StateDir};
use crate::ui::format_duration;
use crate::ui::mark::{FAIL, NOT_APPLICABLE, PASS, PENDING, TIMEOUT, WARN};

/// Failed checks annotated one by one; the rest are summed up in one line.
const MAX_CHECK_ANNOTATIONS: usize = 9;

/// What the report needs besides the poll.
pub(crate) struct Report<'a> {
    pub(crate) environment: &'a str,
    pub(crate) repo: &'a str,
    pub(crate) sha_source: &'static str,
    pub(crate) state: &'a StateDir,
    /// The preflight gates' verdicts (empty when none is turned on).
    pub(crate) preflight: Vec<PreflightRow>,
    pub(crate) poll: Poll<'a>,
}

impl Report<'_> {
    /// Writes `gate.json`, the summary and the annotations, and returns what was written.
    pub(crate) fn finish(&self, github: &GitHub, decision: Decision) -> Result<GateFile> {
        let eval = &self.poll.eval;
        let display = |indexes: &[usize]| -> Vec<String> {
            indexes
                .iter()
                .map(|i| self.poll.entries[*i].display_name())
                .collect()
        };
        let failed = display(&eval.failed);
        let pending = display(&eval.pending);
        let missing = match decision {
            Decision::Missing | Decision::Timeout => eval.missing.clone(),
            _ => Vec::new(),
        };
        let reason = self.reason(decision, &failed, &pending, &missing);
        let stats = github.stats();
        let now = jiff::Timestamp::now();
        let rows: Vec<CheckRow> = self
            .poll
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let required = !eval.not_required.contains(&i);
                let result = if !required {
                    CheckResult::NotRequired
                } else {
                    match entry.standing(&self.poll.options.allowed) {
                        Standing::Passed => CheckResult::Passed,
                        Standing::Failed => CheckResult::Failed,
                        Standing::Pending => CheckResult::Pending,
                    }
                };
                CheckRow {
                    name: entry.name.clone(),
                    source: entry.source,
                    app: entry.app.as_ref().map(|(_, slug)| slug.clone()),
                    status: entry.status.clone(),
                    conclusion: entry.conclusion.clone(),
                    result,
                    required,
                    started_at: entry.started_at.map(|t| t.to_string()),
                    completed_at: entry.completed_at.map(|t| t.to_string()),
                    duration_seconds: entry.started_at.map(|start| {
                        entry
                            .completed_at
                            .unwrap_or(now)
                            .duration_since(start)
                            .as_secs()
                            .max(0) as u64
                    }),
                    url: entry.url.clone(),
                    attempts: entry.attempts,
                }
            })
            .collect();
        let mut allowed_conclusions = vec!["success"];
        if self.poll.options.allowed.neutral {
            allowed_conclusions.push("neutral");
        }
        if self.poll.options.allowed.skipped {
            allowed_conclusions.push("skipped");
        }
        let result = GateFile {
            header: Header::now::<GateFile>(decision.result()),
            reason: reason.clone(),
            deployment_id: self.state.id().to_string(),
            environment: self.environment.to_string(),
            repository: self.repo.to_string(),
            sha: self.poll.sha.to_string(),
            sha_source: self.sha_source.to_string(),
            required: RequiredSet {
                mode: self.poll.required_mode.to_string(),
                branch: self.poll.options.required_from.clone(),
                checks: match &self.poll.mode {
                    Mode::Required(list) => list.iter().map(Requirement::to_state).collect(),
                    Mode::All => Vec::new(),
                },
            },
            allowed_conclusions: allowed_conclusions.into_iter().map(String::from).collect(),
            checks: rows,
            failed: failed.clone(),
            pending: pending.clone(),
            missing: missing.clone(),
            ignored: self.poll.ignored.clone(),
            own_run: self.poll.own.to_state(),
            promotion: self.poll.promotion.clone(),
            preflight: self.preflight.clone(),
            polls: self.poll.polls,
            waited_seconds: self.poll.start.elapsed().as_secs(),
            requests: Requests {
                sent: stats.sent,
                not_modified: stats.not_modified,
                charged: stats.charged(),
                rate_limit_remaining: stats.rate_limit_remaining,
            },
        };
        let path = self.state.save(&result)?;
        self.annotate(decision, &reason);
        actions::append_summary(&self.summary(&result))?;
        match decision {
            Decision::Pass | Decision::PassNoChecks => tracing::info!("{reason}"),
            _ => {}
        }
        tracing::info!(
            "GitHub API: {} request(s), {} charged against the rate limit ({} answered 304 Not Modified); state in `{}`",
            stats.sent,
            stats.charged(),
            stats.not_modified,
            path.display()
        );
        Ok(result)
    }

    fn reason(
        &self,
        decision: Decision,
        failed: &[String],
        pending: &[String],
        missing: &[String],
    ) -> String {
        let sha = crate::text::short_sha(self.poll.sha);
        let waited = format_duration(self.poll.start.elapsed());
        match decision {
            Decision::Pass => format!(
                "{} check(s) passed on commit `{sha}`{}",
                self.poll.eval.passed.len(),
                match &self.poll.mode {
                    Mode::All => " (every check on the commit)".to_string(),
                    Mode::Required(list) => format!(" ({} required)", list.len()),
                }
            ),
            Decision::PassNoChecks => format!(
                "commit `{sha}` has no checks and none is required; passing as `allow-no-checks` says"
            ),
            Decision::Failed => {
                let links: Vec<String> = self
                    .poll
                    .eval
                    .failed
                    .iter()
                    .map(|i| describe_failure(&self.poll.entries[*i], None))
                    .collect();
                format!(
                    "{} check(s) failed on commit `{sha}`: {}; fix or re-run {}, then run the gate again",
                    failed.len(),
                    links.join("; "),
                    if failed.len() == 1 { "it" } else { "them" }
                )
            }
            Decision::Missing => format!(
                "required check(s) {} never appeared on commit `{sha}` within {} (`discovery-timeout`); make sure the workflows that report them run for this commit, or correct `require` / `required-from`",
                names(missing.iter()),
                format_duration(self.poll.options.discovery)
            ),
            Decision::NoChecks => {
                let ignored = if self.poll.ignored.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} left out: {})",
                        self.poll.ignored.len(),
                        names(self.poll.ignored.iter().map(|i| &i.name))
                    )
                };
                format!(
                    "commit `{sha}` has no checks to judge after {waited}{ignored}; a commit nothing has tested is not a pass. Run CI on it, name the checks with `require`, or set `allow-no-checks: true` if that is intended"
                )
            }
            Decision::PreflightRefused => self
                .preflight
                .iter()
                .filter(|r| !r.verdict.passed())
                .map(|r| format!("{} refused: {}", r.gate, r.reason))
                .collect::<Vec<_>>()
                .join("; "),
            Decision::PromotionRefused => self
                .poll
                .promotion
                .as_ref()
                .map(|p| p.reason.clone())
                .unwrap_or_default(),
            Decision::Timeout => {
                let mut text = format!(
                    "timed out after {waited} (`timeout` {}) waiting for commit `{sha}`",
                    format_duration(self.poll.options.timeout)
                );
                if !pending.is_empty() {
                    let detail: Vec<String> = self
                        .poll
                        .eval
                        .pending
                        .iter()
                        .map(|i| {
                            let e = &self.poll.entries[*i];
                            format!(
                                "{} ({})",
                                actions::quote(&e.display_name()),
                                actions::quote(&e.status).trim_matches('`')
                            )
                        })
                        .collect();
                    text.push_str(&format!("; pending: {}", detail.join(", ")));
                }
                if !missing.is_empty() {
                    text.push_str(&format!("; never reported: {}", names(missing.iter())));
                }
                text.push_str("; raise `timeout` or find out why they are slow");
                text
            }
        }
    }

    fn annotate(&self, decision: Decision, reason: &str) {
        match decision {
            Decision::Pass | Decision::PassNoChecks => {}
            Decision::Failed => {
                for i in self.poll.eval.failed.iter().take(MAX_CHECK_ANNOTATIONS) {
                    let entry = &self.poll.entries[*i];
                    actions::annotate(
                        Level::Error,
                        Some(&format!("check failed: {}", entry.display_name())),
                        &describe_failure(entry, Some(crate::text::short_sha(self.poll.sha))),
                    );
                }
                actions::annotate(Level::Error, Some("shipgate gate"), reason);
            }
            _ => actions::annotate(Level::Error, Some("shipgate gate"), reason),
        }
    }

    fn summary(&self, result: &GateFile) -> String {
        let sha = crate::text::short_sha(self.poll.sha);
        let heading = match result.header.result.as_str() {
            "pass" => format!("### {PASS} Checks passed for `{sha}`"),
            "timeout" => format!("### {TIMEOUT} Gate timed out waiting for `{sha}`"),
            _ => format!("### {FAIL} Gate refused `{sha}`"),
        };
        let mut out = format!("{heading}\n\n{}\n\n", result.reason);
        let required = match (&self.poll.mode, &self.poll.options.required_from) {
            (Mode::All, _) => "every check on the commit".to_string(),
            (Mode::Required(list), Some(branch)) if self.poll.required_mode != "listed" => format!(
                "{} check(s): what `{branch}` requires (branch protection and rulesets){}",
                list.len(),
                if self.poll.options.listed.is_empty() {
                    ""
                } else {
                    " plus the `require` list"
                }
            ),
            (Mode::Required(list), _) => format!("{} check(s) from the `require` list", list.len()),
        };
        if self.poll.polls > 0 {
            out.push_str(&format!("- **Required:** {required}\n"));
        }
        for row in &self.preflight {
            out.push_str(&format!(
                "- **Preflight `{}`:** {} {}\n",
                row.gate,
                match row.verdict {
                    PreflightVerdict::Pass => PASS.to_string(),
                    PreflightVerdict::Fail => FAIL.to_string(),
                    PreflightVerdict::Overridden => format!("{WARN} overridden:"),
                    PreflightVerdict::NotEnabled => format!("{NOT_APPLICABLE} not enabled:"),
                },
                row.reason
            ));
        }
        if let Some(promotion) = &self.poll.promotion {
            out.push_str(&format!(
                "- **Promotion from `{}`:** {} {}\n",
                promotion.environment,
                crate::ui::mark::of(promotion.passed),
                promotion.reason
            ));
        }
        if !self.poll.ignored.is_empty() {
            let parts: Vec<String> = self
                .poll
                .ignored
                .iter()
                .map(|i| format!("{} ({})", code(&i.name), i.reason))
                .collect();
            out.push_str(&format!("- **Left out:** {}\n", parts.join(", ")));
        }
        if !result.missing.is_empty() {
            out.push_str(&format!(
                "- **Never reported:** {}\n",
                result
                    .missing
                    .iter()
                    .map(|m| code(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !result.checks.is_empty() {
            let mut table = Table::new(&["Check", "Source", "Result", "Duration", "Link"]);
            for row in &result.checks {
                let icon = match row.result {
                    CheckResult::Passed => PASS,
                    CheckResult::Failed => FAIL,
                    CheckResult::Pending => PENDING,
                    CheckResult::NotRequired => NOT_APPLICABLE,
                };
                let word = row.conclusion.as_deref().unwrap_or(&row.status);
                let result_cell = if row.required {
                    format!("{icon} {word}")
                } else {
                    format!("{icon} {word} (not required)")
                };
                let source = match (&row.source, &row.app) {
                    (verdict::Source::CheckRun, Some(app)) => format!("check run ({app})"),
                    (source, _) => source.label().to_string(),
                };
                let duration = row
                    .duration_seconds
                    .map(|s| {
                        let text = format_duration(Duration::from_secs(s));
                        if row.completed_at.is_some() {
                            text
                        } else {
                            format!("{text} so far")
                        }
                    })
                    .unwrap_or_default();
                let link = row
                    .url
                    .as_deref()
                    .and_then(markdown_link)
                    .unwrap_or_default();
                let name = if row.attempts > 1 && row.source == verdict::Source::CheckRun {
                    format!("{} (attempt {})", code(&row.name), row.attempts)
                } else {
                    code(&row.name)
                };
                table.row(&[name, source, result_cell, duration, link]);
            }
            out.push('\n');
            out.push_str(&table.render());
        }
        out.push_str(&format!(
            "\nWaited {} ({} poll(s)); GitHub API: {} request(s), {} charged against the rate limit, {} answered `304 Not Modified`.\n",
            format_duration(self.poll.start.elapsed()),
            result.polls,
            result.requests.sent,
            result.requests.charged,
            result.requests.not_modified
        ));
        out
    }
}

/// "`lint` (check run) concluded `failure` [on commit abc1234]: <link>", every untrusted part
/// quoted so it stays on one line.
fn describe_failure(entry: &Entry, commit: Option<&str>) -> String {
    format!(
        "{} ({}) concluded {}{}{}",
        actions::quote(&entry.display_name()),
        entry.source.label(),
        actions::quote(entry.result_word()),
        commit
            .map(|c| format!(" on commit {c}"))
            .unwrap_or_default(),
        entry
            .url
            .as_deref()
            .map(|u| format!(": {}", actions::quote(u).trim_matches('`')))
            .unwrap_or_default()
    )
}

/// Untrusted text as a Markdown code span that cannot be broken out of.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

/// `[details](url)` for http(s) links only, with the characters that end a link escaped.
fn markdown_link(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let safe = url
        .replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E");
    Some(format!("[details]({safe})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_http_only_and_escaped() {
        assert_eq!(markdown_link("javascript:alert(1)"), None);
        assert_eq!(
            markdown_link("https://ci.example/x (1)").as_deref(),
            Some("[details](https://ci.example/x%20%281%29)")
        );
    }
}
