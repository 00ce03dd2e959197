//! GitHub's REST OpenAPI description (api.github.com, API version 2022-11-28) as the judge of
//! what the fake GitHub receives and answers.
//!
//! Every request is matched to an operation (method + path template) and checked: its query
//! parameters are declared for that operation and hold valid values (enum members, types, the
//! documented `per_page` maximum of 100), its JSON body validates against the operation's
//! `requestBody` schema, it carries exactly one `X-GitHub-Api-Version: 2022-11-28` and an
//! `Accept` GitHub accepts. Every answer the fake gives is validated against the operation's
//! response schema for that status, so the fake cannot drift from GitHub's shapes. What breaks a
//! rule becomes a [`Violation`]; the fake fails the test that sent it (see `FakeGitHub`'s `Drop`).
//!
//! The description is the npm package `@octokit/openapi` (`generated/api.github.com.json`),
//! installed by `.ci/install-deps.sh` at a pinned version and SHA-256 into
//! `~/.cache/shipgate/github-openapi/` (`SHIPGATE_GITHUB_OPENAPI` names another file). It is read
//! once per test binary; validators are compiled on first use and cached.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Registry, Resource, Validator};
use serde_json::Value;

use super::{API_VERSION, Req};

/// The URI the description is registered under, so `$ref`s resolve inside it.
const SPEC_URI: &str = "https://shipgate.invalid/api.github.com.json";
/// Media types GitHub's REST API accepts for JSON answers (besides an operation's own).
const JSON_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.github+json",
    "application/vnd.github.v3+json",
    "application/json",
];

/// One broken rule: which operation, which request, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The operation id (e.g. `repos/list-deployments`), or `-` when no operation matched.
    pub operation: String,
    /// `METHOD /path?query` as sent.
    pub request: String,
    /// What the request or the fake's answer does that GitHub's description does not allow.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({}): {}", self.operation, self.request, self.rule)
    }
}

/// The parsed description: operations indexed for matching, and the schema registry.
pub(super) struct Spec {
    operations: Vec<Operation>,
    /// The whole description (with OpenAPI's `nullable` turned into JSON Schema), for lookups.
    document: &'static Value,
    registry: Registry<'static>,
    /// Compiled validators by JSON pointer into the description.
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

pub(super) struct Operation {
    pub(super) id: String,
    method: String,
    template: Vec<Segment>,
    /// JSON pointer of the operation object, e.g. `/paths/~1repos~1{owner}~1{repo}/get`.
    pointer: String,
    params: Vec<Param>,
    /// `Some(required)` when the operation takes a JSON body.
    body: Option<bool>,
}

/// Path parameters that may hold a `/` as a template's last segment (git refs, branch names,
/// `base...head`, file paths); every other parameter is exactly one segment.
const SPANNING: [&str; 4] = ["ref", "branch", "basehead", "path"];

/// `(name, percent-decoded value)` of each path parameter.
type PathParams = Vec<(String, String)>;

#[derive(Clone)]
enum Segment {
    Literal(String),
    Param(String),
}

struct Param {
    name: String,
    location: String,
    required: bool,
    /// JSON pointer of the parameter's schema.
    schema: String,
    /// The schema's `type` (after following a `$ref`).
    kind: String,
    /// "(max N)" from the description, which the schema does not carry (e.g. `per_page`).
    documented_max: Option<i64>,
}

/// The description, loaded once; a missing file fails every test that starts a fake GitHub.
pub(super) fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(Spec::load)
}

/// Where the description is: `SHIPGATE_GITHUB_OPENAPI`, else where `.ci/install-deps.sh` puts it.
pub(super) fn spec_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SHIPGATE_GITHUB_OPENAPI").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("shipgate/github-openapi/api.github.com.json")
}

impl Spec {
    fn load() -> Spec {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "fake GitHub: cannot read GitHub's REST OpenAPI description `{}` ({e}); run `bash .ci/install-deps.sh` (or point SHIPGATE_GITHUB_OPENAPI at api.github.com.json)",
                path.display()
            )
        });
        let mut document: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("fake GitHub: `{}` is not JSON: {e}", path.display()));
        to_json_schema(&mut document);
        let document: &'static Value = Box::leak(Box::new(document));
        let operations = index_operations(document);
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(SPEC_URI, Resource::from_contents(document.clone()))
            .and_then(|builder| builder.prepare())
            .unwrap_or_else(|e| {
                panic!("fake GitHub: cannot register the OpenAPI description: {e}")
            });
        Spec {
            operations,
            document,
            registry,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The operation `method raw_path` calls, with its path parameters (percent-decoded).
    /// A ref, branch or `basehead` as a template's last parameter may span several segments
    /// (`git/ref/{ref}` with `tags/v1`, `branches/{branch}` with `release/1.x`), as GitHub
    /// routes them; a template with more literal segments wins.
    pub(super) fn find(&self, method: &str, raw_path: &str) -> Option<(&Operation, PathParams)> {
        let segments: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(usize, &Operation, PathParams)> = None;
        for op in self.operations.iter().filter(|op| op.method == method) {
            let Some(params) = match_template(&op.template, &segments) else {
                continue;
            };
            let literals = op
                .template
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            if best.as_ref().is_none_or(|(n, _, _)| literals > *n) {
                best = Some((literals, op, params));
            }
        }
        best.map(|(_, op, params)| (op, params))
    }

    /// Every rule `req` breaks; `None` as the operation when no operation matched.
    pub(super) fn check_request(&self, req: &Req) -> (Option<&Operation>, Vec<Violation>) {
        let request = describe(req);
        let mut out = Vec::new();
        let mut violation = |operation: &str, rule: String| {
            out.push(Violation {
                operation: operation.to_owned(),
                request: request.clone(),
                rule,
            });
        };
        let Some((op, path_params)) = self.find(&req.method, &req.raw_path) else {
            violation(
                "-",
                format!(
                    "no operation of GitHub's REST API is `{} {}`",
                    req.method, req.path
                ),
            );
            return (None, out);
        };
        let id = op.id.as_str();

        let versions: Vec<&str> = req
            .headers
            .get_all("x-github-api-version")
            .iter()
            .map(|v| v.to_str().unwrap_or("<not UTF-8>"))
            .collect();
        if versions != [API_VERSION] {
            violation(
                id,
                format!(
                    "exactly one `X-GitHub-Api-Version: {API_VERSION}` header expected, got {versions:?}"
                ),
            );
        }
        let accepts: Vec<&str> = req
            .headers
            .get_all("accept")
            .iter()
            .map(|v| v.to_str().unwrap_or("<not UTF-8>"))
            .collect();
        match accepts.as_slice() {
            [accept] => {
                let offered = self.media_types(op);
                for media in accept.split(',') {
                    let media = media.split(';').next().unwrap_or("").trim();
                    if !JSON_MEDIA_TYPES.contains(&media) && !offered.iter().any(|m| m == media) {
                        violation(
                            id,
                            format!(
                                "`Accept: {accept}`: `{media}` is not a media type GitHub serves here (`application/vnd.github+json`, or one of {offered:?})"
                            ),
                        );
                    }
                }
            }
            _ => violation(
                id,
                format!(
                    "exactly one `Accept` header expected (`application/vnd.github+json`), got {accepts:?}"
                ),
            ),
        }

        for (name, value) in &path_params {
            match op
                .params
                .iter()
                .find(|p| p.location == "path" && p.name == *name)
            {
                Some(param) => {
                    if let Some(rule) = self.check_param(param, value) {
                        violation(id, format!("path parameter `{name}`: {rule}"));
                    }
                }
                None => violation(id, format!("path parameter `{name}` is not declared")),
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &req.query {
            match op
                .params
                .iter()
                .find(|p| p.location == "query" && p.name == *name)
            {
                Some(param) => {
                    if seen.contains(&name.as_str()) && param.kind != "array" {
                        violation(id, format!("query parameter `{name}` is sent twice"));
                    }
                    if let Some(rule) = self.check_param(param, value) {
                        violation(id, format!("query parameter `{name}={value}`: {rule}"));
                    }
                }
                None => violation(
                    id,
                    format!(
                        "query parameter `{name}` is not declared for this operation (declared: {})",
                        declared(op, "query")
                    ),
                ),
            }
            seen.push(name);
        }
        for param in op
            .params
            .iter()
            .filter(|p| p.location == "query" && p.required)
        {
            if !req.query.iter().any(|(k, _)| *k == param.name) {
                violation(
                    id,
                    format!("required query parameter `{}` is missing", param.name),
                );
            }
        }

        match op.body {
            None if !req.body.trim().is_empty() => {
                violation(
                    id,
                    "a body was sent to an operation that takes none".to_owned(),
                );
            }
            None => {}
            Some(true) if req.body.trim().is_empty() => {
                violation(id, "the required JSON body is missing".to_owned());
            }
            Some(false) if req.body.trim().is_empty() => {}
            Some(_) => {
                let content_type = req.header("content-type").unwrap_or("");
                if content_type.split(';').next().map(str::trim) != Some("application/json") {
                    violation(
                        id,
                        format!(
                            "`Content-Type: {content_type}` for a JSON body (expected `application/json`)"
                        ),
                    );
                }
                match serde_json::from_str::<Value>(&req.body) {
                    Ok(body) => {
                        let pointer = format!(
                            "{}/requestBody/content/application~1json/schema",
                            op.pointer
                        );
                        for error in self.validate(&pointer, &body) {
                            violation(id, format!("request body: {error}"));
                        }
                    }
                    Err(e) => violation(id, format!("the request body is not JSON: {e}")),
                }
            }
        }
        (Some(op), out)
    }

    /// What is wrong with the fake's answer `status`/`body` to `op` (nothing when it conforms).
    /// A success status must be one the operation declares; an error status is checked when the
    /// operation declares it (GitHub may answer 401, 403, 429 or 5xx to anything).
    pub(super) fn check_response(
        &self,
        op: &Operation,
        req: &Req,
        status: u16,
        body: &str,
    ) -> Vec<Violation> {
        let violation = |rule: String| Violation {
            operation: op.id.clone(),
            request: describe(req),
            rule,
        };
        let responses = &self.document.pointer(&op.pointer).expect("indexed")["responses"];
        let Some(response) = responses.get(status.to_string()) else {
            if (200..300).contains(&status) {
                let declared: Vec<&String> = responses
                    .as_object()
                    .map(|r| r.keys().collect())
                    .unwrap_or_default();
                return vec![violation(format!(
                    "the fake answered {status}, which the operation does not declare ({declared:?})"
                ))];
            }
            return Vec::new();
        };
        let response = self.deref(response);
        if response
            .pointer("/content/application~1json/schema")
            .is_none()
        {
            if !body.trim().is_empty() && (200..300).contains(&status) {
                return vec![violation(format!(
                    "the fake answered {status} with a body, which the operation declares without one"
                ))];
            }
            return Vec::new();
        }
        let pointer = format!(
            "{}/content/application~1json/schema",
            self.pointer_of(
                &responses[status.to_string()],
                &format!("{}/responses/{status}", op.pointer)
            )
        );
        match serde_json::from_str::<Value>(body) {
            // The first few errors say enough (a list repeats the same one per item).
            Ok(value) => self
                .validate(&pointer, &value)
                .into_iter()
                .take(5)
                .map(|error| violation(format!("the fake's {status} answer: {error}")))
                .collect(),
            Err(e) => vec![violation(format!(
                "the fake's {status} answer is not JSON: {e}"
            ))],
        }
    }

    /// Every media type the operation's responses declare.
    fn media_types(&self, op: &Operation) -> Vec<String> {
        let mut out = Vec::new();
        let responses = &self.document.pointer(&op.pointer).expect("indexed")["responses"];
        for response in responses.as_object().into_iter().flat_map(|r| r.values()) {
            if let Some(content) = self.deref(response)["content"].as_object() {
                out.extend(content.keys().cloned());
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A query or path value against the parameter's schema (after reading it as its type).
    fn check_param(&self, param: &Param, value: &str) -> Option<String> {
        let typed = match param.kind.as_str() {
            "integer" => match value.parse::<i64>() {
                Ok(n) => {
                    if let Some(max) = param.documented_max
                        && n > max
                    {
                        return Some(format!("above the documented maximum {max}"));
                    }
                    Value::from(n)
                }
                Err(_) => return Some("not an integer".to_owned()),
            },
            "number" => match value.parse::<f64>() {
                Ok(n) => Value::from(n),
                Err(_) => return Some("not a number".to_owned()),
            },
            "boolean" => match value {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Some("not `true` or `false`".to_owned()),
            },
            "array" => Value::Array(
                value
                    .split(',')
                    .map(|v| Value::String(v.to_owned()))
                    .collect(),
            ),
            _ => Value::String(value.to_owned()),
        };
        let errors = self.validate(&param.schema, &typed);
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    /// Errors of `value` against the schema at `pointer` (compiled once).
    fn validate(&self, pointer: &str, value: &Value) -> Vec<String> {
        let validator = {
            let mut cache = self
                .validators
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match cache.get(pointer) {
                Some(validator) => Arc::clone(validator),
                None => {
                    // A JSON pointer in a URI fragment: `{`, `}` (path templates) percent-encoded.
                    let fragment = pointer.replace('{', "%7B").replace('}', "%7D");
                    let schema = serde_json::json!({ "$ref": format!("{SPEC_URI}#{fragment}") });
                    let validator = match jsonschema::options()
                        .with_draft(Draft::Draft4)
                        .with_registry(&self.registry)
                        .should_validate_formats(false)
                        .build(&schema)
                    {
                        Ok(validator) => Arc::new(validator),
                        Err(e) => {
                            return vec![format!(
                                "the description's schema at `{pointer}` does not compile: {e}"
                            )];
                        }
                    };
                    cache.insert(pointer.to_owned(), Arc::clone(&validator));
                    validator
                }
            }
        };
        validator
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("at `{at}`: {}", one_line(&e.to_string()))
            })
            .collect()
    }

    /// Follows one `$ref` (`#/components/...`) inside the description.
    fn deref<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix('#')
                .and_then(|p| self.document.pointer(p))
                .unwrap_or(value),
            None => value,
        }
    }

    /// The pointer of `value` (found at `at`), or of its `$ref` target.
    fn pointer_of(&self, value: &Value, at: &str) -> String {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference.trim_start_matches('#').to_owned(),
            None => at.to_owned(),
        }
    }
}

fn match_template(template: &[Segment], segments: &[&str]) -> Option<PathParams> {
    let mut params = Vec::new();
    for (i, part) in template.iter().enumerate() {
        let last = i + 1 == template.len();
        match part {
            Segment::Literal(literal) => {
                if segments.get(i) != Some(&literal.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                let value = if last && SPANNING.contains(&name.as_str()) {
                    (segments.len() > i).then(|| segments[i..].join("/"))?
                } else {
                    (*segments.get(i)?).to_owned()
                };
                if value.is_empty() {
                    return None;
                }
                params.push((name.clone(), super::percent_decode(&value)));
            }
        }
    }
    let spans = template
        .last()
        .is_some_and(|s| matches!(s, Segment::Param(name) if SPANNING.contains(&name.as_str())));
    (segments.len() == template.len() || (spans && segments.len() > template.len()))
        .then_some(params)
}

fn index_operations(document: &Value) -> Vec<Operation> {
    let resolve = |value: &'_ Value| -> (Value, Option<String>) {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#').to_owned();
                (
                    document.pointer(&pointer).cloned().unwrap_or(Value::Null),
                    Some(pointer),
                )
            }
            None => (value.clone(), None),
        }
    };
    let mut operations = Vec::new();
    let paths = document["paths"]
        .as_object()
        .expect("`paths` in the description");
    for (path, item) in paths {
        let item_pointer = format!("/paths/{}", escape_pointer(path));
        let template = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect::<Vec<_>>();
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            let Some(op) = item.get(method) else {
                continue;
            };
            let pointer = format!("{item_pointer}/{method}");
            let mut params = Vec::new();
            let lists = [
                (item.get("parameters"), format!("{item_pointer}/parameters")),
                (op.get("parameters"), format!("{pointer}/parameters")),
            ];
            for (list, list_pointer) in lists {
                for (n, raw) in list
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let (param, param_pointer) = resolve(raw);
                    let param_pointer =
                        param_pointer.unwrap_or_else(|| format!("{list_pointer}/{n}"));
                    let (schema, _) = resolve(&param["schema"]);
                    let description = param["description"].as_str().unwrap_or("");
                    params.push(Param {
                        name: param["name"].as_str().unwrap_or("").to_owned(),
                        location: param["in"].as_str().unwrap_or("").to_owned(),
                        required: param["required"].as_bool().unwrap_or(false),
                        schema: format!("{param_pointer}/schema"),
                        kind: match &schema["type"] {
                            Value::String(kind) => kind.clone(),
                            Value::Array(kinds) => kinds
                                .iter()
                                .filter_map(Value::as_str)
                                .find(|k| *k != "null")
                                .unwrap_or("string")
                                .to_owned(),
                            _ => "string".to_owned(),
                        },
                        documented_max: description
                            .split_once("(max ")
                            .and_then(|(_, rest)| rest.split_once(')'))
                            .and_then(|(n, _)| n.trim().parse().ok()),
                    });
                }
            }
            let (request_body, _) = resolve(&op["requestBody"]);
            let body = request_body
                .pointer("/content/application~1json/schema")
                .map(|_| request_body["required"].as_bool().unwrap_or(false));
            operations.push(Operation {
                id: op["operationId"].as_str().unwrap_or("?").to_owned(),
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                pointer,
                params,
                body,
            });
        }
    }
    operations
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` joins the `type` (and the `enum`), or
/// the schema becomes `anyOf: [null, schema]` when it has no `type`.
fn to_json_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                to_json_schema(child);
            }
            if map.get("nullable") != Some(&Value::Bool(true)) {
                return;
            }
            map.remove("nullable");
            if let Some(Value::Array(members)) = map.get_mut("enum")
                && !members.contains(&Value::Null)
            {
                members.push(Value::Null);
            }
            match map.get_mut("type") {
                Some(Value::String(kind)) => {
                    let kind = std::mem::take(kind);
                    map.insert("type".to_owned(), serde_json::json!([kind, "null"]));
                }
                Some(_) => {}
                None => {
                    let has_constraint = map
                        .keys()
                        .any(|k| matches!(k.as_str(), "$ref" | "allOf" | "anyOf" | "oneOf"));
                    if has_constraint {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert(
                            "anyOf".to_owned(),
                            serde_json::json!([{ "type": "null" }, inner]),
                        );
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_json_schema),
        _ => {}
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn declared(op: &Operation, location: &str) -> String {
    let names: Vec<&str> = op
        .params
        .iter()
        .filter(|p| p.location == location)
        .map(|p| p.name.as_str())
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn describe(req: &Req) -> String {
    if req.raw_query.is_empty() {
        format!("{} {}", req.method, req.raw_path)
    } else {
        format!("{} {}?{}", req.method, req.raw_path, req.raw_query)
    }
}

fn one_line(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}
