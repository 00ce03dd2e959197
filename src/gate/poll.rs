//! The gate's poll loop: the required set ([`requirements`]), then polls of the commit's checks
//! until the verdict decides, the timeout passes or GitHub stays unreachable. Polling is polite:
//! jittered interval, conditional requests, exponential pauses after failed polls and a slower
//! pace when the rate limit runs low. `commands::gate` resolves the options and reports.

use std::time::{Duration, Instant};

use crate::actions::{self, Level};
use crate::error::{Kind, Result};
use crate::github::{GitHub, Stats};
use crate::ui::format_duration;

use super::checks::{self, Ignored};
use super::own_run::OwnRun;
use super::promotion::Promotion;
use super::required;
use super::verdict::{self, Allowed, Entry, Evaluation, Mode, Origin, Pattern, Requirement};

/// Polls that may fail in a row (each after the adapter's own retries) before the gate gives up.
const MAX_FAILED_POLLS: u32 = 3;
/// Below this many requests left in the rate-limit window, the gate polls four times slower.
const LOW_RATE_LIMIT: u64 = 100;
/// A progress line at least this often, even when nothing changed.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// The gate's rules, as `gate` resolved them.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) listed: Vec<Pattern>,
    pub(crate) required_from: Option<String>,
    pub(crate) ignore: Vec<Pattern>,
    pub(crate) allowed: Allowed,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) discovery: Duration,
    pub(crate) require_environment: Option<String>,
    pub(crate) soak: Option<Duration>,
    pub(crate) allow_no_checks: bool,
}

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Pass,
    /// Nothing to judge and nothing required, accepted by `allow-no-checks`.
    PassNoChecks,
    Failed,
    Missing,
    NoChecks,
    PromotionRefused,
    /// A preflight gate (change window, security alerts, backup recency) refused.
    PreflightRefused,
    Timeout,
}

impl Decision {
    pub(crate) fn result(self) -> &'static str {
        match self {
            Decision::Pass | Decision::PassNoChecks => "pass",
            Decision::Timeout => "timeout",
            _ => "fail",
        }
    }

    pub(crate) fn status(self) -> crate::exit::Status {
        match self {
            Decision::Pass | Decision::PassNoChecks => crate::exit::Status::Success,
            Decision::Timeout => crate::exit::Status::Timeout,
            _ => crate::exit::Status::GateFailed,
        }
    }
}

/// The required set: listed names/globs ∪ what the branch requires; every check when neither.
pub(crate) async fn requirements(
    github: &GitHub,
    options: &Options,
) -> Result<(Mode, &'static str)> {
    let mut list: Vec<Requirement> = options
        .listed
        .iter()
        .map(|p| Requirement {
            pattern: p.clone(),
            app_id: None,
            origins: vec![Origin::Listed],
        })
        .collect();
    let mut from_branch = false;
    if let Some(branch) = &options.required_from {
        let found = required::required_by_branch(github, branch).await?;
        if found.is_empty() {
            actions::annotate(
                Level::Warning,
                Some("no required checks"),
                &format!(
                    "branch `{branch}` requires no status checks (neither branch protection nor a ruleset); {}",
                    if list.is_empty() {
                        "gating on every check of the commit instead"
                    } else {
                        "gating on the `require` list alone"
                    }
                ),
            );
        } else {
            from_branch = true;
            tracing::info!(
                "branch `{branch}` requires {} check(s): {}",
                found.len(),
                names(found.iter().map(|r| r.pattern.as_str()))
            );
        }
        for requirement in found {
            match list
                .iter_mut()
                .find(|r| r.pattern == requirement.pattern && r.app_id == requirement.app_id)
            {
                Some(existing) => existing.origins.extend(requirement.origins),
                None => list.push(requirement),
            }
        }
    }
    list.retain(|requirement| {
        let ignored = options
            .ignore
            .iter()
            .any(|p| p.matches(requirement.pattern.as_str()));
        if ignored {
            tracing::warn!(
                "required check `{}` is also in `ignore`; ignoring it as asked",
                requirement.pattern.as_str()
            );
        }
        !ignored
    });
    let mode_name = match (options.listed.is_empty(), from_branch) {
        (_, _) if list.is_empty() => "all",
        (false, true) => "listed+branch",
        (true, true) => "branch",
        (false, false) => "listed",
        (true, false) => "all",
    };
    if list.is_empty() {
        tracing::info!("no required list: every check on the commit must pass");
        Ok((Mode::All, mode_name))
    } else {
        Ok((Mode::Required(list), mode_name))
    }
}

/// One gate run: the promotion gate's answer, the required set, and what the last poll saw.
pub(crate) struct Poll<'a> {
    pub(crate) options: &'a Options,
    pub(crate) sha: &'a str,
    pub(crate) promotion: Option<Promotion>,
    pub(crate) mode: Mode,
    pub(crate) required_mode: &'static str,
    pub(crate) entries: Vec<Entry>,
    pub(crate) eval: Evaluation,
    pub(crate) ignored: Vec<Ignored>,
    pub(crate) own: OwnRun,
    pub(crate) polls: u32,
    pub(crate) start: Instant,
}

impl Poll<'_> {
    /// Polls until a decision; errors only when GitHub stays unreachable or refuses us.
    pub(crate) async fn wait(&mut self, github: &GitHub) -> Result<Decision> {
        // No `::group::` here: the progress lines stay visible in the live log.
        tracing::info!(
            "waiting for the checks of `{}` (every {}, up to {})",
            crate::text::short_sha(self.sha),
            format_duration(self.options.interval),
            format_duration(self.options.timeout)
        );
        let keep: Vec<Pattern> = self.options.listed.clone();
        let mut reader = checks::Reader::default();
        let mut failed_polls = 0u32;
        let mut first_all_done: Option<bool> = None;
        let mut last_line: Option<(String, Instant)> = None;
        let mut warned_truncated = false;
        let mut slowed = false;
        loop {
            self.polls += 1;
            let snapshot = match reader.poll(github, self.sha).await {
                Ok(snapshot) => {
                    failed_polls = 0;
                    snapshot
                }
                Err(e)
                    if e.kind() == Kind::Dependency
                        && failed_polls < MAX_FAILED_POLLS
                        && self.start.elapsed() < self.options.timeout =>
                {
                    failed_polls += 1;
                    let pause = self.options.interval * 2u32.pow(failed_polls);
                    tracing::warn!(
                        "poll {} failed ({e}); trying again in {} ({failed_polls} of {MAX_FAILED_POLLS})",
                        self.polls,
                        format_duration(pause)
                    );
                    self.sleep(pause).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if snapshot.truncated && !warned_truncated {
                warned_truncated = true;
                tracing::warn!(
                    "commit `{}` has more checks than shipgate reads; the oldest were left out",
                    self.sha
                );
            }
            self.own.learn(&snapshot.runs);
            let (entries, ignored) =
                checks::entries(&snapshot, &self.own, &keep, &self.options.ignore);
            self.eval = verdict::evaluate(&entries, &self.mode, &self.options.allowed);
            self.entries = entries;
            self.ignored = ignored;
            let elapsed = self.start.elapsed();
            let all_done = !self.entries.is_empty() && self.eval.pending.is_empty();
            let first_all_done = *first_all_done.get_or_insert(all_done);
            self.progress(&mut last_line, github.stats());

            if let Some(decision) = self.decide(elapsed, first_all_done) {
                return Ok(decision);
            }
            if elapsed >= self.options.timeout {
                return Ok(Decision::Timeout);
            }
            let mut pause = crate::util::jitter(self.options.interval);
            if github
                .stats()
                .rate_limit_remaining
                .is_some_and(|left| left < LOW_RATE_LIMIT)
            {
                pause *= 4;
                if !slowed {
                    slowed = true;
                    tracing::warn!(
                        "fewer than {LOW_RATE_LIMIT} GitHub API requests left for this token; polling every {} instead",
                        format_duration(pause)
                    );
                }
            }
            self.sleep(pause).await;
        }
    }

    /// Sleeps `pause`, but never past the timeout.
    async fn sleep(&self, pause: Duration) {
        let left = self.options.timeout.saturating_sub(self.start.elapsed());
        tokio::time::sleep(pause.min(left)).await;
    }

    fn decide(&self, elapsed: Duration, first_all_done: bool) -> Option<Decision> {
        let eval = &self.eval;
        if !eval.failed.is_empty() {
            return Some(Decision::Failed);
        }
        let discovered = elapsed >= self.options.discovery;
        match &self.mode {
            Mode::Required(_) => {
                if eval.missing.is_empty() && eval.pending.is_empty() {
                    return Some(Decision::Pass);
                }
                if !eval.missing.is_empty() && discovered {
                    return Some(Decision::Missing);
                }
                None
            }
            Mode::All => {
                if self.entries.is_empty() {
                    return match (discovered, self.options.allow_no_checks) {
                        (false, _) => None,
                        (true, true) => Some(Decision::PassNoChecks),
                        (true, false) => Some(Decision::NoChecks),
                    };
                }
                // More checks may still appear while CI is busy: wait out the discovery window
                // unless everything had already finished when the gate first looked.
                if eval.pending.is_empty() && (first_all_done || discovered) {
                    return Some(Decision::Pass);
                }
                None
            }
        }
    }

    /// One progress line on stderr when the counts change, and a heartbeat otherwise.
    fn progress(&self, last: &mut Option<(String, Instant)>, stats: Stats) {
        let eval = &self.eval;
        let pending_names = names(eval.pending.iter().map(|i| self.entries[*i].display_name()));
        let mut line = format!(
            "{} of {} check(s) passed, {} pending{}, {} failed",
            eval.passed.len(),
            eval.counted(),
            eval.pending.len(),
            if eval.pending.is_empty() {
                String::new()
            } else {
                format!(" ({pending_names})")
            },
            eval.failed.len()
        );
        if !eval.missing.is_empty() {
            line.push_str(&format!(
                ", {} not reported yet ({})",
                eval.missing.len(),
                names(eval.missing.iter())
            ));
        }
        let now = Instant::now();
        let changed = last
            .as_ref()
            .is_none_or(|(previous, at)| *previous != line || now.duration_since(*at) >= HEARTBEAT);
        if changed {
            tracing::info!(
                "{line}; {} of {} elapsed; {} API request(s), {} charged",
                format_duration(self.start.elapsed()),
                format_duration(self.options.timeout),
                stats.sent,
                stats.charged()
            );
            *last = Some((line, now));
        }
    }
}

/// `` `a`, `b`, `c` `` (the first eight, then "and N more").
pub(crate) fn names<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let all: Vec<String> = items
        .into_iter()
        .map(|s| actions::quote(s.as_ref()))
        .collect();
    if all.len() > 8 {
        format!("{}, and {} more", all[..8].join(", "), all.len() - 8)
    } else {
        all.join(", ")
    }
}
