//! JSON values by location: a JSON pointer (`/items/0/id`, RFC 6901) or a JSONPath query
//! (RFC 9535, by `serde_json_path`): `$.items[0].id`, `$['odd key']`, `$.items[-1]`, and the
//! queries that select several values — wildcards (`$.items[*].id`), filters
//! (`$.items[?@.status == 'down']`, `length()`, `count()`, `match()`), slices and descendants.
//!
//! A pointer or a *singular* query names at most one value ([`Path::find`]); any query also
//! gives every value it selects ([`Path::select`]).

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum How {
    /// A JSON pointer's reference tokens, unescaped.
    Pointer(Vec<String>),
    /// A JSONPath query; `singular` when it can select at most one value.
    Query {
        query: serde_json_path::JsonPath,
        singular: bool,
    },
}

/// A parsed location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    text: String,
    how: How,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    /// Parses `/pointer` or a `$` query.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        let how = if text.is_empty() || text.starts_with('/') {
            How::Pointer(pointer_tokens(text))
        } else if text.starts_with('$') {
            let query = serde_json_path::JsonPath::parse(text).map_err(|e| {
                format!(
                    "JSON path {} is not valid at character {}: {}; write e.g. `$.items[0].id`, `$['a key']` or `$.items[?@.status == 'down']` (RFC 9535)",
                    crate::text::quote(text),
                    e.position() + 1,
                    e.message()
                )
            })?;
            How::Query {
                query,
                singular: is_singular(text),
            }
        } else {
            return Err(format!(
                "{} is not a JSON location: start a pointer with `/` (`/items/0/id`) or a path with `$` (`$.items[0].id`)",
                crate::text::quote(text)
            ));
        };
        Ok(Path {
            text: text.to_string(),
            how,
        })
    }

    /// Whether it names at most one value (a pointer, or a query of names and indexes only).
    pub(crate) fn is_singular(&self) -> bool {
        match &self.how {
            How::Pointer(_) => true,
            How::Query { singular, .. } => *singular,
        }
    }

    /// The value at this location, if any. A query that may select several values finds one
    /// only when it selects exactly one.
    pub(crate) fn find<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        match &self.how {
            How::Pointer(tokens) => {
                let mut at = root;
                for token in tokens {
                    at = match at {
                        Value::Object(map) => map.get(token)?,
                        Value::Array(items) => items.get(array_index(token)?)?,
                        _ => return None,
                    };
                }
                Some(at)
            }
            How::Query { query, .. } => query.query(root).exactly_one().ok(),
        }
    }

    /// Every value this location selects, in document order (none, or one for a pointer or a
    /// singular query).
    pub(crate) fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        match &self.how {
            How::Pointer(_) => self.find(root).into_iter().collect(),
            How::Query { query, .. } => query.query(root).all(),
        }
    }
}

/// A pointer's `/0` is a key in the syntax but an index into arrays (no sign, no leading zero).
fn array_index(token: &str) -> Option<usize> {
    let plain = token.bytes().all(|b| b.is_ascii_digit()) && !token.is_empty();
    if !plain || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn pointer_tokens(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text[1..]
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Whether a (valid) query is singular in RFC 9535's sense (§2.3.5.1): only name and index
/// selectors, one per segment, no descendants. Read from its text, outside quoted names.
fn is_singular(text: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut previous = '\0';
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '*' | '?' | ':' | ',' => return false,
            '.' if previous == '.' => return false,
            _ => {}
        }
        previous = c;
    }
    true
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
    fn invalid_paths_are_refused_with_where() {
        for bad in ["a.b", "$.", "$.a[", "$.a[x]", "$.a[?@.b ==]"] {
            let error = Path::parse(bad).expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
        let error = Path::parse("$.a[x]").expect_err("invalid");
        assert!(error.contains("at character"), "{error}");
    }

    #[test]
    fn queries_select_several_values_and_filters_count_them() {
        let doc = json!({"items": [
            {"id": 1, "status": "up", "tags": ["a"]},
            {"id": 2, "status": "down", "tags": []},
            {"id": 3, "status": "down", "tags": ["a", "b"]},
        ], "name": "x"});
        let select = |p: &str| -> Vec<Value> {
            let path = Path::parse(p).expect("parses");
            path.select(&doc).into_iter().cloned().collect()
        };
        assert_eq!(select("$.items[*].id"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            select("$.items[?@.status == 'down'].id"),
            vec![json!(2), json!(3)]
        );
        assert_eq!(select("$.items[?length(@.tags) > 1].id"), vec![json!(3)]);
        assert_eq!(select("$..id").len(), 3);
        assert_eq!(select("$.items[0:2].id"), vec![json!(1), json!(2)]);
        assert!(select("$.items[?@.status == 'gone']").is_empty());
        assert_eq!(select("$.name"), vec![json!("x")]);
        assert_eq!(select("/items/1/id"), vec![json!(2)]);
        // `find` is for one value: a query selecting several finds none.
        let several = Path::parse("$.items[*].id").expect("parses");
        assert!(!several.is_singular());
        assert_eq!(several.find(&doc), None);
        let one = Path::parse("$.items[?@.id == 3].status").expect("parses");
        assert_eq!(one.find(&doc), Some(&json!("down")));
    }

    #[test]
    fn singular_queries_are_told_apart() {
        for singular in [
            "$",
            "$.a",
            "$.a[0]",
            "$['a*b']['c?d']",
            "$[\"x.y\"][-1]",
            "/a/*",
        ] {
            assert!(
                Path::parse(singular).expect(singular).is_singular(),
                "{singular}"
            );
        }
        for several in ["$.*", "$..a", "$.a[*]", "$.a[0:1]", "$.a[0,1]", "$.a[?@.b]"] {
            assert!(
                !Path::parse(several).expect(several).is_singular(),
                "{several}"
            );
        }
    }
}
