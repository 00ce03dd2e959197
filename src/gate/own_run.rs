//! Recognising, among the commit's check runs, the ones that belong to the workflow run executing
//! shipgate — above all the gate's own job, which is in progress while the gate waits and so
//! would otherwise wait for itself until the timeout.
//!
//! A job's check run is named after the job's *display* name: its `name:` (expressions
//! evaluated) or else its id, with ` (matrix, values)` appended for a matrix leg and
//! `caller / ` prepended inside a reusable workflow. `GITHUB_JOB` holds only the job *id* of the
//! innermost workflow, so matching names alone is guesswork. shipgate instead asks GitHub:
//!
//! 1. `GET /repos/{o}/{r}/actions/runs/{GITHUB_RUN_ID}/attempts/{GITHUB_RUN_ATTEMPT}/jobs`
//!    lists this attempt's jobs with their check run ids (`check_run_url`), display names,
//!    status and `runner_name`. The job running shipgate is the unfinished one on this runner
//!    (`RUNNER_NAME`: a runner runs one job at a time); failing that, the unfinished one whose
//!    name has a form of `GITHUB_JOB`; failing that, the only unfinished job. Earlier attempts'
//!    jobs (up to three) are read too: a re-run must not be blocked by its own past failure.
//! 2. A check run belongs to this workflow run when its id is one of those jobs, when it sits in
//!    the check suite of one of them (each workflow run has its own suite), or when its
//!    `details_url`/`html_url` points at `/actions/runs/{GITHUB_RUN_ID}/`.
//! 3. Without the jobs API (no `actions: read` permission), the job is recognised by the forms
//!    of `GITHUB_JOB` — `job`, `job (…)`, `… / job`, `… / job (…)` — among GitHub Actions check
//!    runs that do not point at another workflow run, with a warning.
//!
//! The gate's own job is always left out. The other jobs of this workflow run (the deploy
//! pipeline itself: upstream jobs are done, downstream ones wait for the gate) are left out too,
//! unless `--require` names them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::api::CheckRun;
use super::verdict::Pattern;
use crate::github::GitHub;

/// How many earlier attempts of this workflow run are read.
const EARLIER_ATTEMPTS: u32 = 3;
const MAX_JOB_PAGES: usize = 10;

/// Whether a check run belongs to this workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    /// The job running shipgate (any attempt).
    Myself,
    /// Another job of this workflow run.
    Sibling,
    /// Not this workflow run.
    No,
}

/// What shipgate knows about the workflow run executing it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct OwnRun {
    pub(crate) run_id: Option<u64>,
    pub(crate) attempt: Option<u32>,
    /// How the gate's own job was recognised.
    pub(crate) method: String,
    /// Check run ids of the job running shipgate.
    pub(crate) job_check_run_ids: BTreeSet<u64>,
    /// Its display name(s).
    pub(crate) job_names: BTreeSet<String>,
    /// Check run ids of every job of this run read.
    #[serde(skip)]
    run_check_run_ids: BTreeSet<u64>,
    /// Check suites of this run, learned from its check runs.
    #[serde(skip)]
    suites: BTreeSet<u64>,
    /// `GITHUB_JOB` name forms, the fallback.
    #[serde(skip)]
    name_forms: Vec<Pattern>,
    /// Whether the jobs API answered.
    #[serde(skip)]
    jobs_listed: bool,
}

#[derive(Debug, Deserialize)]
struct Job {
    id: u64,
    name: String,
    status: String,
    runner_name: Option<String>,
    check_run_url: Option<String>,
}

impl Job {
    /// The check run id: the last segment of `check_run_url` (GitHub uses the job id).
    fn check_run_id(&self) -> u64 {
        self.check_run_url
            .as_deref()
            .and_then(|url| url.rsplit('/').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or(self.id)
    }
}

fn name_forms(job: &str) -> Vec<Pattern> {
    [
        job.to_string(),
        format!("{job} (*)"),
        format!("* / {job}"),
        format!("* / {job} (*)"),
    ]
    .iter()
    .map(|p| Pattern::new(p))
    .collect()
}

impl OwnRun {
    /// As recorded in `gate.json`.
    pub(crate) fn to_state(&self) -> crate::state::gate::OwnRunInfo {
        crate::state::gate::OwnRunInfo {
            run_id: self.run_id,
            attempt: self.attempt,
            method: self.method.clone(),
            job_check_run_ids: self.job_check_run_ids.clone(),
            job_names: self.job_names.clone(),
        }
    }

    /// Finds this workflow run and job; outside GitHub Actions there is none.
    pub(crate) async fn discover(github: &GitHub) -> OwnRun {
        let mut own = OwnRun {
            method: "not looked for: not running in GitHub Actions".into(),
            ..OwnRun::default()
        };
        if !crate::actions::enabled() {
            return own;
        }
        let job_key = crate::inputs::env("GITHUB_JOB");
        if let Some(job) = &job_key {
            own.name_forms = name_forms(job);
            own.method = format!("recognised by the name forms of GITHUB_JOB `{job}`");
        }
        own.run_id = crate::inputs::env("GITHUB_RUN_ID").and_then(|v| v.parse().ok());
        if own.run_id.is_none() && job_key.is_none() {
            own.method = "not recognised: neither GITHUB_RUN_ID nor GITHUB_JOB is set".into();
        }
        let attempt = crate::inputs::env("GITHUB_RUN_ATTEMPT")
            .and_then(|v| v.parse().ok())
            .filter(|a| *a >= 1)
            .unwrap_or(1);
        own.attempt = Some(attempt);
        let Some(run_id) = own.run_id else {
            return own;
        };
        let jobs = match read_jobs(github, run_id, attempt).await {
            Ok(jobs) => jobs,
            Err(e) => {
                let shown = job_key
                    .as_deref()
                    .unwrap_or("(unknown: GITHUB_JOB is not set)");
                tracing::warn!(
                    "cannot list the jobs of workflow run {run_id} ({e}); recognising this job by the name `{shown}` instead. Give the job `permissions: actions: read` so shipgate can tell its own check runs exactly"
                );
                return own;
            }
        };
        own.jobs_listed = true;
        own.run_check_run_ids
            .extend(jobs.iter().map(Job::check_run_id));
        for earlier in (1..attempt).rev().take(EARLIER_ATTEMPTS as usize) {
            match read_jobs(github, run_id, earlier).await {
                Ok(more) => own
                    .run_check_run_ids
                    .extend(more.iter().map(Job::check_run_id)),
                Err(e) => tracing::debug!("cannot list the jobs of attempt {earlier}: {e}"),
            }
        }
        let unfinished: Vec<&Job> = jobs.iter().filter(|j| j.status != "completed").collect();
        let runner = crate::inputs::env("RUNNER_NAME");
        let mut mine: Vec<&Job> = unfinished
            .iter()
            .copied()
            .filter(|j| runner.is_some() && j.runner_name == runner)
            .collect();
        let mut method = format!(
            "recognised by the Actions jobs API: the unfinished job of run {run_id} on runner `{}`",
            runner.as_deref().unwrap_or_default()
        );
        if mine.is_empty() {
            mine = unfinished
                .iter()
                .copied()
                .filter(|j| own.name_forms.iter().any(|p| p.matches(&j.name)))
                .collect();
            method = format!(
                "recognised by the Actions jobs API: the unfinished job of run {run_id} named after GITHUB_JOB `{}`",
                job_key.as_deref().unwrap_or_default()
            );
        }
        if mine.is_empty() && unfinished.len() == 1 {
            mine = unfinished.clone();
            method = format!(
                "recognised by the Actions jobs API: the only unfinished job of run {run_id}"
            );
        }
        if mine.is_empty() {
            tracing::warn!(
                "cannot tell which job of workflow run {run_id} is this one (runner `{}`, GITHUB_JOB `{}`); the whole run is still left out of the gate",
                runner.as_deref().unwrap_or_default(),
                job_key.as_deref().unwrap_or_default()
            );
            own.method = "not found; this workflow run's check runs are left out".into();
            return own;
        }
        own.job_check_run_ids = mine.iter().map(|j| j.check_run_id()).collect();
        own.job_names = mine.iter().map(|j| j.name.clone()).collect();
        own.method = method;
        own
    }

    /// Learns the check suites of this workflow run from the check runs of its jobs.
    pub(crate) fn learn(&mut self, runs: &[CheckRun]) {
        for run in runs {
            if (self.run_check_run_ids.contains(&run.id)
                || self.job_check_run_ids.contains(&run.id))
                && let Some(suite) = &run.check_suite
            {
                self.suites.insert(suite.id);
            }
        }
    }

    pub(crate) fn classify(&self, run: &CheckRun) -> Own {
        if self.job_check_run_ids.contains(&run.id) {
            return Own::Myself;
        }
        let named_like_me = self.job_names.contains(&run.name)
            || self.name_forms.iter().any(|p| p.matches(&run.name));
        let in_run = self.run_check_run_ids.contains(&run.id)
            || run
                .check_suite
                .as_ref()
                .is_some_and(|s| self.suites.contains(&s.id))
            || self.run_id.is_some_and(|id| points_at_run(run, Some(id)));
        if in_run {
            return if named_like_me {
                Own::Myself
            } else {
                Own::Sibling
            };
        }
        // Fallback by name: only for Actions check runs that do not point at another run.
        let actions_app = run
            .app
            .as_ref()
            .is_some_and(|a| a.slug.as_deref() == Some("github-actions"));
        if !self.jobs_listed
            && actions_app
            && self.name_forms.iter().any(|p| p.matches(&run.name))
            && !points_at_run(run, None)
        {
            return Own::Myself;
        }
        Own::No
    }
}

/// Whether the run's links point at workflow run `id` (`None`: at any workflow run).
fn points_at_run(run: &CheckRun, id: Option<u64>) -> bool {
    let needle = match id {
        Some(id) => format!("/actions/runs/{id}/"),
        None => "/actions/runs/".to_string(),
    };
    [&run.details_url, &run.html_url]
        .into_iter()
        .flatten()
        .any(|url| url.contains(&needle))
}

async fn read_jobs(
    github: &GitHub,
    run_id: u64,
    attempt: u32,
) -> Result<Vec<Job>, crate::github::GitHubError> {
    let path = github.repo_path(&format!(
        "/actions/runs/{run_id}/attempts/{attempt}/jobs?per_page=100"
    ));
    Ok(github
        .get_pages_in::<Job>(&path, "jobs", MAX_JOB_PAGES)
        .await?
        .items)
}

#[cfg(test)]
mod tests {
    use super::super::api::{App, SuiteRef};
    use super::*;

    fn run(id: u64, name: &str, suite: u64, url: &str) -> CheckRun {
        CheckRun {
            id,
            name: name.into(),
            status: "in_progress".into(),
            conclusion: None,
            started_at: None,
            completed_at: None,
            html_url: Some(url.into()),
            details_url: Some(url.into()),
            check_suite: Some(SuiteRef { id: suite }),
            app: Some(App {
                id: 15368,
                slug: Some("github-actions".into()),
            }),
        }
    }

    #[test]
    fn by_name_forms_without_the_jobs_api() {
        let own = OwnRun {
            name_forms: name_forms("gate"),
            ..OwnRun::default()
        };
        let elsewhere = "https://github.com/o/r/actions/runs/1/job/2";
        assert_eq!(
            own.classify(&run(5, "gate", 1, "https://x/runs/5")),
            Own::Myself
        );
        assert_eq!(
            own.classify(&run(5, "gate (linux, 1)", 1, "https://x/runs/5")),
            Own::Myself
        );
        assert_eq!(
            own.classify(&run(5, "deploy / gate", 1, "https://x/runs/5")),
            Own::Myself
        );
        assert_eq!(own.classify(&run(5, "gatekeeper", 1, "https://x")), Own::No);
        // A job of the same name in another workflow run is not this one.
        assert_eq!(own.classify(&run(5, "gate", 1, elsewhere)), Own::No);
    }

    #[test]
    fn by_run_ids_suites_and_links() {
        let mut own = OwnRun {
            run_id: Some(77),
            job_check_run_ids: [10].into(),
            job_names: ["Pre-deployment checks".to_string()].into(),
            run_check_run_ids: [10, 11, 3].into(),
            jobs_listed: true,
            ..OwnRun::default()
        };
        own.learn(&[run(11, "validate", 500, "https://x")]);
        assert_eq!(
            own.classify(&run(10, "whatever", 500, "https://x")),
            Own::Myself
        );
        assert_eq!(
            own.classify(&run(11, "validate", 500, "https://x")),
            Own::Sibling
        );
        // Same suite, earlier attempt of this job.
        assert_eq!(
            own.classify(&run(4, "Pre-deployment checks", 500, "https://x")),
            Own::Myself
        );
        // Another workflow's job with the same name as a sibling.
        assert_eq!(
            own.classify(&run(20, "validate", 600, "https://x")),
            Own::No
        );
        // By link only.
        assert_eq!(
            own.classify(&run(
                21,
                "build",
                601,
                "https://github.com/o/r/actions/runs/77/job/21"
            )),
            Own::Sibling
        );
    }
}
