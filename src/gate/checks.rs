//! Reading a commit's check runs and commit statuses from GitHub, and turning them into one
//! [`Entry`] per check.
//!
//! * Check runs: `GET …/commits/{sha}/check-runs?filter=all` (every attempt: `filter=latest`
//!   only deduplicates within one check suite, and a re-run in a new suite must supersede the
//!   failure it replaces), every page. GitHub reads only the newest 1000 check suites of a ref
//!   there; when the commit has more, the runs of the suites that listing left out are read
//!   per suite (`…/check-suites/{id}/check-runs`), and re-read only when the suite changed.
//! * Commit statuses: `GET …/commits/{sha}/statuses` (newest first), the latest per context.
//!
//! Every request is conditional (the adapter's ETag cache), so a poll that finds nothing new
//! costs nothing against the rate limit.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::own_run::{Own, OwnRun};
use super::verdict::{Entry, Pattern, Source};
use crate::error::{Result, ResultExt};
use crate::github::GitHub;

/// GitHub's check-runs listing covers at most this many check suites of a ref.
pub(crate) const CHECK_SUITE_LIMIT: u64 = 1000;
/// Near the limit, the suite count is re-read on every poll.
const SUITE_RECHECK_FROM: u64 = 900;
const PER_PAGE: u32 = 100;
const MAX_RUN_PAGES: usize = 30;
const MAX_STATUS_PAGES: usize = 10;
const MAX_SUITE_PAGES: usize = 30;

pub(crate) use super::api::{CheckRun, Status};

#[derive(Debug, Clone, Deserialize)]
struct Suite {
    id: u64,
    status: Option<String>,
    updated_at: Option<String>,
    #[serde(default)]
    latest_check_runs_count: u64,
}

/// What one poll read.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) runs: Vec<CheckRun>,
    pub(crate) statuses: Vec<Status>,
    /// A listing had more pages than shipgate reads.
    pub(crate) truncated: bool,
    /// Check suites read one by one because the commit has more than GitHub lists at once.
    pub(crate) suites_read_separately: usize,
}

/// Remembers how the commit's check suites must be read, across polls.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// `None` before the first poll; then whether the suite count must be re-read each poll.
    recheck_suites: Option<bool>,
    /// Set once the commit has more suites than the check-runs listing covers.
    per_suite: bool,
    /// Per suite read separately: what it looked like, and its runs.
    suite_cache: HashMap<u64, (String, Vec<CheckRun>)>,
}

impl Reader {
    pub(crate) async fn poll(&mut self, github: &GitHub, sha: &str) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        let runs_path = github.repo_path(&format!(
            "/commits/{sha}/check-runs?filter=all&per_page={PER_PAGE}"
        ));
        let listing = github
            .get_pages_in::<CheckRun>(&runs_path, "check_runs", MAX_RUN_PAGES)
            .await
            .context(format!("cannot list the check runs of commit `{sha}`"))?;
        snapshot.truncated |= listing.truncated;
        snapshot.runs = listing.items;

        if self.recheck_suites != Some(false) || self.per_suite {
            self.read_suites(github, sha, &mut snapshot).await?;
        }

        let statuses_path =
            github.repo_path(&format!("/commits/{sha}/statuses?per_page={PER_PAGE}"));
        let statuses = github
            .list::<Status>(&statuses_path, None, MAX_STATUS_PAGES)
            .await
            .context(format!("cannot list the commit statuses of `{sha}`"))?;
        snapshot.truncated |= statuses.truncated;
        snapshot.statuses = statuses.items;
        Ok(snapshot)
    }

    /// Reads the commit's check suites: their count decides whether the check-runs listing is
    /// complete; past GitHub's limit, the suites it left out are read one by one.
    async fn read_suites(
        &mut self,
        github: &GitHub,
        sha: &str,
        snapshot: &mut Snapshot,
    ) -> Result<()> {
        let path = github.repo_path(&format!("/commits/{sha}/check-suites?per_page={PER_PAGE}"));
        let pages = if self.per_suite { MAX_SUITE_PAGES } else { 1 };
        let mut listing = github
            .get_pages_in::<Suite>(&path, "check_suites", pages)
            .await
            .context(format!("cannot list the check suites of commit `{sha}`"))?;
        let total = listing.total_count.unwrap_or(listing.items.len() as u64);
        self.recheck_suites = Some(total >= SUITE_RECHECK_FROM);
        if total <= CHECK_SUITE_LIMIT {
            return Ok(());
        }
        if !self.per_suite {
            tracing::info!(
                "commit `{sha}` has {total} check suites, more than the {CHECK_SUITE_LIMIT} GitHub lists check runs for; reading the others suite by suite"
            );
            self.per_suite = true;
            listing = github
                .get_pages_in::<Suite>(&path, "check_suites", MAX_SUITE_PAGES)
                .await
                .context(format!("cannot list the check suites of commit `{sha}`"))?;
        }
        snapshot.truncated |= listing.truncated;
        let listed: HashSet<u64> = snapshot
            .runs
            .iter()
            .filter_map(|r| r.check_suite.as_ref().map(|s| s.id))
            .collect();
        let mut seen: HashSet<u64> = snapshot.runs.iter().map(|r| r.id).collect();
        for suite in listing
            .items
            .iter()
            .filter(|s| !listed.contains(&s.id) && s.latest_check_runs_count > 0)
        {
            let fingerprint = format!(
                "{}|{}|{}",
                suite.status.as_deref().unwrap_or(""),
                suite.updated_at.as_deref().unwrap_or(""),
                suite.latest_check_runs_count
            );
            let runs = match self.suite_cache.get(&suite.id) {
                Some((seen_as, runs)) if *seen_as == fingerprint => runs.clone(),
                _ => {
                    let path = github.repo_path(&format!(
                        "/check-suites/{}/check-runs?filter=all&per_page={PER_PAGE}",
                        suite.id
                    ));
                    let runs = github
                        .get_pages_in::<CheckRun>(&path, "check_runs", MAX_RUN_PAGES)
                        .await
                        .context(format!(
                            "cannot list the check runs of check suite {}",
                            suite.id
                        ))?;
                    snapshot.truncated |= runs.truncated;
                    self.suite_cache
                        .insert(suite.id, (fingerprint, runs.items.clone()));
                    runs.items
                }
            };
            snapshot.suites_read_separately += 1;
            for run in runs {
                if seen.insert(run.id) {
                    snapshot.runs.push(run);
                }
            }
        }
        Ok(())
    }
}

pub(crate) use crate::state::gate::Ignored;

/// One entry per check: check runs of this workflow run are set aside (the job running shipgate
/// always; the others unless `keep` names them), the rest deduplicated per (name, app) keeping
/// the newest attempt (highest id: a re-run supersedes what it replaces, even in a new suite);
/// statuses deduplicated per context keeping the newest. Then `ignore` patterns apply.
pub(crate) fn entries(
    snapshot: &Snapshot,
    own: &OwnRun,
    keep: &[Pattern],
    ignore: &[Pattern],
) -> (Vec<Entry>, Vec<Ignored>) {
    let mut ignored: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut latest: BTreeMap<(String, u64), (&CheckRun, u32)> = BTreeMap::new();
    for run in &snapshot.runs {
        match own.classify(run) {
            Own::Myself => {
                ignored.insert(run.name.clone(), "the job running shipgate");
                continue;
            }
            Own::Sibling if !keep.iter().any(|p| p.matches(&run.name)) => {
                ignored
                    .entry(run.name.clone())
                    .or_insert("this workflow run");
                continue;
            }
            _ => {}
        }
        let key = (run.name.clone(), run.app.as_ref().map_or(0, |a| a.id));
        let slot = latest.entry(key).or_insert((run, 0));
        slot.1 += 1;
        if run.id > slot.0.id {
            slot.0 = run;
        }
    }
    let mut out: Vec<Entry> = latest
        .into_values()
        .map(|(run, attempts)| Entry {
            name: run.name.clone(),
            source: Source::CheckRun,
            app: run
                .app
                .as_ref()
                .map(|a| (a.id, a.slug.clone().unwrap_or_default())),
            status: run.status.clone(),
            conclusion: run.conclusion.clone(),
            started_at: parse_time(run.started_at.as_deref()),
            completed_at: parse_time(run.completed_at.as_deref()),
            url: run.html_url.clone().or_else(|| run.details_url.clone()),
            attempts,
        })
        .collect();

    let mut by_context: BTreeMap<&str, Vec<&Status>> = BTreeMap::new();
    for status in &snapshot.statuses {
        by_context.entry(&status.context).or_default().push(status);
    }
    for (context, mut statuses) in by_context {
        statuses.sort_by_key(|s| std::cmp::Reverse(s.id));
        let newest = statuses[0];
        let done = newest.state != "pending";
        // It started with the newest `pending` before the result, when there is one.
        let started = statuses
            .iter()
            .skip(usize::from(done))
            .take_while(|s| s.state == "pending")
            .last()
            .map_or(newest, |s| *s);
        out.push(Entry {
            name: context.to_string(),
            source: Source::Status,
            app: None,
            status: newest.state.clone(),
            conclusion: None,
            started_at: parse_time(started.created_at.as_deref()),
            completed_at: if done {
                parse_time(newest.created_at.as_deref())
            } else {
                None
            },
            url: newest.target_url.clone(),
            attempts: statuses.len() as u32,
        });
    }

    out.retain(|entry| {
        let drop = ignore.iter().any(|p| p.matches(&entry.name));
        if drop {
            ignored.insert(entry.name.clone(), "`ignore`");
        }
        !drop
    });
    out.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.source.label().cmp(b.source.label()))
    });
    let ignored = ignored
        .into_iter()
        .map(|(name, reason)| Ignored {
            name,
            reason: reason.to_string(),
        })
        .collect();
    (out, ignored)
}

pub(crate) fn parse_time(text: Option<&str>) -> Option<jiff::Timestamp> {
    text.and_then(|t| t.parse().ok())
}
