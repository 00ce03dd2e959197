//! Web metrics (Argo Rollouts' `web` provider): a GET of any JSON endpoint — a Datadog, New
//! Relic or CloudWatch query API, an in-house dashboard — and the number at a JSON location in
//! the answer. The request goes through the Prometheus client's HTTP core (retries with backoff
//! on down/5xx/429, then a dependency error; TLS verified; no redirects; secret headers marked
//! sensitive and sent only to the URL's own origin). Nothing at the location, `null`, an empty
//! list or NaN is no data, never a pass.

use serde_json::Value;
use url::Url;

use super::Error;
use super::prometheus::{Client, Reading};
use crate::metrics::json_path::Path;

/// A web metric's `path`: `$.data.result[0].value`, a JSON pointer `/data/result/0/value`, or
/// the same without `$.` (`data.result[0].value`); empty for the whole answer.
pub(crate) fn parse_path(text: &str) -> Result<Path, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('$') || text.starts_with('/') {
        Path::parse(text)
    } else if text.starts_with('[') {
        Path::parse(&format!("${text}"))
    } else {
        Path::parse(&format!("$.{text}"))
    }
}

/// The origin (`https://host:port`) of a web metric's URL template: where its requests, and so
/// its credentials, may go. The scheme and host cannot be templated.
pub(crate) fn origin(template: &str) -> Result<String, Error> {
    let shown = || crate::secret::redact_url(template.trim());
    let url = Url::parse(template.trim()).map_err(|e| {
        Error::Setup(format!(
            "`url` `{}` is not a URL ({e}); write it like `https://api.example.com/v1/query?q=...` (only the path and query may hold `{{{{...}}}}`)",
            shown()
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Setup(format!(
            "`url` `{}` must be an http:// or https:// URL with a host",
            shown()
        )));
    }
    if url.host_str().is_some_and(|h| h.contains('{')) {
        return Err(Error::Setup(format!(
            "`url` `{}`: the host cannot be templated (credentials must only go to one known host)",
            shown()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Setup(format!(
            "`url` `{}` carries credentials; take them out and use `auth` (a bearer token, basic auth or secret headers read from secrets)",
            shown()
        )));
    }
    Ok(url.origin().ascii_serialization())
}

/// The number at `path` in the JSON answer to a GET of `url` (rendered, on `client`'s origin).
pub(crate) async fn read(client: &Client, url: &str, path: &Path) -> Result<Reading, Error> {
    let parsed = Url::parse(url).map_err(|e| {
        Error::Setup(format!(
            "`{}` is not a URL once rendered ({e})",
            crate::secret::redact_url(url)
        ))
    })?;
    let json = client.fetch(parsed).await?;
    reading(&json, path).map_err(|detail| Error::Malformed {
        backend: client.label().to_string(),
        detail,
    })
}

/// What the answer says at `path`: a number (a JSON number, or a string holding one), else no
/// data (nothing there, `null`, `[]`, NaN), else an error naming what was found.
pub(crate) fn reading(json: &Value, path: &Path) -> Result<Reading, String> {
    let value = match path.find(json) {
        None => {
            return Ok(Reading::NoData(format!(
                "nothing at `{path}` in the answer"
            )));
        }
        Some(Value::Null) => return Ok(Reading::NoData(format!("`{path}` is null"))),
        Some(Value::Array(items)) if items.is_empty() => {
            return Ok(Reading::NoData(format!("`{path}` is an empty list")));
        }
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match value {
        Some(v) if v.is_nan() => Ok(Reading::NoData(format!("`{path}` is NaN"))),
        Some(v) => Ok(Reading::Value(v)),
        None => {
            let found = path.find(json).map(Value::to_string).unwrap_or_default();
            Err(format!(
                "the value at `{path}` is {}, not a number; point `path` at one number (e.g. `data.result[0].value[1]`)",
                crate::text::quote(&found)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_with_or_without_the_dollar() {
        let answer =
            json!({"data": {"result": [{"value": [1700000000.0, "0.021"]}]}, "series": [3, 5]});
        for text in [
            "data.result[0].value[1]",
            "$.data.result[0].value[1]",
            "/data/result/0/value/1",
        ] {
            let path = parse_path(text).expect("path");
            assert_eq!(reading(&answer, &path), Ok(Reading::Value(0.021)), "{text}");
        }
        let last = parse_path("series[-1]").expect("path");
        assert_eq!(reading(&answer, &last), Ok(Reading::Value(5.0)));
    }

    #[test]
    fn missing_null_empty_and_nan_are_no_data_and_text_is_an_error() {
        let answer = json!({"a": null, "b": [], "c": "NaN", "d": "high", "e": {"x": 1}});
        for (text, says) in [
            ("missing", "nothing at"),
            ("a", "is null"),
            ("b", "empty list"),
            ("c", "NaN"),
        ] {
            match reading(&answer, &parse_path(text).expect("path")) {
                Ok(Reading::NoData(why)) => assert!(why.contains(says), "{text}: {why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let error = reading(&answer, &parse_path("d").expect("path")).expect_err("text");
        assert!(
            error.contains("`\"high\"`") && error.contains("not a number"),
            "{error}"
        );
        assert!(reading(&answer, &parse_path("e").expect("path")).is_err());
    }

    #[test]
    fn the_origin_is_fixed_and_credential_free() {
        assert_eq!(
            origin("https://api.datadoghq.com/api/v1/query?query=avg:x{version:{{version}}}")
                .expect("origin"),
            "https://api.datadoghq.com"
        );
        assert!(origin("https://{{stage}}.example/x").is_err());
        assert!(origin("https://user:pw@api.example/x").is_err());
        assert!(origin("ftp://api.example/x").is_err());
    }
}
