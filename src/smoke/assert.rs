//! Asserts, written as one line each in the suite (`status == 200`, `json $.items[0].id exists`,
//! `header content-type contains json`, `duration < 500ms`, `health == healthy`,
//! `json $.outbox.pending <= before * 1.2`, `json $.jobs.failed growth < 100`), parsed when the
//! suite is read and evaluated against what a check observed. A failure carries the expected and
//! the actual value, both fit for reports (one line, redacted, shortened).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::template::{Template, Vars};
use crate::health::{Reading, State};
use crate::metrics::json_path::Path;
pub(crate) use crate::state::smoke::Failure;

/// Longest actual value shown in a failure.
const SHOWN_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Status,
    Header(String),
    Json(Path),
    /// How many values a JSON query selects (for a path to one value: the length of the list
    /// or object there).
    Count(Path),
    Body,
    Duration,
    Health,
    Version,
    /// First column of the first row of a database query.
    Value,
    /// Rows a database query returned.
    Rows,
}

impl Subject {
    fn label(&self) -> String {
        match self {
            Subject::Status => "status".into(),
            Subject::Header(name) => format!("header {name}"),
            Subject::Json(path) => format!("json {path}"),
            Subject::Count(path) => format!("count {path}"),
            Subject::Body => "body".into(),
            Subject::Duration => "duration".into(),
            Subject::Health => "health".into(),
            Subject::Version => "version".into(),
            Subject::Value => "value".into(),
            Subject::Rows => "rows".into(),
        }
    }

    /// The kinds of check this subject applies to.
    pub(crate) fn applies_to(&self, kind: crate::state::smoke::Kind) -> bool {
        use crate::state::smoke::Kind;
        match self {
            Subject::Duration => true,
            Subject::Value | Subject::Rows => kind == Kind::Database,
            _ => kind == Kind::Http,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Matches,
    Exists,
}

impl Op {
    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "contains" => Op::Contains,
            "matches" => Op::Matches,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::Matches => "matches",
            Op::Exists => "exists",
        }
    }

    fn ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// `before`, `before * 1.2`, `before + 10`: a value computed from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Before {
    pub(crate) op: Option<(char, f64)>,
}

impl fmt::Display for Before {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            None => f.write_str("before"),
            Some((op, k)) => write!(f, "before {op} {k}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Expected {
    None,
    Value(Value),
    Regex(regex_lite::Regex),
    Before(Before),
}

/// One assert.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "super::scalar::Scalar")]
pub(crate) struct Assert {
    text: String,
    pub(crate) subject: Subject,
    /// `growth`: the value minus its snapshot.
    pub(crate) growth: bool,
    negate: bool,
    op: Op,
    expected: Expected,
    /// `{{name}}` in the compared value, rendered when checked.
    template: Option<Template>,
}

impl TryFrom<super::scalar::Scalar> for Assert {
    type Error = String;
    fn try_from(value: super::scalar::Scalar) -> Result<Self, String> {
        Assert::parse(&value.0)
    }
}

/// What a check observed, for asserts to look at.
#[derive(Debug, Default)]
pub(crate) struct Observed<'a> {
    pub(crate) status: Option<u16>,
    /// Header names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<&'a str>,
    pub(crate) json: Option<&'a Value>,
    pub(crate) duration_ms: u64,
    pub(crate) health: Option<&'a Reading>,
    pub(crate) value: Option<&'a str>,
    pub(crate) rows: Option<usize>,
    /// Snapshot values by JSON location text.
    pub(crate) snapshot: Option<&'a BTreeMap<String, Value>>,
    /// Variables for `{{name}}` in compared values.
    pub(crate) vars: Option<&'a Vars>,
}

impl Failure {
    pub(crate) fn new(check: &str, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Failure {
            check: crate::actions::one_line(check),
            expected: crate::actions::one_line(&expected.into()),
            actual: crate::actions::one_line(&actual.into()),
        }
    }

    pub(crate) fn message(&self) -> String {
        if self.expected.is_empty() {
            format!("{}: {}", self.check, self.actual)
        } else {
            format!(
                "{}: expected {}, got {}",
                self.check, self.expected, self.actual
            )
        }
    }
}

impl Assert {
    pub(crate) fn parse(text: &str) -> Result<Assert, String> {
        let original = text.trim();
        let bad = |why: String| {
            format!(
                "assert {} is not valid: {why}",
                crate::actions::quote(original)
            )
        };
        let (word, rest) = token(original);
        let (subject, rest) = match word {
            "status" => (Subject::Status, rest),
            "body" => (Subject::Body, rest),
            "duration" => (Subject::Duration, rest),
            "health" => (Subject::Health, rest),
            "version" => (Subject::Version, rest),
            "value" => (Subject::Value, rest),
            "rows" => (Subject::Rows, rest),
            "header" => {
                let (name, rest) = token(rest);
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                {
                    return Err(bad(
                        "`header` needs a header name, e.g. `header content-type contains json`"
                            .into(),
                    ));
                }
                (Subject::Header(name.to_ascii_lowercase()), rest)
            }
            "json" => {
                let (path, rest) = token(rest);
                (Subject::Json(Path::parse(path).map_err(bad)?), rest)
            }
            "count" => {
                let (path, rest) = token(rest);
                (Subject::Count(Path::parse(path).map_err(bad)?), rest)
            }
            other => {
                return Err(bad(format!(
                    "`{}` is not something to check; start with `status`, `header NAME`, `json PATH`, `count PATH`, `body`, `duration`, `health`, `version`, `value` or `rows`",
                    crate::actions::one_line(other)
                )));
            }
        };
        let (mut word, mut rest) = token(rest);
        let growth = word == "growth";
        if growth {
            (word, rest) = token(rest);
        }
        let negate = word == "not";
        if negate {
            (word, rest) = token(rest);
        }
        let op = Op::parse(word).ok_or_else(|| {
            bad(format!(
                "expected an operator (`==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `matches`, `exists`) after `{}`, found {}",
                subject.label(),
                if word.is_empty() { "nothing".to_string() } else { format!("`{}`", crate::actions::one_line(word)) }
            ))
        })?;
        let rest = rest.trim();
        if growth && !matches!(subject, Subject::Json(_)) {
            return Err(bad(
                "`growth` compares a JSON value with its snapshot: use `json PATH growth < N`"
                    .into(),
            ));
        }
        if let Subject::Json(path) = &subject
            && (growth || rest.starts_with("before"))
            && !path.is_singular()
        {
            return Err(bad(format!(
                "a snapshot holds one value, but `{path}` may select several; name one value (`$.items[0].n`) or count them (`count PATH`)"
            )));
        }
        if matches!(subject, Subject::Count(_)) && !(op.ordering() || matches!(op, Op::Eq | Op::Ne))
        {
            return Err(bad(format!(
                "`count` compares a number with `==`, `!=`, `<`, `<=`, `>` or `>=`, not `{}`",
                op.text()
            )));
        }
        if negate && !matches!(op, Op::Contains | Op::Matches | Op::Exists) {
            return Err(bad(format!(
                "`not` goes with `contains`, `matches` or `exists`; use the opposite operator instead of `not {}`",
                op.text()
            )));
        }
        let template = if rest.contains("{{") {
            if matches!(op, Op::Exists) || rest.starts_with("before") {
                return Err(bad(
                    "`{{…}}` goes in a compared value, not with `exists` or `before`".into(),
                ));
            }
            Some(Template::parse(rest).map_err(bad)?)
        } else {
            None
        };
        // A templated value is parsed once rendered; a placeholder stands in until then.
        let expected = match &template {
            Some(_) => Expected::Value(Value::Null),
            None => parse_expected(&subject, op, growth, rest).map_err(bad)?,
        };
        if growth && (!op.ordering() && !matches!(op, Op::Eq | Op::Ne)) {
            return Err(bad(
                "`growth` compares with `==`, `!=`, `<`, `<=`, `>` or `>=`".into(),
            ));
        }
        Ok(Assert {
            text: original.to_string(),
            subject,
            growth,
            negate,
            op,
            expected,
            template,
        })
    }

    /// Whether it reads a snapshot (`before` or `growth`).
    pub(crate) fn uses_snapshot(&self) -> bool {
        self.growth || matches!(self.expected, Expected::Before(_))
    }

    /// The JSON location a snapshot must hold for this assert.
    pub(crate) fn snapshot_path(&self) -> Option<&Path> {
        match &self.subject {
            Subject::Json(path) if self.uses_snapshot() => Some(path),
            _ => None,
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn expected_text(&self) -> String {
        let not = if self.negate { "not " } else { "" };
        let value = match &self.expected {
            Expected::None => String::new(),
            Expected::Value(v) => match (&self.subject, v) {
                (Subject::Duration, v) => format!(" {}ms", show(v)),
                (_, Value::String(s))
                    if matches!(self.op, Op::Contains)
                        || matches!(self.subject, Subject::Health) =>
                {
                    format!(" {}", quote_value(s))
                }
                (_, v) => format!(" {}", show(v)),
            },
            Expected::Regex(r) => format!(" /{}/", r.as_str()),
            Expected::Before(b) => format!(" {b}"),
        };
        format!("{not}{}{value}", self.op.text())
    }

    /// The template of the compared value, if it has one.
    pub(crate) fn template(&self) -> Option<&Template> {
        self.template.as_ref()
    }

    /// Checks `observed`; `Err` says what was expected and what was there.
    pub(crate) fn check(&self, observed: &Observed<'_>) -> Result<(), Failure> {
        let Some(template) = &self.template else {
            return self.check_value(observed);
        };
        let label = self.subject.label();
        let empty = Vars::new();
        let rendered = template
            .render(observed.vars.unwrap_or(&empty))
            .map_err(|e| Failure::new(&label, "", e))?;
        let expected = parse_expected(&self.subject, self.op, self.growth, rendered.text.trim())
            .map_err(|e| {
                Failure::new(
                    &label,
                    "",
                    format!(
                        "the compared value `{template_text}` became {}: {e}",
                        crate::actions::quote(&rendered.text),
                        template_text = self.text
                    ),
                )
            })?;
        Assert {
            expected,
            template: None,
            ..self.clone()
        }
        .check_value(observed)
    }

    fn check_value(&self, observed: &Observed<'_>) -> Result<(), Failure> {
        let label = if self.growth {
            format!("{} growth", self.subject.label())
        } else {
            self.subject.label()
        };
        let fail = |expected: String, actual: String| Err(Failure::new(&label, expected, actual));
        let actual: Option<Value> = match &self.subject {
            Subject::Status => observed.status.map(Value::from),
            Subject::Header(name) => {
                let values: Vec<&str> = observed
                    .headers
                    .iter()
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                (!values.is_empty()).then(|| Value::String(values.join(", ")))
            }
            Subject::Json(path) | Subject::Count(path) => match observed.json {
                Some(json) => json_subject(&self.subject, path, json),
                None => {
                    return fail(
                        self.expected_text(),
                        format!(
                            "a body that is not JSON: {}",
                            excerpt(observed.body.unwrap_or(""))
                        ),
                    );
                }
            },
            Subject::Body => observed.body.map(|b| Value::String(b.to_string())),
            Subject::Duration => Some(Value::from(observed.duration_ms)),
            Subject::Health => observed
                .health
                .map(|h| Value::String(state_name(h.state).into())),
            Subject::Version => observed
                .health
                .and_then(|h| h.version.clone())
                .map(Value::String),
            Subject::Value => observed.value.map(|v| Value::String(v.to_string())),
            Subject::Rows => observed.rows.map(Value::from),
        };
        if self.op == Op::Exists {
            return match (actual.is_some(), self.negate) {
                (true, false) | (false, true) => Ok(()),
                (false, false) => fail(self.expected_text(), "nothing (missing)".into()),
                (true, true) => fail(
                    self.expected_text(),
                    show(actual.as_ref().unwrap_or(&Value::Null)),
                ),
            };
        }
        let Some(actual) = actual else {
            let what = match &self.subject {
                Subject::Version => "no version in the body",
                _ => "nothing (missing)",
            };
            return fail(self.expected_text(), what.into());
        };
        let shown_actual = || match &self.subject {
            Subject::Health => {
                let detail = observed
                    .health
                    .map(|h| h.detail.clone())
                    .unwrap_or_default();
                format!("{} ({detail})", show(&actual))
            }
            Subject::Duration => format!("{}ms", show(&actual)),
            Subject::Body => excerpt(actual.as_str().unwrap_or("")),
            _ => show(&actual),
        };

        // Snapshot comparisons.
        if self.uses_snapshot() {
            let Subject::Json(path) = &self.subject else {
                return fail(self.expected_text(), "no snapshot".into());
            };
            let Some(before) = observed.snapshot.and_then(|s| s.get(&path.to_string())) else {
                return fail(
                    self.expected_text(),
                    format!("{} (no snapshot value)", shown_actual()),
                );
            };
            if self.growth {
                let (Some(now), Some(then)) = (number(&actual), number(before)) else {
                    return fail(
                        self.expected_text(),
                        format!(
                            "{} (before: {}; growth needs numbers)",
                            shown_actual(),
                            show(before)
                        ),
                    );
                };
                let growth = now - then;
                let Expected::Value(limit) = &self.expected else {
                    return fail(self.expected_text(), "no limit".into());
                };
                let ok = compare(self.op, &Value::from(growth), limit).unwrap_or(false);
                if ok {
                    return Ok(());
                }
                return fail(
                    self.expected_text(),
                    format!(
                        "{} (before {}, now {})",
                        fmt_number(growth),
                        show(before),
                        show(&actual)
                    ),
                );
            }
            let Expected::Before(b) = self.expected else {
                return fail(self.expected_text(), "no snapshot expression".into());
            };
            let target = match (b.op, number(before)) {
                (None, _) => before.clone(),
                (Some((op, k)), Some(then)) => Value::from(match op {
                    '*' => then * k,
                    '/' => then / k,
                    '+' => then + k,
                    _ => then - k,
                }),
                (Some(_), None) => {
                    return fail(
                        self.expected_text(),
                        format!(
                            "{} (before: {}, not a number)",
                            shown_actual(),
                            show(before)
                        ),
                    );
                }
            };
            let ok = compare(self.op, &actual, &target).unwrap_or(false);
            if ok {
                return Ok(());
            }
            let expected = if b.op.is_some() {
                format!(
                    "{} = {} (before {})",
                    self.expected_text(),
                    show(&target),
                    show(before)
                )
            } else {
                format!("{} (before {})", self.expected_text(), show(before))
            };
            return fail(expected, shown_actual());
        }

        let passed = match &self.expected {
            Expected::Regex(regex) => regex.is_match(&text_of(&actual)) != self.negate,
            Expected::Value(expected) => match self.op {
                Op::Contains => contains(&actual, expected) != self.negate,
                op => match compare(op, &actual, expected) {
                    Some(result) => result,
                    None => {
                        return fail(
                            self.expected_text(),
                            format!("{} (not a number)", shown_actual()),
                        );
                    }
                },
            },
            Expected::None | Expected::Before(_) => false,
        };
        if passed {
            Ok(())
        } else {
            fail(self.expected_text(), shown_actual())
        }
    }
}

/// What `json PATH` or `count PATH` sees in `json`: the value at a path to one value; for a
/// query that may select several, the one value it selected, or a list of the several (nothing
/// when it selects none); or how many it selects.
fn json_subject(subject: &Subject, path: &Path, json: &Value) -> Option<Value> {
    let counting = matches!(subject, Subject::Count(_));
    if path.is_singular() {
        let found = path.find(json)?;
        return if counting {
            match found {
                Value::Array(items) => Some(Value::from(items.len())),
                Value::Object(map) => Some(Value::from(map.len())),
                _ => None,
            }
        } else {
            Some(found.clone())
        };
    }
    let selected = path.select(json);
    match selected.as_slice() {
        _ if counting => Some(Value::from(selected.len())),
        [] => None,
        [one] => Some((*one).clone()),
        _ => Some(Value::Array(selected.into_iter().cloned().collect())),
    }
}

/// The value an assert compares with, from the text after its operator.
fn parse_expected(subject: &Subject, op: Op, growth: bool, rest: &str) -> Result<Expected, String> {
    Ok(match op {
        Op::Exists => {
            if !rest.is_empty() {
                return Err("`exists` takes no value".into());
            }
            if !matches!(subject, Subject::Json(_) | Subject::Header(_)) {
                return Err("`exists` applies to `json PATH` and `header NAME`".into());
            }
            Expected::None
        }
        _ if rest.is_empty() => {
            return Err(format!("`{}` needs a value to compare with", op.text()));
        }
        Op::Matches => {
            let pattern = literal_text(rest);
            Expected::Regex(
                regex_lite::Regex::new(&pattern)
                    .map_err(|e| format!("the regular expression does not compile: {e}"))?,
            )
        }
        _ if rest.starts_with("before") && !rest.starts_with("before\"") => {
            if !matches!(subject, Subject::Json(_)) || growth {
                return Err("`before` compares a JSON value with its snapshot: use `json PATH <= before * 1.2`".into());
            }
            Expected::Before(parse_before(rest)?)
        }
        _ => {
            let value = match subject {
                Subject::Duration => {
                    let ms = parse_ms(rest)?;
                    Value::from(ms)
                }
                Subject::Health => {
                    let state = literal_text(rest).to_ascii_lowercase();
                    if !matches!(
                        state.as_str(),
                        "healthy" | "degraded" | "unhealthy" | "unknown"
                    ) {
                        return Err(format!(
                            "health is `healthy`, `degraded`, `unhealthy` or `unknown`, not `{}`",
                            crate::actions::one_line(&state)
                        ));
                    }
                    if !matches!(op, Op::Eq | Op::Ne) {
                        return Err("health compares with `==` or `!=`".into());
                    }
                    Value::String(state)
                }
                _ if op == Op::Contains => Value::String(literal_text(rest)),
                _ => {
                    serde_json::from_str(rest).unwrap_or_else(|_| Value::String(literal_text(rest)))
                }
            };
            if op.ordering() && number(&value).is_none() {
                return Err(format!(
                    "`{}` needs a number, not `{}`",
                    op.text(),
                    crate::actions::one_line(rest)
                ));
            }
            Expected::Value(value)
        }
    })
}

impl fmt::Display for Assert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Healthy => "healthy",
        State::Degraded => "degraded",
        State::Unhealthy => "unhealthy",
        State::Unknown => "unknown",
    }
}

/// The next whitespace-separated token; brackets and quotes keep their spaces.
fn token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, c) if c.is_whitespace() && depth <= 0 => return (&text[..i], &text[i..]),
            _ => {}
        }
    }
    (text, "")
}

/// A value written in an assert as text: a JSON string literal (`"a b"`), a single-quoted
/// string, or the bare rest of the line.
fn literal_text(text: &str) -> String {
    let text = text.trim();
    if text.len() >= 2
        && text.starts_with('"')
        && text.ends_with('"')
        && let Ok(Value::String(s)) = serde_json::from_str(text)
    {
        return s;
    }
    if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        return text[1..text.len() - 1].to_string();
    }
    text.to_string()
}

fn parse_before(text: &str) -> Result<Before, String> {
    let rest = text.trim_start_matches("before").trim();
    if rest.is_empty() {
        return Ok(Before { op: None });
    }
    let mut chars = rest.chars();
    let op = chars.next().unwrap_or(' ');
    if !matches!(op, '*' | '/' | '+' | '-') {
        return Err(format!(
            "after `before` write `* 1.2`, `+ 10`, `- 5` or `/ 2`, not `{}`",
            crate::actions::one_line(rest)
        ));
    }
    let k: f64 = chars.as_str().trim().parse().map_err(|_| {
        format!(
            "`{}` after `before {op}` is not a number",
            crate::actions::one_line(chars.as_str().trim())
        )
    })?;
    if !k.is_finite() {
        return Err("the factor must be a finite number".into());
    }
    Ok(Before { op: Some((op, k)) })
}

/// `500ms`, `2s`, `1m`, or a bare number of milliseconds.
fn parse_ms(text: &str) -> Result<u64, String> {
    let text = literal_text(text);
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    crate::util::parse_duration(&text)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("duration: {e}"))
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// `None` when an ordering needs numbers that are not there.
fn compare(op: Op, actual: &Value, expected: &Value) -> Option<bool> {
    match op {
        Op::Eq => Some(equal(actual, expected)),
        Op::Ne => Some(!equal(actual, expected)),
        _ => {
            let (a, e) = (number(actual)?, number(expected)?);
            Some(match op {
                Op::Lt => a < e,
                Op::Le => a <= e,
                Op::Gt => a > e,
                _ => a >= e,
            })
        }
    }
}

/// Numbers compare by value (`1 == 1.0`; a numeric string equals its number, as header values
/// and database results are text); everything else exactly.
fn equal(actual: &Value, expected: &Value) -> bool {
    if actual == expected {
        return true;
    }
    match (actual, expected) {
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::Number(_))
        | (Value::Number(_), Value::String(_)) => {
            matches!((number(actual), number(expected)), (Some(a), Some(e)) if a == e)
        }
        _ => false,
    }
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match actual {
        Value::Array(items) => items.iter().any(|item| equal(item, expected)),
        Value::Object(map) => map.contains_key(&text_of(expected)),
        other => text_of(other).contains(&text_of(expected)),
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn fmt_number(n: f64) -> String {
    show(&Value::from(n))
}

/// A JSON value as shown in reports: compact, one line, shortened.
fn show(value: &Value) -> String {
    let text = match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    shorten(&text)
}

fn quote_value(text: &str) -> String {
    show(&Value::String(text.to_string()))
}

/// A body as shown in reports.
pub(crate) fn excerpt(body: &str) -> String {
    if body.trim().is_empty() {
        return "an empty body".into();
    }
    shorten(&quote_value(body.trim()))
}

fn shorten(text: &str) -> String {
    let text = crate::secret::redact(text);
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed<'a>(json: &'a Value, body: &'a str) -> Observed<'a> {
        Observed {
            status: Some(200),
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Some(body),
            json: Some(json),
            duration_ms: 120,
            ..Observed::default()
        }
    }

    fn check(assert: &str, json: &Value) -> Result<(), String> {
        let body = json.to_string();
        Assert::parse(assert)
            .unwrap_or_else(|e| panic!("{assert}: {e}"))
            .check(&observed(json, &body))
            .map_err(|f| f.message())
    }

    #[test]
    fn every_operator_passes_and_fails_with_expected_and_actual() {
        let doc = json!({"n": 5, "s": "healthy", "list": [1, 2], "obj": {"k": 1}, "nil": null});
        for ok in [
            "status == 200",
            "status < 300",
            "status >= 200",
            "header content-type contains json",
            "header Content-Type matches ^application/",
            "header content-type exists",
            "header x-missing not exists",
            "json $.n == 5",
            "json /n == 5.0",
            "json $.n != 6",
            "json $.n < 6",
            "json $.n <= 5",
            "json $.n > 4",
            "json $.n >= 5",
            "json $.s == healthy",
            "json $.s == \"healthy\"",
            "json $.s contains heal",
            "json $.s not contains sick",
            "json $.s matches ^h.*y$",
            "json $.list contains 2",
            "json $.obj contains k",
            "json $.nil exists",
            "json $.list[1] == 2",
            "json $.gone not exists",
            "body contains healthy",
            "body matches \"\\\"n\\\":5\"",
            "duration < 500ms",
            "duration <= 120",
        ] {
            assert_eq!(check(ok, &doc), Ok(()), "{ok}");
        }
        let cases = [
            ("status == 201", "status: expected == 201, got 200"),
            ("status > 300", "status: expected > 300, got 200"),
            (
                "header content-type contains xml",
                "header content-type: expected contains \"xml\", got \"application/json; charset=utf-8\"",
            ),
            (
                "header x-request-id exists",
                "header x-request-id: expected exists, got nothing (missing)",
            ),
            ("json $.n == 6", "json $.n: expected == 6, got 5"),
            ("json $.n != 5", "json $.n: expected != 5, got 5"),
            ("json $.n < 5", "json $.n: expected < 5, got 5"),
            ("json $.n > 5", "json $.n: expected > 5, got 5"),
            (
                "json $.s contains sick",
                "json $.s: expected contains \"sick\", got \"healthy\"",
            ),
            (
                "json $.s matches ^x",
                "json $.s: expected matches /^x/, got \"healthy\"",
            ),
            (
                "json $.gone exists",
                "json $.gone: expected exists, got nothing (missing)",
            ),
            (
                "json $.n not exists",
                "json $.n: expected not exists, got 5",
            ),
            (
                "json $.s < 3",
                "json $.s: expected < 3, got \"healthy\" (not a number)",
            ),
            (
                "body contains sick",
                "body: expected contains \"sick\", got",
            ),
            ("duration < 100ms", "duration: expected < 100ms, got 120ms"),
        ];
        for (assert, message) in cases {
            let got = check(assert, &doc).expect_err(assert);
            assert!(got.starts_with(message), "{assert}: {got}");
        }
    }

    #[test]
    fn health_and_version_read_the_shared_parser() {
        let reading = crate::health::read(
            200,
            Some("application/health+json"),
            br#"{"status":"warn","version":"1.4.0"}"#,
            &crate::health::Rule::default(),
        );
        let obs = Observed {
            health: Some(&reading),
            ..Observed::default()
        };
        assert!(
            Assert::parse("health == degraded")
                .expect("ok")
                .check(&obs)
                .is_ok()
        );
        assert!(
            Assert::parse("version == 1.4.0")
                .expect("ok")
                .check(&obs)
                .is_ok()
        );
        let f = Assert::parse("health == healthy")
            .expect("ok")
            .check(&obs)
            .expect_err("warn");
        assert_eq!(
            f.message(),
            "health: expected == \"healthy\", got \"degraded\" (HTTP 200, status `warn`)"
        );
    }

    #[test]
    fn compared_values_can_come_from_variables() {
        let doc = json!({"version": "1.4.0", "n": 5});
        let body = doc.to_string();
        let mut vars = Vars::new();
        vars.insert(
            "want".into(),
            super::super::template::Var::Plain("1.4.0".into()),
        );
        vars.insert(
            "limit".into(),
            super::super::template::Var::Plain("4".into()),
        );
        let mut obs = observed(&doc, &body);
        obs.vars = Some(&vars);
        let run = |a: &str| {
            Assert::parse(a)
                .expect(a)
                .check(&obs)
                .map_err(|f| f.message())
        };
        assert_eq!(run("json $.version == {{want}}"), Ok(()));
        assert_eq!(run("json $.n > {{limit}}"), Ok(()));
        assert_eq!(
            run("json $.n < {{limit}}"),
            Err("json $.n: expected < 4, got 5".into())
        );
        assert!(
            run("json $.n < {{want}}")
                .expect_err("not a number")
                .contains("became `1.4.0`: `<` needs a number")
        );
        assert!(Assert::parse("json $.n exists {{x}}").is_err());
    }

    #[test]
    fn snapshots_compare_before_and_growth() {
        let now = json!({"outbox": {"pending": 540}, "failed": 3});
        let before: BTreeMap<String, Value> = [
            ("$.outbox.pending".to_string(), json!(100)),
            ("$.failed".to_string(), json!(3)),
        ]
        .into();
        let body = now.to_string();
        let mut obs = observed(&now, &body);
        obs.snapshot = Some(&before);
        let run = |a: &str| {
            Assert::parse(a)
                .expect(a)
                .check(&obs)
                .map_err(|f| f.message())
        };
        assert_eq!(run("json $.failed == before"), Ok(()));
        assert_eq!(run("json $.outbox.pending growth < 1000"), Ok(()));
        assert_eq!(
            run("json $.outbox.pending <= before * 1.2"),
            Err(
                "json $.outbox.pending: expected <= before * 1.2 = 120 (before 100), got 540"
                    .into()
            )
        );
        assert_eq!(
            run("json $.outbox.pending growth < 100"),
            Err(
                "json $.outbox.pending growth: expected < 100, got 440 (before 100, now 540)"
                    .into()
            )
        );
        assert!(
            Assert::parse("json $.a growth < 1")
                .expect("ok")
                .uses_snapshot()
        );
    }

    /// RFC 9535 queries: filters select values, `count` counts them, `exists` says whether any
    /// was selected, and a path to one value counts the list there.
    #[test]
    fn queries_filter_and_count() {
        let doc = json!({"items": [
            {"name": "api", "status": "up", "lag": 3},
            {"name": "db", "status": "down", "lag": 70},
            {"name": "queue", "status": "down", "lag": 5},
        ], "empty": []});
        for ok in [
            "count $.items[?@.status == 'down'] == 2",
            "count $.items[?@.status == 'down' && @.lag > 60] == 1",
            "count $.items[?@.status == 'gone'] == 0",
            "count $.items == 3",
            "count $.empty == 0",
            "count $.items[*] >= 3",
            "json $.items[?@.status == 'down'] exists",
            "json $.items[?@.status == 'gone'] not exists",
            "json $.items[*].name contains db",
            "json $.items[?@.name == 'api'].status == up",
            "json $..lag contains 70",
        ] {
            assert_eq!(check(ok, &doc), Ok(()), "{ok}");
        }
        for (assert, message) in [
            (
                "count $.items[?@.status == 'down'] == 0",
                "count $.items[?@.status == 'down']: expected == 0, got 2",
            ),
            (
                "json $.items[?@.status == 'down'] not exists",
                "json $.items[?@.status == 'down']: expected not exists, got [{",
            ),
            (
                "count $.missing == 0",
                "count $.missing: expected == 0, got nothing (missing)",
            ),
        ] {
            let got = check(assert, &doc).expect_err(assert);
            assert!(got.starts_with(message), "{assert}: {got}");
        }
    }

    #[test]
    fn malformed_asserts_say_why() {
        for (bad, why) in [
            ("stauts == 200", "is not something to check"),
            ("status = 200", "expected an operator"),
            ("status ==", "needs a value"),
            ("json items == 1", "not a JSON location"),
            ("json $.a matches (", "does not compile"),
            ("json $.a < many", "needs a number"),
            ("health == fine", "health is"),
            ("status exists", "applies to"),
            ("body growth < 3", "growth"),
            ("json $.a <= before ^ 2", "after `before`"),
            ("header == x", "header name"),
            ("json $.items[*].n growth < 3", "may select several"),
            ("json $..n <= before * 2", "may select several"),
            ("count $.items contains 3", "`count` compares a number"),
            ("count $.items exists", "`count` compares a number"),
            ("count $.items[?@.n ==] == 1", "is not valid at character"),
        ] {
            let err = Assert::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
