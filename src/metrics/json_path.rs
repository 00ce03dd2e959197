//! JSON values by location: a JSON pointer (`/items/0/id`, RFC 6901) or a simple path
//! (`$.items[0].id`, `$['odd key']`, `$.items[-1]`). Only single values: no wildcards, filters
//! or recursive descent, so a path always names at most one value.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(i64),
}

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    text: String,
    steps: Vec<Step>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parses `/pointer` or `$.path`.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        let steps = if text.is_empty() || text.starts_with('/') {
            pointer_steps(text)
        } else if text.starts_with('$') {
            path_steps(text)?
        } else {
            return Err(format!(
                "{} is not a JSON location: start a pointer with `/` (`/items/0/id`) or a path with `$` (`$.items[0].id`)",
                crate::text::quote(text)
            ));
        };
        Ok(Path {
            text: text.to_string(),
            steps,
        })
    }

    /// The value at this location, if any.
    pub(crate) fn find<'a>(&self, root: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut at = root;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Key(key), serde_json::Value::Object(map)) => map.get(key)?,
                (Step::Key(key), serde_json::Value::Array(items)) => {
                    // A pointer's `/0` is a key in the syntax but an index into arrays.
                    items.get(key.parse::<usize>().ok()?)?
                }
                (Step::Index(i), serde_json::Value::Array(items)) => {
                    let index = if *i < 0 {
                        items.len().checked_sub(i.unsigned_abs() as usize)?
                    } else {
                        *i as usize
                    };
                    items.get(index)?
                }
                _ => return None,
            };
        }
        Some(at)
    }
}

fn pointer_steps(text: &str) -> Vec<Step> {
    if text.is_empty() {
        return Vec::new();
    }
    text[1..]
        .split('/')
        .map(|token| Step::Key(token.replace("~1", "/").replace("~0", "~")))
        .collect()
}

fn path_steps(text: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| {
        format!(
            "JSON path {} is not valid: {why}; write e.g. `$.items[0].id` or `$['a key']`",
            crate::text::quote(text)
        )
    };
    let chars: Vec<char> = text.chars().collect();
    let mut steps = Vec::new();
    let mut i = 1;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && !matches!(chars[end], '.' | '[') {
                    end += 1;
                }
                let key: String = chars[start..end].iter().collect();
                if key.is_empty() {
                    return Err(bad("a `.` must be followed by a key"));
                }
                if key == "*" || key.contains([' ', ']', '\'', '"', '(', '?', '*']) {
                    return Err(bad(&format!(
                        "`{key}` is not a plain key (wildcards and filters are not supported)"
                    )));
                }
                steps.push(Step::Key(key));
                i = end;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| bad("a `[` has no closing `]`"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Some(quoted) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Key(quoted.to_string()));
                } else {
                    let index = inner.parse::<i64>().map_err(|_| {
                        bad(&format!("`[{inner}]` is not an index or a quoted key"))
                    })?;
                    steps.push(Step::Index(index));
                }
                i = close + 1;
            }
            other => return Err(bad(&format!("unexpected `{other}`"))),
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_and_paths_find_the_same_values() {
        let doc = json!({"a": {"b": [10, {"c": "x"}], "odd key": 1, "s/l": 2}});
        let find = |p: &str| Path::parse(p).expect("parses").find(&doc).cloned();
        assert_eq!(find("/a/b/0"), Some(json!(10)));
        assert_eq!(find("$.a.b[0]"), Some(json!(10)));
        assert_eq!(find("$.a.b[1].c"), Some(json!("x")));
        assert_eq!(find("$.a.b[-1].c"), Some(json!("x")));
        assert_eq!(find("$['a']['odd key']"), Some(json!(1)));
        assert_eq!(find("/a/s~1l"), Some(json!(2)));
        assert_eq!(find("$"), Some(doc.clone()));
        assert_eq!(find(""), Some(doc.clone()));
        assert_eq!(find("$.a.missing"), None);
        assert_eq!(find("$.a.b[5]"), None);
        assert_eq!(find("$.a.b[-5]"), None);
    }

    #[test]
    fn unsupported_paths_are_refused() {
        for bad in ["a.b", "$.", "$.a[", "$.a[x]", "$..a", "$.a[*]", "$.*"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
