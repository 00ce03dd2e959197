//! The reusable workflow run the way the runner decides what runs: each job's and step's `if:`
//! evaluated with GitHub's expression rules (loose `==`, case-insensitive strings, `&&`/`||`
//! returning an operand, `success()`/`always()`/`cancelled()` at job and step level), job results
//! flowing through `needs`, inputs defaulted from `workflow_call`. No GitHub needed; the steps
//! themselves are not executed, only their outcomes scripted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml_ng::Value;

// ---------------------------------------------------------------------------------------------
// Expressions (docs.github.com/actions/reference/evaluate-expressions-in-workflows-and-actions)

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<V>),
}

impl V {
    fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Num(n) => *n != 0.0 && !n.is_nan(),
            V::Str(s) => !s.is_empty(),
            V::Arr(_) => true,
        }
    }

    fn number(&self) -> f64 {
        match self {
            V::Null => 0.0,
            V::Bool(b) => f64::from(u8::from(*b)),
            V::Num(n) => *n,
            V::Str(s) if s.trim().is_empty() => 0.0,
            V::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
            V::Arr(_) => f64::NAN,
        }
    }

    fn text(&self) -> String {
        match self {
            V::Null => String::new(),
            V::Bool(b) => b.to_string(),
            V::Num(n) => n.to_string(),
            V::Str(s) => s.clone(),
            V::Arr(_) => "Array".into(),
        }
    }

    /// GitHub's loose equality: strings case-insensitively, other mixes as numbers.
    fn equals(&self, other: &V) -> bool {
        match (self, other) {
            (V::Str(a), V::Str(b)) => a.eq_ignore_ascii_case(b),
            (V::Arr(_), _) | (_, V::Arr(_)) => false,
            (V::Null, V::Null) => true,
            _ => self.number() == other.number(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(&'static str),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                assert!(i < chars.len(), "unclosed string in `{text}`");
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            out.push(Tok::Num(s.parse().expect("number")));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '-' | '.' | '*'))
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["==", "!=", "&&", "||", "<=", ">="]
                .into_iter()
                .find(|op| *op == two)
                .or_else(|| {
                    ["!", "(", ")", ",", "<", ">"]
                        .into_iter()
                        .find(|op| op.starts_with(c))
                })
                .unwrap_or_else(|| panic!("unexpected `{c}` in `{text}`"));
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    out
}

/// What an expression can see: the contexts and the status functions of where it is evaluated.
trait Scope {
    fn lookup(&self, path: &[&str]) -> V;
    fn status(&self, function: &str) -> bool;
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    scope: &'a dyn Scope,
    text: String,
}

impl Parser<'_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Op(o)) if *o == op)
    }

    fn expect(&mut self, op: &str) {
        assert!(self.peek_op(op), "expected `{op}` in `{}`", self.text);
        self.at += 1;
    }

    fn or(&mut self) -> V {
        let mut left = self.and();
        while self.peek_op("||") {
            self.at += 1;
            let right = self.and();
            left = if left.truthy() { left } else { right };
        }
        left
    }

    fn and(&mut self) -> V {
        let mut left = self.compare();
        while self.peek_op("&&") {
            self.at += 1;
            let right = self.compare();
            left = if left.truthy() { right } else { left };
        }
        left
    }

    fn compare(&mut self) -> V {
        let left = self.unary();
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.peek_op(op) {
                self.at += 1;
                let right = self.unary();
                let (a, b) = (left.number(), right.number());
                return V::Bool(match op {
                    "==" => left.equals(&right),
                    "!=" => !left.equals(&right),
                    "<" => a < b,
                    ">" => a > b,
                    "<=" => a <= b,
                    _ => a >= b,
                });
            }
        }
        left
    }

    fn unary(&mut self) -> V {
        if self.peek_op("!") {
            self.at += 1;
            return V::Bool(!self.unary().truthy());
        }
        self.primary()
    }

    fn primary(&mut self) -> V {
        let tok = self
            .toks
            .get(self.at)
            .cloned()
            .unwrap_or_else(|| panic!("unexpected end of `{}`", self.text));
        self.at += 1;
        match tok {
            Tok::Str(s) => V::Str(s),
            Tok::Num(n) => V::Num(n),
            Tok::Op("(") => {
                let v = self.or();
                self.expect(")");
                v
            }
            Tok::Ident(name) if self.peek_op("(") => {
                self.at += 1;
                let mut args = Vec::new();
                while !self.peek_op(")") {
                    args.push(self.or());
                    if self.peek_op(",") {
                        self.at += 1;
                    }
                }
                self.expect(")");
                self.call(&name, &args)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => V::Bool(true),
                "false" => V::Bool(false),
                "null" => V::Null,
                _ => {
                    let path: Vec<&str> = name.split('.').collect();
                    self.scope.lookup(&path)
                }
            },
            Tok::Op(op) => panic!("unexpected `{op}` in `{}`", self.text),
        }
    }

    fn call(&self, name: &str, args: &[V]) -> V {
        match (name, args) {
            ("always" | "success" | "failure" | "cancelled", []) => {
                V::Bool(self.scope.status(name))
            }
            ("contains", [V::Arr(items), item]) => V::Bool(items.iter().any(|i| i.equals(item))),
            ("contains", [hay, needle]) => V::Bool(
                hay.text()
                    .to_lowercase()
                    .contains(&needle.text().to_lowercase()),
            ),
            ("startsWith", [s, p]) => V::Bool(
                s.text()
                    .to_lowercase()
                    .starts_with(&p.text().to_lowercase()),
            ),
            ("endsWith", [s, p]) => {
                V::Bool(s.text().to_lowercase().ends_with(&p.text().to_lowercase()))
            }
            _ => panic!("unknown function `{name}` in `{}`", self.text),
        }
    }
}

fn eval(expression: &str, scope: &dyn Scope) -> V {
    let mut parser = Parser {
        toks: tokenize(expression),
        at: 0,
        scope,
        text: expression.to_string(),
    };
    let value = parser.or();
    assert!(
        parser.at == parser.toks.len(),
        "trailing tokens in `{expression}`"
    );
    value
}

/// A value of a `with:`/`env:`/`outputs:` entry: text with `${{ }}` parts evaluated.
fn interpolate(text: &str, scope: &dyn Scope) -> V {
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
        .filter(|inner| !inner.contains("${{"))
    {
        return eval(inner, scope);
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start;
        out.push_str(&eval(&rest[start + 3..end], scope).text());
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    V::Str(out)
}

/// An `if:`: with or without `${{ }}`; the default is `success()`.
fn condition(value: Option<&Value>, scope: &dyn Scope) -> bool {
    let text = match value {
        None => "success()".to_string(),
        Some(Value::Bool(b)) => return *b,
        Some(v) => v.as_str().expect("if: is text").to_string(),
    };
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix("${{")
        .and_then(|t| t.strip_suffix("}}"))
        .unwrap_or(trimmed);
    // GitHub adds `success() &&` when an `if:` uses no status function.
    let uses_status = ["always(", "success(", "failure(", "cancelled("]
        .iter()
        .any(|f| inner.contains(f));
    let value = eval(inner, scope).truthy();
    if uses_status {
        value
    } else {
        value && scope.status("success")
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// What the scenario decides: inputs and secrets of the call, and the steps that fail, with
/// the outputs and environment that steps produce.
#[derive(Default)]
struct Scenario {
    inputs: BTreeMap<&'static str, V>,
    secrets: BTreeMap<&'static str, &'static str>,
    /// `(job, step name)` that fail.
    failing: BTreeSet<(&'static str, &'static str)>,
    /// `(job, step id) -> outputs`.
    step_outputs: BTreeMap<(&'static str, &'static str), BTreeMap<&'static str, &'static str>>,
    /// `step name -> env it exports (GITHUB_ENV)` in whatever job it runs.
    exports: BTreeMap<&'static str, BTreeMap<&'static str, &'static str>>,
    /// `github.server_url`; `None`: `https://github.com`.
    server_url: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct JobRun {
    result: String,
    outputs: BTreeMap<String, String>,
    /// Steps that ran, by name, with their evaluated `with:` and `env:`.
    steps: Vec<StepRun>,
}

#[derive(Debug, Clone)]
struct StepRun {
    name: String,
    /// `uses:` without the version comment; empty for a `run:` step.
    uses: String,
    with: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

struct Ctx<'a> {
    scenario: &'a Scenario,
    inputs: &'a BTreeMap<String, V>,
    jobs: &'a BTreeMap<String, JobRun>,
    needs: Vec<String>,
    steps: BTreeMap<String, (String, BTreeMap<String, String>)>,
    env: BTreeMap<String, String>,
    /// Inside a job: whether an earlier step failed. At job level: `None`.
    step_failed: Option<bool>,
}

impl Scope for Ctx<'_> {
    fn lookup(&self, path: &[&str]) -> V {
        let text = |s: Option<&String>| s.map_or(V::Str(String::new()), |s| V::Str(s.clone()));
        match path {
            ["inputs", name] => self
                .inputs
                .get(*name)
                .cloned()
                .unwrap_or_else(|| panic!("`inputs.{name}` is not an input of the workflow")),
            ["secrets", name] => V::Str(
                self.scenario
                    .secrets
                    .get(name)
                    .map_or(String::new(), |s| s.to_string()),
            ),
            ["needs", "*", "result"] => V::Arr(
                self.needs
                    .iter()
                    .map(|n| V::Str(self.jobs[n].result.clone()))
                    .collect(),
            ),
            ["needs", job, rest @ ..] => {
                assert!(
                    self.needs.iter().any(|n| n == job),
                    "`needs.{job}` is not in this job's needs"
                );
                let run = &self.jobs[*job];
                match rest {
                    ["result"] => V::Str(run.result.clone()),
                    ["outputs", name] => text(run.outputs.get(*name)),
                    _ => panic!("unknown `needs.{job}.{}`", rest.join(".")),
                }
            }
            ["steps", id, "outputs", name] => {
                text(self.steps.get(*id).and_then(|(_, o)| o.get(*name)))
            }
            ["steps", id, "outcome" | "conclusion"] => {
                text(self.steps.get(*id).map(|(outcome, _)| outcome))
            }
            ["env", name] => text(self.env.get(*name)),
            ["github", "server_url"] => V::Str(
                self.scenario
                    .server_url
                    .unwrap_or("https://github.com")
                    .into(),
            ),
            ["runner", "temp"] => V::Str("/runner/_temp".into()),
            ["github", "repository"] => V::Str("octo/app".into()),
            ["github", "actor"] => V::Str("octocat".into()),
            ["github", "token"] => V::Str("ghs_token".into()),
            ["vars", _] => V::Str(String::new()),
            _ => panic!("unknown context `{}`", path.join(".")),
        }
    }

    fn status(&self, function: &str) -> bool {
        let failed = match self.step_failed {
            Some(failed) => failed,
            None => self
                .needs
                .iter()
                .any(|n| matches!(self.jobs[n].result.as_str(), "failure" | "cancelled")),
        };
        let needs_ok = self.needs.iter().all(|n| self.jobs[n].result == "success");
        match function {
            "always" => true,
            "cancelled" => false,
            "failure" => failed,
            _ if self.step_failed.is_some() => !failed,
            _ => needs_ok,
        }
    }
}

fn workflow() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/deploy.yml");
    let text = std::fs::read_to_string(&path).expect("deploy.yml");
    serde_yaml_ng::from_str(&text).expect("deploy.yml parses")
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn evaluate_map(value: &Value, ctx: &Ctx) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let key = k.as_str().expect("key").to_string();
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        other => panic!("`{key}`: unexpected {other:?}"),
                    };
                    (key, interpolate(&text, ctx).text())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the reusable workflow: every job in `needs` order, every step's `if:`.
fn run(scenario: &Scenario) -> BTreeMap<String, JobRun> {
    let wf = workflow();
    let declared = wf["on"]["workflow_call"]["inputs"]
        .as_mapping()
        .expect("workflow_call inputs");
    let mut inputs = BTreeMap::new();
    for (name, spec) in declared {
        let name = name.as_str().expect("input name").to_string();
        let value = match scenario.inputs.get(name.as_str()) {
            Some(v) => v.clone(),
            None => {
                assert!(
                    spec["required"].as_bool() != Some(true),
                    "input `{name}` is required but the scenario does not give it"
                );
                match &spec["default"] {
                    Value::Bool(b) => V::Bool(*b),
                    Value::Number(n) => V::Num(n.as_f64().expect("number")),
                    Value::String(s) => V::Str(s.clone()),
                    _ => V::Str(String::new()),
                }
            }
        };
        inputs.insert(name, value);
    }
    for given in scenario.inputs.keys() {
        assert!(inputs.contains_key(*given), "`{given}` is not an input");
    }

    let jobs = wf["jobs"].as_mapping().expect("jobs");
    let mut done: BTreeMap<String, JobRun> = BTreeMap::new();
    while done.len() < jobs.len() {
        let before = done.len();
        for (name, job) in jobs {
            let name = name.as_str().expect("job name").to_string();
            let needs = strings(&job["needs"]);
            if done.contains_key(&name) || !needs.iter().all(|n| done.contains_key(n)) {
                continue;
            }
            let mut ctx = Ctx {
                scenario,
                inputs: &inputs,
                jobs: &done,
                needs,
                steps: BTreeMap::new(),
                env: BTreeMap::new(),
                step_failed: None,
            };
            let runs = condition(job.get("if"), &ctx);
            let mut result = JobRun {
                result: "skipped".into(),
                outputs: BTreeMap::new(),
                steps: Vec::new(),
            };
            if runs {
                ctx.step_failed = Some(false);
                for step in job["steps"].as_sequence().expect("steps") {
                    let step_name = step["name"].as_str().expect("every step is named");
                    let id = step["id"].as_str().unwrap_or("");
                    if !condition(step.get("if"), &ctx) {
                        ctx.steps
                            .insert(id.to_string(), ("skipped".into(), BTreeMap::new()));
                        continue;
                    }
                    let with = evaluate_map(&step["with"], &ctx);
                    let env = evaluate_map(&step["env"], &ctx);
                    let fails = scenario
                        .failing
                        .iter()
                        .any(|(j, s)| *j == name && *s == step_name);
                    let outputs = scenario
                        .step_outputs
                        .iter()
                        .filter(|((j, s), _)| *j == name && *s == id)
                        .flat_map(|(_, o)| o.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                        .collect();
                    ctx.steps.insert(
                        id.to_string(),
                        (if fails { "failure" } else { "success" }.into(), outputs),
                    );
                    if let Some(exported) = scenario.exports.get(step_name) {
                        for (k, v) in exported {
                            ctx.env.insert(k.to_string(), v.to_string());
                        }
                    }
                    if fails {
                        ctx.step_failed = Some(true);
                    }
                    result.steps.push(StepRun {
                        name: step_name.to_string(),
                        uses: step["uses"].as_str().unwrap_or("").to_string(),
                        with,
                        env,
                    });
                }
                result.result = if ctx.step_failed == Some(true) {
                    "failure"
                } else {
                    "success"
                }
                .into();
                result.outputs = evaluate_map(&job["outputs"], &ctx);
            }
            done.insert(name, result);
        }
        assert!(done.len() > before, "the jobs' needs form a cycle");
    }
    done
}

fn results(runs: &BTreeMap<String, JobRun>) -> BTreeMap<&str, &str> {
    runs.iter()
        .map(|(k, v)| (k.as_str(), v.result.as_str()))
        .collect()
}

fn step<'a>(runs: &'a BTreeMap<String, JobRun>, job: &str, name: &str) -> Option<&'a StepRun> {
    runs[job].steps.iter().find(|s| s.name == name)
}

const AWS_STEP: &str = "AWS credentials (OIDC)";

/// A release call with the validate step's outputs.
fn release() -> Scenario {
    let mut scenario = Scenario::default();
    scenario.inputs.insert("version", V::Str("v1.4.0".into()));
    scenario
        .secrets
        .insert("database-url", "postgres://u:p@db/app");
    scenario.step_outputs.insert(
        ("validate-release", "validate"),
        BTreeMap::from([
            ("deployment-id", "123-abcdef0"),
            ("sha", "abcdef0123456789"),
            ("version", "1.4.0"),
        ]),
    );
    scenario
}

#[test]
fn without_aws_inputs_every_stage_runs_and_no_aws_step_does() {
    let mut scenario = release();
    scenario.secrets.insert("s3-access-key-id", "R2KEYID");
    scenario.secrets.insert("s3-secret-access-key", "r2-secret");
    let runs = run(&scenario);
    let expected = BTreeMap::from([
        ("validate-release", "success"),
        ("pre-deployment-validation", "success"),
        ("database-backup", "success"),
        ("database-migrations", "success"),
        ("build-and-push", "skipped"),
        ("gradual-rollout", "success"),
        ("smoke-tests", "success"),
        ("deployment-record", "success"),
        ("manual-rollback", "success"),
        ("deployment-failure-handler", "skipped"),
    ]);
    assert_eq!(results(&runs), expected);
    for job in ["database-backup", "gradual-rollout"] {
        assert!(
            step(&runs, job, AWS_STEP).is_none(),
            "{job} logged in to AWS without aws-role-arn"
        );
    }
    let backup = step(&runs, "database-backup", "Back up").expect("backup ran");
    assert_eq!(backup.env["AWS_ACCESS_KEY_ID"], "R2KEYID");
    assert_eq!(backup.env["AWS_SECRET_ACCESS_KEY"], "r2-secret");
    assert_eq!(backup.with["deployment-id"], "123-abcdef0");
}

#[test]
fn with_an_aws_role_the_oidc_login_runs_and_its_credentials_reach_the_backup() {
    let mut scenario = release();
    scenario.inputs.insert(
        "aws-role-arn",
        V::Str("arn:aws:iam::123456789012:role/deploy".into()),
    );
    scenario
        .inputs
        .insert("aws-region", V::Str("eu-west-1".into()));
    scenario.exports.insert(
        AWS_STEP,
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", "ASIAOIDC"),
            ("AWS_SECRET_ACCESS_KEY", "oidc-secret"),
        ]),
    );
    let runs = run(&scenario);
    for job in ["database-backup", "gradual-rollout"] {
        let login = step(&runs, job, AWS_STEP).expect("the AWS login ran");
        assert_eq!(
            login.with["role-to-assume"],
            "arn:aws:iam::123456789012:role/deploy"
        );
    }
    let backup = step(&runs, "database-backup", "Back up").expect("backup ran");
    assert_eq!(backup.env["AWS_ACCESS_KEY_ID"], "ASIAOIDC");
    assert_eq!(backup.env["AWS_SECRET_ACCESS_KEY"], "oidc-secret");
}

#[test]
fn without_a_database_the_rollout_still_runs() {
    let mut scenario = release();
    scenario.inputs.insert("database", V::Bool(false));
    let runs = run(&scenario);
    let got = results(&runs);
    assert_eq!(got["database-backup"], "skipped");
    assert_eq!(got["database-migrations"], "skipped");
    assert_eq!(got["gradual-rollout"], "success");
    assert_eq!(got["deployment-record"], "success");
}

#[test]
fn a_failed_rollout_skips_the_rest_and_the_failure_handler_records_it() {
    let mut scenario = release();
    scenario.failing.insert(("gradual-rollout", "Roll out"));
    scenario.step_outputs.insert(
        ("gradual-rollout", "rollout"),
        BTreeMap::from([("result", "rolled_back")]),
    );
    let runs = run(&scenario);
    let got = results(&runs);
    assert_eq!(got["gradual-rollout"], "failure");
    assert_eq!(got["smoke-tests"], "skipped");
    assert_eq!(got["deployment-record"], "skipped");
    assert_eq!(got["deployment-failure-handler"], "success");
    let record = step(&runs, "deployment-failure-handler", "Record the failure").expect("ran");
    assert_eq!(record.with["status"], "rolled_back");
    assert_eq!(record.with["github-deployment"], "true");
    // The state of the failed job is still kept for the handler.
    assert!(step(&runs, "gradual-rollout", "Keep the state for later jobs").is_some());
}

#[test]
fn a_failed_gate_touches_nothing_and_is_recorded_without_a_github_deployment() {
    let mut scenario = release();
    scenario
        .failing
        .insert(("pre-deployment-validation", "Gate"));
    let runs = run(&scenario);
    let got = results(&runs);
    for job in [
        "database-backup",
        "database-migrations",
        "gradual-rollout",
        "smoke-tests",
    ] {
        assert_eq!(got[job], "skipped", "{job}");
    }
    let record = step(&runs, "deployment-failure-handler", "Record the failure").expect("ran");
    assert_eq!(record.with["status"], "failure");
    assert_eq!(record.with["github-deployment"], "false");
}

// ---------------------------------------------------------------------------------------------
// GitHub Enterprise Server: the v3 artifact actions there, the v4 ones on github.com and GHE.com

const UPLOAD_V4: &str = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02";
const DOWNLOAD_V4: &str = "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093";
const UPLOAD_V3: &str = "actions/upload-artifact@a8a3f3ad30e3422c9c7b888a15615d19a852ae32";
const DOWNLOAD_V3: &str = "actions/download-artifact@9bc31d5ccc31df68ecc42ccf4149144866c47d8a";

/// The artifact steps that ran, per job: `(v4 steps, v3 steps)` by name.
fn artifact_steps(runs: &BTreeMap<String, JobRun>) -> (Vec<String>, Vec<String>) {
    let (mut v4, mut v3) = (Vec::new(), Vec::new());
    for (job, run) in runs {
        for step in &run.steps {
            let label = format!("{job}: {}", step.name);
            if step.uses == UPLOAD_V4 || step.uses == DOWNLOAD_V4 {
                v4.push(label);
            } else if step.uses == UPLOAD_V3 || step.uses == DOWNLOAD_V3 {
                v3.push(label);
            } else {
                assert!(
                    !step.uses.contains("-artifact@"),
                    "{label}: `{}` is neither the pinned v4 nor the pinned v3 artifact action",
                    step.uses
                );
            }
        }
    }
    (v4, v3)
}

fn release_on(server_url: &'static str) -> Scenario {
    let mut scenario = release();
    scenario.server_url = Some(server_url);
    scenario
}

/// Every job that passes state on (all but manual-rollback, which only reads) does it.
const STATE_JOBS: [&str; 8] = [
    "validate-release",
    "pre-deployment-validation",
    "database-backup",
    "database-migrations",
    "gradual-rollout",
    "smoke-tests",
    "deployment-record",
    "manual-rollback",
];

#[test]
fn on_ghes_the_v3_artifact_steps_run_and_no_v4_step_does() {
    for server in ["https://github.example.com", "https://notghe.com"] {
        let runs = run(&release_on(server));
        let dotcom = run(&release());
        assert_eq!(
            results(&runs),
            results(&dotcom),
            "{server}: the jobs run as on github.com"
        );
        let (v4, v3) = artifact_steps(&runs);
        assert!(v4.is_empty(), "{server}: v4 artifact steps ran: {v4:?}");
        for job in STATE_JOBS {
            assert!(
                v3.iter().any(|s| s.starts_with(&format!("{job}: "))),
                "{server}: {job} passed no state with the v3 actions ({v3:?})"
            );
        }
        // Each consuming job downloads the whole run and merges this deployment's state dirs.
        let fetch = step(
            &runs,
            "gradual-rollout",
            "Fetch the state of the earlier jobs (GHES)",
        )
        .expect("the v3 download ran");
        assert_eq!(fetch.with["path"], "/runner/_temp/shipgate-artifacts");
        assert!(
            !fetch.with.contains_key("name"),
            "v3 downloads all artifacts"
        );
        let merge = step(
            &runs,
            "gradual-rollout",
            "Merge the state of the earlier jobs (GHES)",
        )
        .expect("the merge ran");
        assert_eq!(merge.env["PREFIX"], "shipgate-state-123-abcdef0-");
        assert_eq!(merge.env["TARGET"], ".shipgate/123-abcdef0");
        assert_eq!(merge.env["DOWNLOADED"], fetch.with["path"]);
        let keep = step(
            &runs,
            "validate-release",
            "Keep the state for later jobs (GHES)",
        )
        .expect("the v3 upload ran");
        assert_eq!(
            keep.with["name"],
            "shipgate-state-123-abcdef0-validate-release"
        );
        assert_eq!(keep.with["path"], ".shipgate/123-abcdef0/");
        let record = step(&runs, "manual-rollback", "Fetch the record's state (GHES)")
            .expect("the record's state is fetched by name");
        assert_eq!(
            record.with["name"],
            "shipgate-state-123-abcdef0-deployment-record"
        );
    }
}

#[test]
fn on_github_com_and_ghe_com_only_the_v4_artifact_steps_run() {
    for server in [
        "https://github.com",
        "https://acme.ghe.com",
        "https://ACME.GHE.COM",
    ] {
        let runs = run(&release_on(server));
        let (v4, v3) = artifact_steps(&runs);
        assert!(v3.is_empty(), "{server}: v3 artifact steps ran: {v3:?}");
        for job in STATE_JOBS {
            assert!(
                v4.iter().any(|s| s.starts_with(&format!("{job}: "))),
                "{server}: {job} passed no state with the v4 actions ({v4:?})"
            );
        }
        for (job, run) in &runs {
            assert!(
                run.steps.iter().all(|s| !s.name.ends_with("(GHES)")),
                "{server}: a GHES step ran in {job}"
            );
        }
    }
}

#[test]
fn on_ghes_the_records_staged_artifacts_are_uploaded_under_their_names() {
    let runs = run(&release_on("https://github.example.com"));
    for (step_name, artifact) in [
        (
            "Publish the deployment record (GHES)",
            "deployment-record-123-abcdef0",
        ),
        (
            "Publish the rollback instructions (GHES)",
            "rollback-instructions-123-abcdef0",
        ),
    ] {
        let upload = step(&runs, "deployment-record", step_name).expect("uploaded on GHES");
        assert_eq!(upload.uses, UPLOAD_V3);
        assert_eq!(upload.with["name"], artifact);
        assert_eq!(
            upload.with["path"],
            format!(".shipgate/123-abcdef0/artifacts/{artifact}/")
        );
        assert_eq!(upload.with["if-no-files-found"], "ignore");
    }

    // A failed rollout: the failure handler publishes the record and the failure report.
    let mut failed = release_on("https://github.example.com");
    failed.failing.insert(("gradual-rollout", "Roll out"));
    let runs = run(&failed);
    assert_eq!(results(&runs)["deployment-failure-handler"], "success");
    for artifact in [
        "deployment-record-123-abcdef0",
        "deployment-failure-report-123-abcdef0",
    ] {
        let uploaded = runs["deployment-failure-handler"].steps.iter().any(|s| {
            s.uses == UPLOAD_V3 && s.with.get("name").map(String::as_str) == Some(artifact)
        });
        assert!(uploaded, "{artifact} is not uploaded on GHES");
    }
    // The failed job's state still reaches the handler.
    assert!(
        step(
            &runs,
            "gradual-rollout",
            "Keep the state for later jobs (GHES)"
        )
        .is_some()
    );

    // Not on github.com: `record` uploads them itself there.
    let runs = run(&release());
    assert!(
        step(
            &runs,
            "deployment-record",
            "Publish the deployment record (GHES)"
        )
        .is_none()
    );
}

#[test]
fn expressions_follow_githubs_rules() {
    struct Empty;
    impl Scope for Empty {
        fn lookup(&self, path: &[&str]) -> V {
            panic!("no context {path:?}")
        }
        fn status(&self, _: &str) -> bool {
            true
        }
    }
    let e = |s: &str| eval(s, &Empty);
    assert_eq!(e("'ABC' == 'abc'"), V::Bool(true));
    assert_eq!(e("'' == 0"), V::Bool(true));
    assert_eq!(e("'1' == 1"), V::Bool(true));
    assert_eq!(e("'' || 'fallback'"), V::Str("fallback".into()));
    assert_eq!(e("'a' && 'b'"), V::Str("b".into()));
    assert_eq!(e("!('x' != 'x') && (1 < 2)"), V::Bool(true));
    assert_eq!(e("contains('Failure', 'fail')"), V::Bool(true));
    assert_eq!(e("'it''s'"), V::Str("it's".into()));
    assert_eq!(
        e("endsWith('https://ACME.ghe.com', '.GHE.com')"),
        V::Bool(true)
    );
    assert_eq!(
        e("endsWith('https://notghe.com', '.ghe.com')"),
        V::Bool(false)
    );
}
