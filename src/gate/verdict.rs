//! What the gate judges and how: one [`Entry`] per check (the latest attempt of a check run, or
//! the latest status of a commit-status context), the [`Requirement`]s, and the [`evaluate`]
//! function that turns them into passed / failed / pending / missing. Pure: no I/O, no clock.

use std::collections::BTreeSet;

use serde::Serialize;

pub(crate) use crate::state::gate::{Origin, RequiredCheck, Source};

/// A name or a glob (`*` any run of characters, `?` one character), matched against the whole
/// check name, case-sensitively (as GitHub matches required checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    text: String,
    glob: bool,
}

impl Pattern {
    /// A glob when `text` has `*` or `?`, else an exact name.
    pub(crate) fn new(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            glob: text.contains(['*', '?']),
        }
    }

    /// Exactly this name, even if it contains `*` or `?` (names from GitHub's settings).
    pub(crate) fn exact(text: &str) -> Pattern {
        Pattern {
            text: text.to_string(),
            glob: false,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.glob {
            glob_match(self.text.as_bytes(), name.as_bytes())
        } else {
            self.text == name
        }
    }
}

/// Iterative glob match with single-star backtracking: linear in practice, never exponential.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One check as the gate sees it after deduplication.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) source: Source,
    /// The app that reported a check run: `(id, slug)`.
    pub(crate) app: Option<(u64, String)>,
    /// Check runs: `queued`, `in_progress`, `waiting`, `completed`, …; statuses: `pending`,
    /// `success`, `failure`, `error`.
    pub(crate) status: String,
    /// Check runs only, once completed.
    pub(crate) conclusion: Option<String>,
    pub(crate) started_at: Option<jiff::Timestamp>,
    pub(crate) completed_at: Option<jiff::Timestamp>,
    pub(crate) url: Option<String>,
    /// How many check runs (attempts) or statuses carried this name.
    pub(crate) attempts: u32,
}

/// How one check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Standing {
    Passed,
    Failed,
    Pending,
}

impl Entry {
    /// The conclusion (check runs) or state (statuses) that decides the standing.
    pub(crate) fn result_word(&self) -> &str {
        match self.source {
            Source::CheckRun => self.conclusion.as_deref().unwrap_or(&self.status),
            Source::Status => &self.status,
        }
    }

    pub(crate) fn standing(&self, allowed: &Allowed) -> Standing {
        match self.source {
            Source::Status => match self.status.as_str() {
                "success" => Standing::Passed,
                "pending" => Standing::Pending,
                _ => Standing::Failed,
            },
            Source::CheckRun => {
                if self.status != "completed" {
                    return Standing::Pending;
                }
                match self.conclusion.as_deref() {
                    Some("success") => Standing::Passed,
                    Some("neutral") if allowed.neutral => Standing::Passed,
                    Some("skipped") if allowed.skipped => Standing::Passed,
                    // A completed run without a conclusion is not a pass.
                    _ => Standing::Failed,
                }
            }
        }
    }

    /// `name` or, when the app is not GitHub Actions, `name (app-slug)` — enough to tell two
    /// same-named checks of different apps apart.
    pub(crate) fn display_name(&self) -> String {
        match &self.app {
            Some((_, slug)) if slug != "github-actions" && !slug.is_empty() => {
                format!("{} ({slug})", self.name)
            }
            _ => self.name.clone(),
        }
    }
}

/// Conclusions accepted besides `success`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Allowed {
    pub(crate) neutral: bool,
    pub(crate) skipped: bool,
}

/// One required check.
#[derive(Debug, Clone)]
pub(crate) struct Requirement {
    pub(crate) pattern: Pattern,
    /// Only check runs of this app satisfy it (commit statuses carry no app and match by name).
    pub(crate) app_id: Option<u64>,
    pub(crate) origins: Vec<Origin>,
}

impl Requirement {
    /// As recorded in `gate.json`.
    pub(crate) fn to_state(&self) -> RequiredCheck {
        RequiredCheck {
            name: self.pattern.as_str().to_string(),
            app_id: self.app_id,
            origins: self.origins.clone(),
        }
    }

    pub(crate) fn matches(&self, entry: &Entry) -> bool {
        if !self.pattern.matches(&entry.name) {
            return false;
        }
        match (self.app_id, &entry.app, entry.source) {
            (Some(want), Some((id, _)), Source::CheckRun) => want == *id,
            _ => true,
        }
    }
}

/// Which checks must pass.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Every check present on the commit.
    All,
    /// These requirements.
    Required(Vec<Requirement>),
}

/// The judgement of one poll.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evaluation {
    /// Indexes into the entries, per standing, for the checks that count.
    pub(crate) passed: Vec<usize>,
    pub(crate) failed: Vec<usize>,
    pub(crate) pending: Vec<usize>,
    /// Requirements (their names) no check matches yet.
    pub(crate) missing: Vec<String>,
    /// Indexes of checks present but not required.
    pub(crate) not_required: Vec<usize>,
}

impl Evaluation {
    pub(crate) fn counted(&self) -> usize {
        self.passed.len() + self.failed.len() + self.pending.len()
    }
}

pub(crate) fn evaluate(entries: &[Entry], mode: &Mode, allowed: &Allowed) -> Evaluation {
    let mut eval = Evaluation::default();
    let mut matched: BTreeSet<usize> = BTreeSet::new();
    if let Mode::Required(requirements) = mode {
        for requirement in requirements {
            let hits: Vec<usize> = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| requirement.matches(e))
                .map(|(i, _)| i)
                .collect();
            if hits.is_empty() {
                eval.missing.push(requirement.pattern.as_str().to_string());
            }
            matched.extend(hits);
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        let counts = match mode {
            Mode::All => true,
            Mode::Required(_) => matched.contains(&i),
        };
        if !counts {
            eval.not_required.push(i);
            continue;
        }
        match entry.standing(allowed) {
            Standing::Passed => eval.passed.push(i),
            Standing::Failed => eval.failed.push(i),
            Standing::Pending => eval.pending.push(i),
        }
    }
    eval
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, status: &str, conclusion: Option<&str>) -> Entry {
        Entry {
            name: name.into(),
            source: Source::CheckRun,
            app: Some((15368, "github-actions".into())),
            status: status.into(),
            conclusion: conclusion.map(str::to_string),
            started_at: None,
            completed_at: None,
            url: None,
            attempts: 1,
        }
    }

    const ALLOW: Allowed = Allowed {
        neutral: true,
        skipped: true,
    };

    #[test]
    fn globs() {
        let p = Pattern::new("test (*)");
        assert!(p.matches("test (ubuntu, 18)"));
        assert!(!p.matches("test"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("a*b*c").matches("aXXbYYc"));
        assert!(!Pattern::new("a*b*c").matches("aXXbYY"));
        assert!(Pattern::new("ci/?uild").matches("ci/build"));
        assert!(!Pattern::new("build").matches("Build"));
        assert!(Pattern::exact("a*").matches("a*"));
        assert!(!Pattern::exact("a*").matches("ab"));
    }

    #[test]
    fn standings() {
        assert_eq!(
            run("a", "completed", Some("success")).standing(&ALLOW),
            Standing::Passed
        );
        assert_eq!(
            run("a", "completed", Some("neutral")).standing(&ALLOW),
            Standing::Passed
        );
        let strict = Allowed {
            neutral: false,
            skipped: false,
        };
        assert_eq!(
            run("a", "completed", Some("skipped")).standing(&strict),
            Standing::Failed
        );
        assert_eq!(
            run("a", "completed", Some("cancelled")).standing(&ALLOW),
            Standing::Failed
        );
        assert_eq!(
            run("a", "waiting", None).standing(&ALLOW),
            Standing::Pending
        );
        assert_eq!(
            run("a", "completed", None).standing(&ALLOW),
            Standing::Failed
        );
    }

    #[test]
    fn required_mode_reports_missing_and_ignores_the_rest() {
        let entries = vec![
            run("build", "completed", Some("success")),
            run("lint", "completed", Some("failure")),
            run("test (a)", "in_progress", None),
        ];
        let mode = Mode::Required(vec![
            Requirement {
                pattern: Pattern::new("build"),
                app_id: None,
                origins: vec![Origin::Listed],
            },
            Requirement {
                pattern: Pattern::new("test (*)"),
                app_id: None,
                origins: vec![Origin::Listed],
            },
            Requirement {
                pattern: Pattern::new("deploy-check"),
                app_id: None,
                origins: vec![Origin::Listed],
            },
        ]);
        let eval = evaluate(&entries, &mode, &ALLOW);
        assert_eq!(eval.passed, vec![0]);
        assert_eq!(eval.pending, vec![2]);
        assert!(eval.failed.is_empty());
        assert_eq!(eval.not_required, vec![1]);
        assert_eq!(eval.missing, vec!["deploy-check".to_string()]);
    }

    #[test]
    fn app_ids_restrict_check_runs() {
        let requirement = Requirement {
            pattern: Pattern::new("build"),
            app_id: Some(99),
            origins: vec![Origin::Ruleset(1)],
        };
        assert!(!requirement.matches(&run("build", "completed", Some("success"))));
        let mut other = run("build", "completed", Some("success"));
        other.app = Some((99, "other-ci".into()));
        assert!(requirement.matches(&other));
        assert_eq!(other.display_name(), "build (other-ci)");
    }
}
