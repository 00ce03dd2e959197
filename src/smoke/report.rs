//! Reports of a smoke run: JUnit XML (one `<testcase>` per test), the Markdown summary with
//! expected vs actual for every failed check, and annotations. Everything here is built from
//! redacted text; XML escaping happens after redaction so no escaped form of a secret survives.

use super::assert::Failure;
use super::runner::{Status, TestResult, fmt_ms};
use super::snapshot::SnapshotFile;
use crate::actions::{self, Level, Table};
use crate::ui::mark::{FAIL, PASS, SKIPPED, TIMEOUT};

/// At most this many annotations per run (the runner shows only the first few anyway).
const MAX_ANNOTATIONS: usize = 10;

/// Text fit for XML 1.0 character data and attribute values: redacted, escaped, and without the
/// control characters XML forbids.
pub(crate) fn xml_escape(text: &str) -> String {
    let text = crate::secret::redact(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// JUnit XML: one `<testsuite>` for the suite, one `<testcase>` per test; a failed test has a
/// `<failure>` whose message is its first failed check and whose text lists all of them with
/// expected and actual values; a test skipped because a dependency failed has `<skipped>`.
pub(crate) fn junit(
    suite_name: &str,
    results: &[&TestResult],
    duration_ms: u64,
    timestamp: &str,
) -> String {
    let failures = count(results, Status::Failed);
    let skipped = count(results, Status::Skipped);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"shipgate smoke\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\">\n",
        results.len(),
        seconds(duration_ms)
    ));
    out.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{}\" timestamp=\"{}\">\n",
        xml_escape(suite_name),
        results.len(),
        seconds(duration_ms),
        xml_escape(timestamp),
    ));
    for r in results {
        out.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
            xml_escape(&r.name),
            xml_escape(suite_name),
            seconds(r.duration_ms)
        ));
        let mut properties = Vec::new();
        if !r.target.is_empty() {
            properties.push(("target", r.target.clone()));
        }
        properties.push(("attempts", r.attempts.to_string()));
        if let Some(ms) = r.time_to_ready_ms {
            properties.push(("time_to_ready_ms", ms.to_string()));
        }
        out.push_str(">\n      <properties>\n");
        for (k, v) in properties {
            out.push_str(&format!(
                "        <property name=\"{k}\" value=\"{}\"/>\n",
                xml_escape(&v)
            ));
        }
        out.push_str("      </properties>\n");
        let first = r.failures.first().cloned().unwrap_or_default();
        match r.status {
            Status::Passed => {}
            Status::Failed => {
                let unreachable = r.failed_checks.first().is_some_and(|f| {
                    matches!(
                        f.check.as_str(),
                        "request" | "connect" | "database" | "query"
                    )
                });
                let kind = match (r.ready_timed_out, unreachable) {
                    (true, _) => "not-ready",
                    (false, true) => "unreachable",
                    (false, false) => "assert",
                };
                out.push_str(&format!(
                    "      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n",
                    xml_escape(&first),
                    xml_escape(&r.failures.join("\n"))
                ));
            }
            Status::Skipped => {
                out.push_str(&format!(
                    "      <skipped message=\"{}\"/>\n",
                    xml_escape(&first)
                ));
            }
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// How many of `results` ended with `status`.
pub(crate) fn count(results: &[&TestResult], status: Status) -> usize {
    results.iter().filter(|r| r.status == status).count()
}

/// The step summary: a verdict line, every test, and a table of failed checks.
pub(crate) fn summary(results: &[&TestResult], duration_ms: u64, environment: &str) -> String {
    let total = results.len();
    let passed = count(results, Status::Passed);
    let failed = count(results, Status::Failed);
    let skipped = count(results, Status::Skipped);
    let mut out = if failed + skipped == 0 {
        format!("### {PASS} Smoke tests passed in `{environment}`: {passed} of {total}\n\n")
    } else {
        format!(
            "### {FAIL} Smoke tests failed in `{environment}`: {failed} failed, {skipped} not run, {passed} of {total} passed\n\n"
        )
    };
    let with_ready = results
        .iter()
        .any(|r| r.time_to_ready_ms.is_some() || r.ready_timed_out);
    let mut header = vec!["Test", "Result", "Time"];
    if with_ready {
        header.push("Ready after");
    }
    header.push("Attempts");
    let mut table = Table::new(&header);
    for r in results {
        let result = match r.status {
            Status::Passed => format!("{PASS} passed"),
            Status::Failed if r.ready_timed_out => format!("{TIMEOUT} not ready"),
            Status::Failed => format!("{FAIL} failed"),
            Status::Skipped => format!("{SKIPPED} not run"),
        };
        let mut row = vec![
            format!("`{}`", actions::one_line(&r.name).replace('`', "'")),
            result,
            fmt_ms(r.duration_ms),
        ];
        if with_ready {
            row.push(match (r.time_to_ready_ms, r.ready_timed_out) {
                (Some(ms), _) => fmt_ms(ms),
                (None, true) => "never".into(),
                (None, false) => "—".into(),
            });
        }
        row.push(r.attempts.to_string());
        table.row(&row);
    }
    out.push_str(&table.render());
    let failures: Vec<(&TestResult, &Failure)> = results
        .iter()
        .filter(|r| r.status != Status::Passed)
        .flat_map(|r| r.failed_checks.iter().map(move |f| (*r, f)))
        .collect();
    if !failures.is_empty() {
        out.push_str("\n#### Failed checks\n\n");
        let mut table = Table::new(&["Test", "Check", "Expected", "Actual"]);
        for (r, f) in failures {
            table.row(&[
                format!("`{}`", actions::one_line(&r.name).replace('`', "'")),
                format!("`{}`", f.check.replace('`', "'")),
                f.expected.clone(),
                f.actual.clone(),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push_str(&format!("\nRan in {}.\n", fmt_ms(duration_ms)));
    out
}

/// One error annotation per failed test (capped), naming the test and its failed checks.
pub(crate) fn annotate(results: &[&TestResult]) {
    let failed: Vec<&&TestResult> = results
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    for r in failed.iter().take(MAX_ANNOTATIONS) {
        actions::annotate(
            Level::Error,
            Some(&format!("smoke test {}", r.name)),
            &r.failures.join("\n"),
        );
    }
    if failed.len() > MAX_ANNOTATIONS {
        actions::annotate(
            Level::Error,
            Some("smoke tests"),
            &format!(
                "{} more tests failed; see the step summary and the JUnit report",
                failed.len() - MAX_ANNOTATIONS
            ),
        );
    }
}

/// The summary of a snapshot taken: every value it recorded.
pub(crate) fn snapshot_summary(file: &SnapshotFile) -> String {
    let mut table = Table::new(&["Test", "Value", "Recorded"]);
    for (test, values) in &file.values {
        for (path, value) in values {
            table.row(&[
                format!("`{}`", actions::one_line(test).replace('`', "'")),
                format!("`{path}`"),
                format!(
                    "`{}`",
                    actions::one_line(&value.to_string()).replace('`', "'")
                ),
            ]);
        }
    }
    format!(
        "### 📸 Smoke snapshot `{}` taken\n\n{}\nAfter the deploy, `shipgate smoke` compares these with the suite's `before` / `growth` asserts.\n",
        file.name,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(
            xml_escape("a<b>&\"c\"'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;\u{fffd}"
        );
    }
}
