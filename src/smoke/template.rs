//! `{{name}}` templates in URLs, headers, bodies and connection strings, and the variables they
//! read: suite `vars`, `--var`, secrets and earlier captures. A variable marked secret is a
//! [`Secret`] (registered for masking), so anything rendered from it is redacted wherever it is
//! printed.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::secret::Secret;

/// A value a template can read.
#[derive(Debug, Clone)]
pub(crate) enum Var {
    Plain(String),
    Secret(Secret),
}

impl Var {
    pub(crate) fn text(&self) -> &str {
        match self {
            Var::Plain(text) => text,
            Var::Secret(secret) => secret.expose(),
        }
    }

    pub(crate) fn is_secret(&self) -> bool {
        matches!(self, Var::Secret(_))
    }
}

/// The variables in scope: fixed ones, then captures added as tests pass.
pub(crate) type Vars = BTreeMap<String, Var>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

/// Text with `{{name}}` placeholders; `{{{{` is not special (there is no escape: a literal `{{`
/// that is not a placeholder is an error, so typos never reach a server).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "super::scalar::Scalar")]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl TryFrom<super::scalar::Scalar> for Template {
    type Error = String;
    fn try_from(value: super::scalar::Scalar) -> Result<Self, String> {
        Template::parse(&value.0)
    }
}

/// Variable names: letters, digits, `_`, `-`, `.`, starting with a letter or `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(format!(
                    "`{{{{` without a closing `}}}}` in {}; write `{{{{name}}}}`",
                    crate::actions::quote(text)
                ));
            };
            let name = after[..end].trim();
            if !valid_name(name) {
                return Err(format!(
                    "`{{{{{}}}}}` is not a variable name: use letters, digits, `_`, `-` or `.`",
                    crate::actions::one_line(&after[..end])
                ));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// A template with no placeholders.
    pub(crate) fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// The literal text before the first placeholder; `None` when it starts with one.
    pub(crate) fn prefix(&self) -> Option<&str> {
        match self.parts.first() {
            Some(Part::Text(text)) => Some(text),
            Some(Part::Var(_)) => None,
            None => Some(""),
        }
    }

    /// The variable names it reads.
    pub(crate) fn names(&self) -> BTreeSet<&str> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(name) => Some(name.as_str()),
                Part::Text(_) => None,
            })
            .collect()
    }

    /// Renders with `vars`; also says whether a secret went into the result. Names were checked
    /// before the run, so a missing one is reported as an error, not left in place.
    pub(crate) fn render(&self, vars: &Vars) -> Result<Rendered, String> {
        let mut text = String::new();
        let mut secret = false;
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Var(name) => {
                    let var = vars
                        .get(name)
                        .ok_or_else(|| format!("variable `{name}` has no value"))?;
                    secret |= var.is_secret();
                    text.push_str(var.text());
                }
            }
        }
        Ok(Rendered { text, secret })
    }
}

/// A rendered template.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) text: String,
    /// A secret variable went into it.
    pub(crate) secret: bool,
}

/// Every template inside a JSON body (string values and keys).
pub(crate) fn json_names(
    value: &serde_json::Value,
    out: &mut BTreeSet<String>,
) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) => {
            out.extend(Template::parse(s)?.names().into_iter().map(str::to_string));
        }
        serde_json::Value::Array(items) => {
            for item in items {
                json_names(item, out)?;
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                out.extend(
                    Template::parse(key)?
                        .names()
                        .into_iter()
                        .map(str::to_string),
                );
                json_names(item, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Renders every string of a JSON body. A string that is exactly one placeholder keeps the
/// variable's text as a string (JSON bodies are built from text values).
pub(crate) fn render_json(
    value: &serde_json::Value,
    vars: &Vars,
    secret: &mut bool,
) -> Result<serde_json::Value, String> {
    Ok(match value {
        serde_json::Value::String(s) => {
            let rendered = Template::parse(s)?.render(vars)?;
            *secret |= rendered.secret;
            serde_json::Value::String(rendered.text)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| render_json(item, vars, secret))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, item) in map {
                let rendered = Template::parse(key)?.render(vars)?;
                *secret |= rendered.secret;
                out.insert(rendered.text, render_json(item, vars, secret)?);
            }
            serde_json::Value::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_track_secrets() {
        let t = Template::parse("Bearer {{ token }} for {{user}}").expect("parses");
        assert_eq!(t.names().into_iter().collect::<Vec<_>>(), ["token", "user"]);
        let mut vars = Vars::new();
        vars.insert("user".into(), Var::Plain("ann".into()));
        vars.insert(
            "token".into(),
            Var::Secret(Secret::new("tok-template-test-1")),
        );
        let r = t.render(&vars).expect("renders");
        assert_eq!(r.text, "Bearer tok-template-test-1 for ann");
        assert!(r.secret);
        assert!(Template::parse("{{user").is_err());
        assert!(Template::parse("{{a b}}").is_err());
        assert!(Template::parse("{{}}").is_err());
        assert!(Template::literal("x").render(&Vars::new()).is_ok());
        assert!(
            Template::parse("{{nope}}")
                .expect("parses")
                .render(&vars)
                .is_err()
        );
    }

    #[test]
    fn json_bodies_render_every_string() {
        let body = serde_json::json!({"user": "{{user}}", "n": 3, "list": ["{{user}}!"]});
        let mut names = BTreeSet::new();
        json_names(&body, &mut names).expect("names");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["user"]);
        let mut vars = Vars::new();
        vars.insert("user".into(), Var::Plain("ann".into()));
        let mut secret = false;
        let out = render_json(&body, &vars, &mut secret).expect("renders");
        assert_eq!(
            out,
            serde_json::json!({"user": "ann", "n": 3, "list": ["ann!"]})
        );
        assert!(!secret);
    }
}
