//! The part of the fake GitHub that `shipgate gate` reads: check runs and check suites, commit
//! status listings, branch protection, repository rulesets, GitHub Actions workflow runs and
//! jobs — plus a timeline of scheduled changes, so a test can run the real binary while checks
//! start, finish, fail and get re-run.
//!
//! Shapes follow GitHub's REST documentation (API version 2022-11-28):
//! * `GET /repos/{o}/{r}/commits/{ref}/check-runs` → `{total_count, check_runs}`; `filter`
//!   (`latest`, the default, keeps the newest run per name *within a check suite*; `all`),
//!   `check_name`, `status`, `app_id`; only the newest 1000 check suites of the ref are read
//!   ([`FakeGitHub::set_check_suite_cap`] lowers that for tests);
//! * `GET …/commits/{ref}/check-suites` → `{total_count, check_suites}`,
//!   `GET …/check-suites/{id}/check-runs`, `GET …/check-runs/{id}`;
//! * `GET …/commits/{ref}/statuses` (every status, newest first) and `GET …/commits/{ref}/status`
//!   (combined: the latest per context);
//! * `GET …/branches/{branch}` (with its `protection` summary) and
//!   `GET …/branches/{branch}/protection/required_status_checks`;
//! * `GET …/rules/branches/{branch}` (rules of *active* rulesets only);
//! * `GET …/actions/runs/{run_id}`, `…/actions/runs/{run_id}/jobs` (`filter=latest|all`) and
//!   `…/actions/runs/{run_id}/attempts/{n}/jobs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    CommitStatus, FakeGitHub, Reply, Repo, RepoKey, Req, State, commit_json, fake_sha, iso,
    node_id, paginate, repo_json, user_json,
};

/// The GitHub Actions app, as check runs created by workflow jobs carry it.
pub const ACTIONS_APP: (u64, &str) = (15_368, "github-actions");
/// GitHub reads check runs of at most this many check suites of one ref.
pub const CHECK_SUITE_CAP: usize = 1000;
const FIRST_ID: u64 = 7_000_000;

// =================================================================================================
// Public API: specs, triggers, changes, builders
// =================================================================================================

/// What a new check run looks like. Defaults: completed with `success`, GitHub Actions app, in
/// the default check suite of its commit and app.
#[derive(Clone, Debug)]
pub struct CheckRunSpec {
    name: String,
    status: String,
    conclusion: Option<String>,
    app: (u64, String),
    suite: Option<u64>,
    details_url: Option<String>,
}

impl CheckRunSpec {
    pub fn new(name: &str) -> Self {
        CheckRunSpec {
            name: name.to_owned(),
            status: "completed".to_owned(),
            conclusion: Some("success".to_owned()),
            app: (ACTIONS_APP.0, ACTIONS_APP.1.to_owned()),
            suite: None,
            details_url: None,
        }
    }

    /// `queued`, `in_progress`, `waiting`, `requested`, `pending` (no conclusion), or any
    /// conclusion (`success`, `failure`, `neutral`, `skipped`, `cancelled`, `timed_out`,
    /// `action_required`, `stale`), which makes the run `completed`.
    pub fn state(mut self, state: &str) -> Self {
        let (status, conclusion) = split_state(state);
        self.status = status;
        self.conclusion = conclusion;
        self
    }

    pub fn app(mut self, id: u64, slug: &str) -> Self {
        self.app = (id, slug.to_owned());
        self
    }

    /// Puts the run in an existing check suite (its app wins over [`Self::app`]).
    pub fn suite(mut self, suite_id: u64) -> Self {
        self.suite = Some(suite_id);
        self
    }

    pub fn details_url(mut self, url: &str) -> Self {
        self.details_url = Some(url.to_owned());
        self
    }
}

/// When a scheduled [`Change`] happens.
#[derive(Clone, Debug)]
pub enum When {
    /// Once `count` requests whose decoded path starts with `prefix` have been answered: the
    /// next request (of any kind) sees the change. E.g. "after 3 polls of the check runs".
    Requests { prefix: String, count: usize },
    /// Once this much wall time has passed since the change was scheduled.
    Elapsed(Duration),
}

impl When {
    pub fn after_requests(prefix: &str, count: usize) -> When {
        When::Requests {
            prefix: prefix.to_owned(),
            count,
        }
    }

    pub fn after(elapsed: Duration) -> When {
        When::Elapsed(elapsed)
    }
}

/// A change to the world, applied now ([`FakeGitHub::apply`]) or later ([`FakeGitHub::schedule`]).
#[derive(Clone, Debug)]
pub enum Change {
    /// Moves a check run (or job) to `state` (see [`CheckRunSpec::state`]).
    CheckRun { id: u64, state: String },
    /// A re-run: a new queued check run with the same name, app and suite (a new attempt of the
    /// same job when the run is a job), keeping the old one.
    Rerun { id: u64 },
    /// A new check run on `sha`.
    AddCheckRun { sha: String, spec: CheckRunSpec },
    /// A new commit status on `sha`.
    AddStatus {
        sha: String,
        context: String,
        state: String,
        target_url: Option<String>,
    },
}

impl Change {
    pub fn check_run(id: u64, state: &str) -> Change {
        Change::CheckRun {
            id,
            state: state.to_owned(),
        }
    }

    pub fn status(sha: &str, context: &str, state: &str) -> Change {
        Change::AddStatus {
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state.to_owned(),
            target_url: None,
        }
    }
}

impl FakeGitHub {
    /// A check run on `sha` (a known commit of the current repository); returns its id.
    pub fn check_run(&self, sha: &str, spec: CheckRunSpec) -> u64 {
        let mut state = self.state();
        let key = state.current_key();
        state.add_check_run(&key, sha, spec, None)
    }

    /// Shorthand: a GitHub Actions check run named `name` in `state` (a status or conclusion).
    pub fn check(&self, sha: &str, name: &str, state: &str) -> u64 {
        self.check_run(sha, CheckRunSpec::new(name).state(state))
    }

    /// A new, empty check suite of `app` on `sha`; returns its id.
    pub fn check_suite(&self, sha: &str, app: (u64, &str)) -> u64 {
        let mut state = self.state();
        let key = state.current_key();
        state.add_suite(&key, sha, (app.0, app.1.to_owned()), None)
    }

    /// A commit status with a link (`target_url`).
    pub fn commit_status_with_url(&self, sha: &str, context: &str, state_: &str, url: &str) {
        let mut state = self.state();
        let key = state.current_key();
        state.apply_change(
            &key,
            Change::AddStatus {
                sha: sha.to_owned(),
                context: context.to_owned(),
                state: state_.to_owned(),
                target_url: Some(url.to_owned()),
            },
        );
    }

    /// Applies a change now; returns the id of a check run it created, if any.
    pub fn apply(&self, change: Change) -> Option<u64> {
        let mut state = self.state();
        let key = state.current_key();
        state.apply_change(&key, change)
    }

    /// Applies `change` to the current repository once `when` comes.
    pub fn schedule(&self, when: When, change: Change) -> &Self {
        let mut state = self.state();
        let key = state.current_key();
        state.checks.timeline.push(Scheduled {
            key,
            when,
            armed: Instant::now(),
            change,
        });
        self
    }

    /// Scheduled changes not applied yet.
    pub fn pending_changes(&self) -> usize {
        self.state().checks.timeline.len()
    }

    /// Sets the fake clock (Unix seconds) used for the timestamps of objects created from now
    /// on, e.g. a day ago to test a staging soak.
    pub fn set_clock(&self, epoch: i64) -> &Self {
        self.state().clock.0 = epoch;
        self
    }

    /// How many check suites of a ref the check-runs listing reads (GitHub: 1000).
    pub fn set_check_suite_cap(&self, cap: usize) -> &Self {
        self.state().checks.suite_cap = Some(cap);
        self
    }

    /// Classic branch protection on `branch` requiring `checks` (`(context, app_id)`; `None`
    /// or `-1` for any source).
    pub fn protect_branch(&self, branch: &str, checks: &[(&str, Option<i64>)]) -> &Self {
        let mut state = self.state();
        state.current_repo().checks.protection.insert(
            branch.to_owned(),
            checks
                .iter()
                .map(|(c, app)| ((*c).to_owned(), *app))
                .collect(),
        );
        self
    }

    /// A repository ruleset targeting `branch` (a branch name, `~DEFAULT_BRANCH` or `~ALL`)
    /// with a `required_status_checks` rule (`(context, integration_id)`) and a `deletion` rule.
    /// `enforcement`: `active`, `evaluate` or `disabled` (only active rulesets are returned).
    pub fn ruleset(
        &self,
        id: u64,
        branch: &str,
        enforcement: &str,
        checks: &[(&str, Option<u64>)],
    ) -> &Self {
        let mut state = self.state();
        state.current_repo().checks.rulesets.push(Ruleset {
            id,
            branch: branch.to_owned(),
            enforcement: enforcement.to_owned(),
            checks: checks
                .iter()
                .map(|(c, app)| ((*c).to_owned(), *app))
                .collect(),
        });
        self
    }

    /// A GitHub Actions workflow run on `sha` (with its check suite); returns the suite id.
    pub fn workflow_run(&self, run_id: u64, sha: &str, workflow_name: &str) -> u64 {
        let mut state = self.state();
        let key = state.current_key();
        let suite = state.add_suite(
            &key,
            sha,
            (ACTIONS_APP.0, ACTIONS_APP.1.to_owned()),
            Some(run_id),
        );
        state.repo_mut(&key).checks.workflow_runs.insert(
            run_id,
            WorkflowRun {
                id: run_id,
                suite_id: suite,
                sha: sha.to_owned(),
                name: workflow_name.to_owned(),
            },
        );
        suite
    }

    /// A job of attempt `attempt` of workflow run `run_id`, displayed as `name` (the check run
    /// name: `name:` or the job id, ` (matrix, values)`, `caller / callee`), on runner `runner`,
    /// in `state`. Returns its id, which is also its check run's id (as on GitHub).
    pub fn job(
        &self,
        run_id: u64,
        attempt: u32,
        name: &str,
        runner: Option<&str>,
        state_: &str,
    ) -> u64 {
        let mut state = self.state();
        let key = state.current_key();
        let (suite, sha) = {
            let run = state
                .repo_mut(&key)
                .checks
                .workflow_runs
                .get(&run_id)
                .unwrap_or_else(|| panic!("fake GitHub: no workflow run {run_id}"));
            (run.suite_id, run.sha.clone())
        };
        let spec = CheckRunSpec::new(name).state(state_).suite(suite);
        let id = state.add_check_run(&key, &sha, spec, Some((run_id, attempt)));
        state.repo_mut(&key).checks.jobs.push(Job {
            check_run_id: id,
            run_id,
            attempt,
            runner_name: runner.map(str::to_owned),
        });
        id
    }
}

// =================================================================================================
// State
// =================================================================================================

/// Fake-wide part: ids, the suite cap, the timeline.
#[derive(Default)]
pub(super) struct Global {
    last_id: u64,
    suite_cap: Option<usize>,
    timeline: Vec<Scheduled>,
}

impl Global {
    pub(super) fn next_id(&mut self) -> u64 {
        if self.last_id == 0 {
            self.last_id = FIRST_ID;
        }
        self.last_id += 1;
        self.last_id
    }

    fn cap(&self) -> usize {
        self.suite_cap.unwrap_or(CHECK_SUITE_CAP)
    }
}

struct Scheduled {
    key: RepoKey,
    when: When,
    armed: Instant,
    change: Change,
}

/// Per-repository part.
#[derive(Default)]
pub(super) struct RepoChecks {
    suites: Vec<Suite>,
    /// Ascending id.
    runs: Vec<Run>,
    /// Branch → required `(context, app_id)`.
    protection: BTreeMap<String, Vec<(String, Option<i64>)>>,
    rulesets: Vec<Ruleset>,
    workflow_runs: BTreeMap<u64, WorkflowRun>,
    jobs: Vec<Job>,
}

struct Suite {
    id: u64,
    sha: String,
    app: (u64, String),
    run_id: Option<u64>,
    created_at: i64,
}

struct Run {
    id: u64,
    sha: String,
    name: String,
    suite_id: u64,
    status: String,
    conclusion: Option<String>,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    details_url: Option<String>,
    /// `(run_id, attempt)` when the run is an Actions job.
    job: Option<(u64, u32)>,
}

struct Ruleset {
    id: u64,
    branch: String,
    enforcement: String,
    checks: Vec<(String, Option<u64>)>,
}

struct WorkflowRun {
    id: u64,
    suite_id: u64,
    sha: String,
    name: String,
}

struct Job {
    check_run_id: u64,
    run_id: u64,
    attempt: u32,
    runner_name: Option<String>,
}

fn split_state(state: &str) -> (String, Option<String>) {
    match state {
        "queued" | "in_progress" | "waiting" | "requested" | "pending" => (state.to_owned(), None),
        conclusion => ("completed".to_owned(), Some(conclusion.to_owned())),
    }
}

impl State {
    fn current_key(&self) -> RepoKey {
        self.current
            .clone()
            .expect("fake GitHub: call .repo(owner, name, default_branch) first")
    }

    fn repo_mut(&mut self, key: &RepoKey) -> &mut Repo {
        self.repos.get_mut(key).expect("known repository")
    }

    fn add_suite(&mut self, key: &RepoKey, sha: &str, app: (u64, String), run: Option<u64>) -> u64 {
        let id = self.checks.next_id();
        let at = self.clock.tick();
        let repo = self.repo_mut(key);
        repo.expect_commit(sha);
        repo.checks.suites.push(Suite {
            id,
            sha: sha.to_owned(),
            app,
            run_id: run,
            created_at: at,
        });
        id
    }

    fn add_check_run(
        &mut self,
        key: &RepoKey,
        sha: &str,
        spec: CheckRunSpec,
        job: Option<(u64, u32)>,
    ) -> u64 {
        let suite_id = match spec.suite {
            Some(id) => id,
            None => {
                let existing = self.repos[key]
                    .checks
                    .suites
                    .iter()
                    .find(|s| s.sha == sha && s.app.0 == spec.app.0 && s.run_id.is_none())
                    .map(|s| s.id);
                match existing {
                    Some(id) => id,
                    None => self.add_suite(key, sha, spec.app.clone(), None),
                }
            }
        };
        let id = self.checks.next_id();
        let at = self.clock.tick();
        let repo = self.repo_mut(key);
        repo.expect_commit(sha);
        assert!(
            repo.checks.suites.iter().any(|s| s.id == suite_id),
            "fake GitHub: no check suite {suite_id}"
        );
        let started = (spec.status != "queued" && spec.status != "waiting").then_some(at);
        let completed = (spec.status == "completed").then_some(at);
        repo.checks.runs.push(Run {
            id,
            sha: sha.to_owned(),
            name: spec.name,
            suite_id,
            status: spec.status,
            conclusion: spec.conclusion,
            started_at: started,
            completed_at: completed,
            details_url: spec.details_url,
            job,
        });
        id
    }

    /// Applies a change to repository `key`; returns the id of a check run it created.
    fn apply_change(&mut self, key: &RepoKey, change: Change) -> Option<u64> {
        match change {
            Change::CheckRun { id, state } => {
                let at = self.clock.tick();
                let run = self
                    .repo_mut(key)
                    .checks
                    .runs
                    .iter_mut()
                    .find(|r| r.id == id)
                    .unwrap_or_else(|| panic!("fake GitHub: no check run {id}"));
                let (status, conclusion) = split_state(&state);
                if status != "queued" && status != "waiting" && run.started_at.is_none() {
                    run.started_at = Some(at);
                }
                run.completed_at = (status == "completed").then_some(at);
                run.status = status;
                run.conclusion = conclusion;
                None
            }
            Change::Rerun { id } => {
                let (sha, spec, job) = {
                    let repo = &self.repos[key];
                    let run = repo
                        .checks
                        .runs
                        .iter()
                        .find(|r| r.id == id)
                        .unwrap_or_else(|| panic!("fake GitHub: no check run {id}"));
                    let job = run.job.map(|(run_id, attempt)| (run_id, attempt + 1));
                    let spec = CheckRunSpec {
                        name: run.name.clone(),
                        status: "queued".to_owned(),
                        conclusion: None,
                        app: (0, String::new()),
                        suite: Some(run.suite_id),
                        details_url: run.details_url.clone(),
                    };
                    (run.sha.clone(), spec, job)
                };
                let runner = self.repos[key]
                    .checks
                    .jobs
                    .iter()
                    .find(|j| j.check_run_id == id)
                    .and_then(|j| j.runner_name.clone());
                let new_id = self.add_check_run(key, &sha, spec, job);
                if let Some((run_id, attempt)) = job {
                    self.repo_mut(key).checks.jobs.push(Job {
                        check_run_id: new_id,
                        run_id,
                        attempt,
                        runner_name: runner,
                    });
                }
                Some(new_id)
            }
            Change::AddCheckRun { sha, spec } => Some(self.add_check_run(key, &sha, spec, None)),
            Change::AddStatus {
                sha,
                context,
                state,
                target_url,
            } => {
                let at = self.clock.tick();
                let id = self.checks.next_id();
                self.repo_mut(key).commit_statuses.push(CommitStatus {
                    sha,
                    context,
                    state,
                    at,
                    id,
                    target_url,
                    description: None,
                });
                None
            }
        }
    }

    /// Applies every scheduled change whose time has come (called before each request).
    pub(super) fn fire_due_changes(&mut self) {
        if self.checks.timeline.is_empty() {
            return;
        }
        let now = Instant::now();
        let requests = &self.requests;
        let mut due = Vec::new();
        self.checks.timeline.retain(|scheduled| {
            let ready = match &scheduled.when {
                When::Elapsed(after) => now.duration_since(scheduled.armed) >= *after,
                When::Requests { prefix, count } => {
                    requests
                        .iter()
                        .filter(|r| r.path.starts_with(prefix.as_str()))
                        .count()
                        >= *count
                }
            };
            if ready {
                due.push((scheduled.key.clone(), scheduled.change.clone()));
            }
            !ready
        });
        for (key, change) in due {
            self.apply_change(&key, change);
        }
    }
}

// =================================================================================================
// Routing
// =================================================================================================

/// Answers the GET requests this module serves; `None` for the rest of the API.
pub(super) fn route(global: &Global, repo: &Repo, req: &Req, rest: &[&str]) -> Option<Reply> {
    let reply = match rest {
        ["commits", reference @ .., "check-runs"] if !reference.is_empty() => {
            with_commit(repo, &reference.join("/"), |sha| {
                check_runs_for_ref(global, repo, req, sha)
            })
        }
        ["commits", reference @ .., "check-suites"] if !reference.is_empty() => {
            with_commit(repo, &reference.join("/"), |sha| {
                check_suites_for_ref(repo, req, sha)
            })
        }
        ["commits", reference @ .., "statuses"] if !reference.is_empty() => {
            with_commit(repo, &reference.join("/"), |sha| statuses(repo, req, sha))
        }
        ["commits", reference @ .., "status"] if !reference.is_empty() => {
            with_commit(repo, &reference.join("/"), |sha| {
                combined_status(repo, req, sha)
            })
        }
        ["check-suites", id, "check-runs"] => {
            match repo.checks.suites.iter().find(|s| s.id.to_string() == *id) {
                Some(suite) => {
                    let runs: Vec<&Run> = repo
                        .checks
                        .runs
                        .iter()
                        .filter(|r| r.suite_id == suite.id)
                        .collect();
                    list_runs(repo, req, runs)
                }
                None => Reply::not_found(),
            }
        }
        ["check-runs", id] => repo
            .checks
            .runs
            .iter()
            .find(|r| r.id.to_string() == *id)
            .map_or_else(Reply::not_found, |r| Reply::ok(&run_json(repo, r))),
        [
            "branches",
            branch @ ..,
            "protection",
            "required_status_checks",
        ] if !branch.is_empty() => required_status_checks(repo, &branch.join("/")),
        ["branches", branch @ ..] if !branch.is_empty() => get_branch(repo, &branch.join("/")),
        ["rules", "branches", branch @ ..] if !branch.is_empty() => {
            rules_for_branch(repo, req, &branch.join("/"))
        }
        ["actions", "runs", run_id] => match find_run(repo, run_id) {
            Some(run) => Reply::ok(&workflow_run_json(repo, run)),
            None => Reply::not_found(),
        },
        ["actions", "runs", run_id, "jobs"] => match find_run(repo, run_id) {
            Some(run) => {
                let latest = latest_attempt(repo, run.id);
                let all = req.query("filter") == Some("all");
                jobs(repo, req, run.id, |attempt| all || attempt == latest)
            }
            None => Reply::not_found(),
        },
        ["actions", "runs", run_id, "attempts", attempt, "jobs"] => {
            match (find_run(repo, run_id), attempt.parse::<u32>()) {
                (Some(run), Ok(attempt))
                    if attempt >= 1 && attempt <= latest_attempt(repo, run.id) =>
                {
                    jobs(repo, req, run.id, |a| a == attempt)
                }
                _ => Reply::not_found(),
            }
        }
        _ => return None,
    };
    Some(reply)
}

fn with_commit(repo: &Repo, reference: &str, f: impl FnOnce(&str) -> Reply) -> Reply {
    match repo.resolve(reference) {
        Some(sha) => f(&sha),
        None => Reply::validation(&format!("No commit found for SHA: {reference}"), json!([])),
    }
}

/// Paginates `items` as [`paginate`] does and wraps the page as `{total_count, <field>}`.
fn paginate_wrapped(req: &Req, base: &str, field: &str, items: Vec<Value>) -> Reply {
    let total = items.len();
    let mut reply = paginate(req, base, items);
    let page: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Array(Vec::new()));
    reply.body = json!({ "total_count": total, field: page }).to_string();
    reply
}

fn check_runs_for_ref(global: &Global, repo: &Repo, req: &Req, sha: &str) -> Reply {
    let mut suites: Vec<&Suite> = repo.checks.suites.iter().filter(|s| s.sha == sha).collect();
    suites.sort_by_key(|s| std::cmp::Reverse(s.id));
    let visible: Vec<u64> = suites.iter().take(global.cap()).map(|s| s.id).collect();
    let runs: Vec<&Run> = repo
        .checks
        .runs
        .iter()
        .filter(|r| r.sha == sha && visible.contains(&r.suite_id))
        .collect();
    list_runs(repo, req, runs)
}

/// Applies `filter` (default `latest`: the newest run per name within each suite),
/// `check_name`, `status` and `app_id`, then paginates as `{total_count, check_runs}`.
fn list_runs(repo: &Repo, req: &Req, runs: Vec<&Run>) -> Reply {
    let all = req.query("filter") == Some("all");
    let mut kept: Vec<&Run> = runs
        .into_iter()
        .filter(|r| req.query("check_name").is_none_or(|n| n == r.name))
        .filter(|r| req.query("status").is_none_or(|s| s == r.status))
        .filter(|r| {
            req.query("app_id")
                .is_none_or(|a| a == suite_of(repo, r).app.0.to_string())
        })
        .collect();
    if !all {
        let mut newest: BTreeMap<(u64, &str), u64> = BTreeMap::new();
        for run in &kept {
            let entry = newest.entry((run.suite_id, run.name.as_str())).or_insert(0);
            *entry = (*entry).max(run.id);
        }
        kept.retain(|r| newest.get(&(r.suite_id, r.name.as_str())) == Some(&r.id));
    }
    kept.sort_by_key(|r| r.id);
    let items = kept.iter().map(|r| run_json(repo, r)).collect();
    paginate_wrapped(req, &repo.base, "check_runs", items)
}

fn check_suites_for_ref(repo: &Repo, req: &Req, sha: &str) -> Reply {
    let mut suites: Vec<&Suite> = repo
        .checks
        .suites
        .iter()
        .filter(|s| s.sha == sha)
        .filter(|s| req.query("app_id").is_none_or(|a| a == s.app.0.to_string()))
        .collect();
    suites.sort_by_key(|s| s.id);
    let items = suites.iter().map(|s| suite_json(repo, s)).collect();
    paginate_wrapped(req, &repo.base, "check_suites", items)
}

fn suite_of<'a>(repo: &'a Repo, run: &Run) -> &'a Suite {
    repo.checks
        .suites
        .iter()
        .find(|s| s.id == run.suite_id)
        .expect("every run has a suite")
}

fn statuses(repo: &Repo, req: &Req, sha: &str) -> Reply {
    let mut list: Vec<&CommitStatus> = repo
        .commit_statuses
        .iter()
        .filter(|s| s.sha == sha)
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.id));
    let items = list.iter().map(|s| commit_status_json(repo, s)).collect();
    paginate(req, &repo.base, items)
}

fn combined_status(repo: &Repo, req: &Req, sha: &str) -> Reply {
    let mut latest: BTreeMap<&str, &CommitStatus> = BTreeMap::new();
    for status in repo.commit_statuses.iter().filter(|s| s.sha == sha) {
        let entry = latest.entry(status.context.as_str()).or_insert(status);
        if status.id > entry.id {
            *entry = status;
        }
    }
    let states: Vec<&str> = latest.values().map(|s| s.state.as_str()).collect();
    let state = if states.iter().any(|s| *s == "failure" || *s == "error") {
        "failure"
    } else if states.is_empty() || states.contains(&"pending") {
        "pending"
    } else {
        "success"
    };
    let items: Vec<Value> = latest
        .values()
        .map(|s| commit_status_json(repo, s))
        .collect();
    let total = items.len();
    let page = paginate(req, &repo.base, items);
    let statuses: Value = serde_json::from_str(&page.body).unwrap_or(Value::Array(Vec::new()));
    let mut reply = Reply::ok(&json!({
        "state": state,
        "statuses": statuses,
        "sha": sha,
        "total_count": total,
        "repository": { "id": repo.id, "full_name": format!("{}/{}", repo.owner, repo.name) },
        "commit_url": format!("{}/commits/{sha}", repo.api),
        "url": format!("{}/commits/{sha}/status", repo.api),
    }));
    reply.headers = page.headers;
    reply
}

fn protection_checks<'a>(repo: &'a Repo, branch: &str) -> Option<&'a Vec<(String, Option<i64>)>> {
    repo.checks.protection.get(branch)
}

fn get_branch(repo: &Repo, branch: &str) -> Reply {
    let Some(sha) = repo.branches.get(branch) else {
        return Reply::error(404, "Branch not found");
    };
    let required = protection_checks(repo, branch);
    let rsc = match required {
        Some(checks) => json!({
            "enforcement_level": "non_admins",
            "contexts": checks.iter().map(|(c, _)| c).collect::<Vec<_>>(),
            "checks": checks.iter().map(|(c, app)| json!({"context": c, "app_id": app})).collect::<Vec<_>>(),
        }),
        None => json!({ "enforcement_level": "off", "contexts": [], "checks": [] }),
    };
    let url = format!("{}/branches/{branch}", repo.api);
    Reply::ok(&json!({
        "name": branch,
        "commit": commit_json(repo, &repo.commits[sha]),
        "_links": { "self": url, "html": format!("{}/tree/{branch}", repo.html) },
        "protected": required.is_some(),
        "protection": { "enabled": required.is_some(), "required_status_checks": rsc },
        "protection_url": format!("{url}/protection"),
    }))
}

fn required_status_checks(repo: &Repo, branch: &str) -> Reply {
    if !repo.branches.contains_key(branch) {
        return Reply::error(404, "Branch not found");
    }
    let Some(checks) = protection_checks(repo, branch) else {
        return Reply::error(404, "Branch not protected");
    };
    let url = format!(
        "{}/branches/{branch}/protection/required_status_checks",
        repo.api
    );
    Reply::ok(&json!({
        "url": url,
        "strict": false,
        "contexts": checks.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "contexts_url": format!("{url}/contexts"),
        "checks": checks.iter().map(|(c, app)| json!({"context": c, "app_id": app})).collect::<Vec<_>>(),
    }))
}

fn rules_for_branch(repo: &Repo, req: &Req, branch: &str) -> Reply {
    let mut rules = Vec::new();
    for ruleset in repo
        .checks
        .rulesets
        .iter()
        .filter(|r| r.enforcement == "active")
    {
        let applies = ruleset.branch == "~ALL"
            || ruleset.branch == branch
            || (ruleset.branch == "~DEFAULT_BRANCH" && branch == repo.default_branch);
        if !applies {
            continue;
        }
        let source = json!({
            "ruleset_source_type": "Repository",
            "ruleset_source": format!("{}/{}", repo.owner, repo.name),
            "ruleset_id": ruleset.id,
        });
        let mut deletion = json!({ "type": "deletion" });
        let mut checks = json!({
            "type": "required_status_checks",
            "parameters": {
                "strict_required_status_checks_policy": false,
                "do_not_enforce_on_create": false,
                "required_status_checks": ruleset.checks.iter().map(|(c, id)| match id {
                    Some(id) => json!({ "context": c, "integration_id": id }),
                    None => json!({ "context": c }),
                }).collect::<Vec<_>>(),
            },
        });
        for rule in [&mut deletion, &mut checks] {
            if let (Some(rule), Some(source)) = (rule.as_object_mut(), source.as_object()) {
                rule.extend(source.clone());
            }
        }
        rules.push(deletion);
        rules.push(checks);
    }
    paginate(req, &repo.base, rules)
}

fn find_run<'a>(repo: &'a Repo, run_id: &str) -> Option<&'a WorkflowRun> {
    repo.checks
        .workflow_runs
        .values()
        .find(|r| r.id.to_string() == run_id)
}

fn latest_attempt(repo: &Repo, run_id: u64) -> u32 {
    repo.checks
        .jobs
        .iter()
        .filter(|j| j.run_id == run_id)
        .map(|j| j.attempt)
        .max()
        .unwrap_or(1)
}

fn jobs(repo: &Repo, req: &Req, run_id: u64, attempt: impl Fn(u32) -> bool) -> Reply {
    let items = repo
        .checks
        .jobs
        .iter()
        .filter(|j| j.run_id == run_id && attempt(j.attempt))
        .filter_map(|j| {
            let run = repo.checks.runs.iter().find(|r| r.id == j.check_run_id)?;
            Some(job_json(repo, j, run))
        })
        .collect();
    paginate_wrapped(req, &repo.base, "jobs", items)
}

// =================================================================================================
// JSON renderers
// =================================================================================================

fn app_json(repo: &Repo, app: &(u64, String)) -> Value {
    let (id, slug) = (app.0, &app.1);
    let name = if app.0 == ACTIONS_APP.0 {
        "GitHub Actions".to_owned()
    } else {
        slug.clone()
    };
    json!({
        "id": id,
        "slug": slug,
        "node_id": node_id("A", &id.to_string()),
        "owner": user_json(&repo.base, "github", 9_919, "Organization"),
        "name": name,
        "description": "",
        "external_url": format!("https://github.com/apps/{slug}"),
        "html_url": format!("https://github.com/apps/{slug}"),
        "created_at": iso(super::CLOCK_START),
        "updated_at": iso(super::CLOCK_START),
        "permissions": { "checks": "write", "metadata": "read" },
        "events": [],
    })
}

fn run_html(repo: &Repo, run: &Run) -> String {
    match run.job {
        Some((run_id, _)) => format!("{}/actions/runs/{run_id}/job/{}", repo.html, run.id),
        None => format!("{}/runs/{}", repo.html, run.id),
    }
}

fn run_json(repo: &Repo, run: &Run) -> Value {
    let suite = suite_of(repo, run);
    let html = run_html(repo, run);
    json!({
        "id": run.id,
        "head_sha": run.sha,
        "node_id": node_id("CR", &run.id.to_string()),
        "external_id": "",
        "url": format!("{}/check-runs/{}", repo.api, run.id),
        "html_url": html,
        "details_url": run.details_url.clone().unwrap_or_else(|| html.clone()),
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": run.started_at.map(iso),
        "completed_at": run.completed_at.map(iso),
        "output": {
            "title": null, "summary": null, "text": null, "annotations_count": 0,
            "annotations_url": format!("{}/check-runs/{}/annotations", repo.api, run.id),
        },
        "name": run.name,
        "check_suite": { "id": suite.id },
        "app": app_json(repo, &suite.app),
        "pull_requests": [],
    })
}

fn suite_json(repo: &Repo, suite: &Suite) -> Value {
    let mut latest: BTreeMap<&str, &Run> = BTreeMap::new();
    for run in repo.checks.runs.iter().filter(|r| r.suite_id == suite.id) {
        let entry = latest.entry(run.name.as_str()).or_insert(run);
        if run.id > entry.id {
            *entry = run;
        }
    }
    let status = if latest.is_empty() {
        "queued"
    } else if latest.values().all(|r| r.status == "completed") {
        "completed"
    } else {
        "in_progress"
    };
    let conclusion = (status == "completed").then(|| {
        let bad = [
            "failure",
            "timed_out",
            "cancelled",
            "action_required",
            "startup_failure",
        ];
        if latest
            .values()
            .any(|r| r.conclusion.as_deref().is_some_and(|c| bad.contains(&c)))
        {
            "failure"
        } else {
            "success"
        }
    });
    let updated = repo
        .checks
        .runs
        .iter()
        .filter(|r| r.suite_id == suite.id)
        .flat_map(|r| [r.started_at, r.completed_at])
        .flatten()
        .max()
        .unwrap_or(suite.created_at);
    json!({
        "id": suite.id,
        "node_id": node_id("CS", &suite.id.to_string()),
        "head_branch": repo.default_branch,
        "head_sha": suite.sha,
        "status": status,
        "conclusion": conclusion,
        "url": format!("{}/check-suites/{}", repo.api, suite.id),
        "before": null,
        "after": suite.sha,
        "pull_requests": [],
        "app": app_json(repo, &suite.app),
        "created_at": iso(suite.created_at),
        "updated_at": iso(updated),
        "latest_check_runs_count": latest.len(),
        "check_runs_url": format!("{}/check-suites/{}/check-runs", repo.api, suite.id),
        "rerequestable": true,
        "runs_rerequestable": true,
        "head_commit": {
            "id": suite.sha,
            "tree_id": fake_sha(&format!("tree {}", suite.sha)),
            "message": format!("Commit {}", &suite.sha[..7.min(suite.sha.len())]),
            "timestamp": iso(suite.created_at),
            "author": { "name": "Fake Author", "email": "author@example.com" },
            "committer": { "name": "Fake Author", "email": "author@example.com" },
        },
        "repository": repo_json(repo),
    })
}

fn commit_status_json(repo: &Repo, s: &CommitStatus) -> Value {
    json!({
        "url": format!("{}/statuses/{}", repo.api, s.sha),
        "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
        "id": s.id,
        "node_id": node_id("SC", &s.id.to_string()),
        "state": s.state,
        "description": s.description,
        "target_url": s.target_url,
        "context": s.context,
        "created_at": iso(s.at),
        "updated_at": iso(s.at),
        "creator": user_json(&repo.base, "ci-bot", 4_242, "Bot"),
    })
}

fn workflow_run_json(repo: &Repo, run: &WorkflowRun) -> Value {
    json!({
        "id": run.id,
        "name": run.name,
        "head_sha": run.sha,
        "run_attempt": latest_attempt(repo, run.id),
        "check_suite_id": run.suite_id,
        "url": format!("{}/actions/runs/{}", repo.api, run.id),
        "html_url": format!("{}/actions/runs/{}", repo.html, run.id),
        "jobs_url": format!("{}/actions/runs/{}/jobs", repo.api, run.id),
    })
}

fn job_json(repo: &Repo, job: &Job, run: &Run) -> Value {
    let workflow = repo.checks.workflow_runs.get(&job.run_id);
    json!({
        "id": run.id,
        "run_id": job.run_id,
        "workflow_name": workflow.map(|w| w.name.clone()),
        "head_branch": repo.default_branch,
        "run_url": format!("{}/actions/runs/{}", repo.api, job.run_id),
        "run_attempt": job.attempt,
        "node_id": node_id("CR", &run.id.to_string()),
        "head_sha": run.sha,
        "url": format!("{}/actions/jobs/{}", repo.api, run.id),
        "html_url": run_html(repo, run),
        "status": run.status,
        "conclusion": run.conclusion,
        "created_at": iso(run.started_at.unwrap_or(super::CLOCK_START)),
        "started_at": iso(run.started_at.unwrap_or(super::CLOCK_START)),
        "completed_at": run.completed_at.map(iso),
        "name": run.name,
        "steps": [],
        "check_run_url": format!("{}/check-runs/{}", repo.api, run.id),
        "labels": ["ubuntu-24.04"],
        "runner_id": job.runner_name.as_ref().map(|_| 17),
        "runner_name": job.runner_name,
        "runner_group_id": job.runner_name.as_ref().map(|_| 2),
        "runner_group_name": job.runner_name.as_ref().map(|_| "GitHub Actions"),
    })
}
