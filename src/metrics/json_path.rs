//! A small JSON path for reading one value out of an API's answer: `status.indicator`,
//! `data.result[0].value[1]`, `$.incidents`, `["key.with.dots"].count`. Keys and array indexes
//! only; no wildcards, filters or recursion (an answer that needs them wants a query API).

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<Step>,
    text: String,
}

const SYNTAX: &str = "write keys separated by `.` and array indexes in brackets, such as `status.indicator`, `data.result[0].value[1]` or `[\"key.with.dots\"]`";

impl std::str::FromStr for JsonPath {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shown = crate::text::one_line(text.trim());
        let bad = |why: &str| format!("`{shown}` is not a JSON path: {why}; {SYNTAX}");
        let mut rest = text.trim();
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        let mut first = true;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| bad("a `[` without its `]`"))?;
                let inside = after[..end].trim();
                if let Some(quoted) = inside
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                {
                    steps.push(Step::Key(quoted.to_string()));
                } else {
                    let index = inside.parse::<usize>().map_err(|_| {
                        bad(&format!(
                            "`[{inside}]` is neither an index nor a quoted key"
                        ))
                    })?;
                    steps.push(Step::Index(index));
                }
                rest = &after[end + 1..];
            } else {
                let dotted = rest.strip_prefix('.');
                if dotted.is_none() && !first {
                    return Err(bad("keys are separated by `.`"));
                }
                let after = dotted.unwrap_or(rest);
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let key = &after[..end];
                if key.is_empty() {
                    return Err(bad("an empty key"));
                }
                if key.chars().any(|c| c.is_whitespace() || c == ']') {
                    return Err(bad(&format!("the key `{key}` needs quotes: `[\"{key}\"]`")));
                }
                steps.push(Step::Key(key.to_string()));
                rest = &after[end..];
            }
            first = false;
        }
        if steps.is_empty() {
            return Err(bad("it names no key"));
        }
        Ok(JsonPath { steps, text: shown })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// The value at the path, or where the answer ran out (the path as far as it was found).
    pub(crate) fn find<'a>(&self, json: &'a Value) -> Result<&'a Value, String> {
        let mut here = json;
        let mut walked = String::from("$");
        for step in &self.steps {
            let next = match step {
                Step::Key(key) => {
                    walked.push_str(&format!(".{key}"));
                    here.get(key.as_str())
                }
                Step::Index(index) => {
                    walked.push_str(&format!("[{index}]"));
                    match here {
                        Value::Array(items) => items.get(*index),
                        _ => None,
                    }
                }
            };
            here = next.ok_or_else(|| format!("the answer has no `{walked}`"))?;
        }
        Ok(here)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> JsonPath {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_indexes_and_quoted_keys() {
        let answer = json!({
            "status": {"indicator": "none"},
            "data": {"result": [{"value": [1700000000, "0.25"]}]},
            "a.b": {"c": 3},
        });
        assert_eq!(path("status.indicator").find(&answer), Ok(&json!("none")));
        assert_eq!(path("$.status.indicator").find(&answer), Ok(&json!("none")));
        assert_eq!(
            path("data.result[0].value[1]").find(&answer),
            Ok(&json!("0.25"))
        );
        assert_eq!(path("[\"a.b\"].c").find(&answer), Ok(&json!(3)));
        assert_eq!(path("$['a.b'].c").find(&answer), Ok(&json!(3)));
    }

    #[test]
    fn a_missing_step_says_how_far_it_got() {
        let answer = json!({"data": {"result": []}});
        assert_eq!(
            path("data.result[0].value").find(&answer),
            Err("the answer has no `$.data.result[0]`".to_string())
        );
        assert_eq!(
            path("data.nope").find(&answer),
            Err("the answer has no `$.data.nope`".to_string())
        );
    }

    #[test]
    fn bad_paths_name_themselves() {
        for (text, why) in [
            ("", "it names no key"),
            ("$", "it names no key"),
            ("a..b", "an empty key"),
            ("a[x]", "`[x]` is neither an index nor a quoted key"),
            ("a[0", "a `[` without its `]`"),
            ("a[0]b", "keys are separated by `.`"),
            ("a b", "the key `a b` needs quotes"),
        ] {
            let error = text.parse::<JsonPath>().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains(&format!("`{text}`")), "{error}");
        }
    }
}
