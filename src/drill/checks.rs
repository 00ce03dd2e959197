//! The drill's checks, each a verdict naming what it measured: the targets (RTO, RPO), row
//! counts and schema version against those the backup recorded, invalid indexes, `NOT VALID`
//! constraints, and the optional smoke suite.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backup::verify::compare_counts;
use crate::error::{Result, ResultExt};
use crate::postgres::Database;
use crate::state::backup::MigrationVersion;
use crate::state::drill::Check;
use crate::ui::format_duration;

pub(crate) const PASS: &str = "pass";
pub(crate) const FAIL: &str = "fail";
pub(crate) const SKIPPED: &str = "skipped";

fn check(name: &str, pass: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        verdict: if pass { PASS } else { FAIL }.to_string(),
        detail,
    }
}

fn skipped(name: &str, detail: &str) -> Check {
    Check {
        name: name.to_string(),
        verdict: SKIPPED.to_string(),
        detail: detail.to_string(),
    }
}

/// The restore (fetch, SHA-256 check, restore, row count) within `max`.
pub(crate) fn rto(took: Duration, max: Duration) -> Check {
    let pass = took <= max;
    check(
        "rto",
        pass,
        format!(
            "fetched and restored in {} ({} the target of {})",
            crate::ui::took(took),
            if pass { "within" } else { "over" },
            format_duration(max)
        ),
    )
}

/// The backup's age (`backup_id`, taken at `taken`) within `max`.
pub(crate) fn rpo(age: Duration, max: Duration, backup_id: &str, taken: &str) -> Check {
    let pass = age <= max;
    check(
        "rpo",
        pass,
        format!(
            "the backup `{backup_id}` is {} old (taken {taken}; {} the target of {})",
            crate::ui::took(age),
            if pass { "within" } else { "over" },
            format_duration(max)
        ),
    )
}

/// Every table's rows after the restore against the counts recorded at backup time.
pub(crate) fn row_counts(
    recorded: Option<&BTreeMap<String, u64>>,
    restored: &BTreeMap<String, u64>,
) -> Check {
    let Some(recorded) = recorded else {
        return skipped(
            "row-counts",
            "the backup's sidecar records no row counts (taken by an older shipgate without `verify: restore`)",
        );
    };
    match compare_counts(recorded, restored) {
        Ok(()) => check(
            "row-counts",
            true,
            format!(
                "{} tables, {} rows: every count equals the one recorded at backup time",
                restored.len(),
                restored.values().sum::<u64>()
            ),
        ),
        Err(diff) => check(
            "row-counts",
            false,
            format!("row counts differ from those recorded at backup time: {diff}"),
        ),
    }
}

fn describe_versions(versions: &[MigrationVersion]) -> String {
    if versions.is_empty() {
        return "no migration history table".to_string();
    }
    versions
        .iter()
        .map(|v| {
            format!(
                "`{}` ({}) at `{}`, {} applied",
                v.table,
                v.tool,
                v.version.as_deref().unwrap_or("none"),
                v.applied
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The migration history tables' versions after the restore against the sidecar's.
pub(crate) fn schema_version(
    recorded: Option<&[MigrationVersion]>,
    restored: &[MigrationVersion],
) -> Check {
    let Some(recorded) = recorded else {
        return skipped(
            "schema-version",
            "the backup's sidecar records no schema version (taken by an older shipgate)",
        );
    };
    if recorded == restored {
        check("schema-version", true, describe_versions(restored))
    } else {
        check(
            "schema-version",
            false,
            format!(
                "the restored schema version differs: {} after the restore, {} at backup time",
                describe_versions(restored),
                describe_versions(recorded)
            ),
        )
    }
}

/// Indexes PostgreSQL will not use (`pg_index.indisvalid = false`), as `schema.index`.
pub(crate) async fn invalid_indexes(db: &Database) -> Result<Vec<String>> {
    let rows = db
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT i.indisvalid ORDER BY 1",
        )
        .await
        .context("cannot look for invalid indexes in the scratch database")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// Constraints never validated (`NOT VALID`: `pg_constraint.convalidated = false`), as
/// `` `schema.table`: `name` `` (a domain's as `domain type`).
pub(crate) async fn unvalidated_constraints(db: &Database) -> Result<Vec<String>> {
    let rows = db
        .query(
            "SELECT CASE WHEN cl.oid IS NULL THEN 'domain ' || format_type(con.contypid, NULL) \
             ELSE format('%I.%I', n.nspname, cl.relname) END, con.conname \
             FROM pg_catalog.pg_constraint con \
             LEFT JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid \
             LEFT JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace \
             WHERE NOT con.convalidated ORDER BY 1, 2",
        )
        .await
        .context("cannot look for NOT VALID constraints in the scratch database")?;
    Ok(rows
        .into_iter()
        .filter(|r| r.len() == 2)
        .map(|r| format!("`{}`: `{}`", r[0], r[1]))
        .collect())
}

/// No invalid index.
pub(crate) fn indexes(invalid: &[String]) -> Check {
    if invalid.is_empty() {
        check("indexes", true, "every index is valid".to_string())
    } else {
        check(
            "indexes",
            false,
            format!(
                "{} invalid index(es) (`pg_index.indisvalid = false`): {}",
                invalid.len(),
                first_ten(invalid, |i| format!("`{i}`"))
            ),
        )
    }
}

/// No `NOT VALID` constraint.
pub(crate) fn constraints(unvalidated: &[String]) -> Check {
    if unvalidated.is_empty() {
        check(
            "constraints",
            true,
            "every constraint is validated".to_string(),
        )
    } else {
        check(
            "constraints",
            false,
            format!(
                "{} constraint(s) are `NOT VALID` (`pg_constraint.convalidated = false`): {}",
                unvalidated.len(),
                first_ten(unvalidated, Clone::clone)
            ),
        )
    }
}

fn first_ten(items: &[String], show: impl Fn(&String) -> String) -> String {
    let mut text = items
        .iter()
        .take(10)
        .map(show)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 10 {
        text.push_str(&format!(" (and {} more)", items.len() - 10));
    }
    text
}

/// The smoke suite's run against the app pointed at the scratch database.
pub(crate) fn smoke(
    suite: Option<&str>,
    passed: bool,
    counts: Option<(usize, usize)>,
    how: &str,
) -> Check {
    let Some(suite) = suite else {
        return skipped("smoke", "no smoke suite given (`--smoke-suite`)");
    };
    let tally = match counts {
        Some((total, failed)) => format!("{} of {total} tests passed", total - failed),
        None => how.to_string(),
    };
    check("smoke", passed, format!("`{suite}`: {tally}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_name_the_values() {
        let hour = Duration::from_secs(3600);
        assert_eq!(rto(Duration::from_millis(2500), hour).verdict, PASS);
        let late = rto(Duration::from_secs(7200), hour);
        assert_eq!(late.verdict, FAIL);
        assert!(
            late.detail.contains("in 2h (over the target of 1h)"),
            "{late:?}"
        );
        let old = rpo(Duration::from_secs(90_000), hour * 24, "backup-1-a", "T");
        assert_eq!(old.verdict, FAIL);
        assert!(
            old.detail.contains("`backup-1-a` is 1d1h old"),
            "{}",
            old.detail
        );

        let recorded: BTreeMap<String, u64> = [("public.a".to_string(), 3)].into_iter().collect();
        assert_eq!(row_counts(Some(&recorded), &recorded).verdict, PASS);
        let fewer: BTreeMap<String, u64> = [("public.a".to_string(), 2)].into_iter().collect();
        let differs = row_counts(Some(&recorded), &fewer);
        assert_eq!(differs.verdict, FAIL);
        assert!(
            differs.detail.contains("`public.a` has 2 rows, expected 3"),
            "{}",
            differs.detail
        );
        assert_eq!(row_counts(None, &fewer).verdict, SKIPPED);

        let v = |version: &str| MigrationVersion {
            table: "public.schema_migrations".into(),
            tool: "rails".into(),
            version: Some(version.into()),
            applied: 2,
        };
        assert_eq!(schema_version(Some(&[v("2")]), &[v("2")]).verdict, PASS);
        let moved = schema_version(Some(&[v("2")]), &[v("1")]);
        assert_eq!(moved.verdict, FAIL);
        assert!(moved.detail.contains("at `1`"), "{}", moved.detail);
        assert!(indexes(&["public.i".into()]).detail.contains("`public.i`"));
        assert_eq!(constraints(&[]).verdict, PASS);
        assert_eq!(smoke(None, true, None, "").verdict, SKIPPED);
        assert!(
            smoke(Some("s.yml"), false, Some((3, 1)), "")
                .detail
                .contains("2 of 3 tests passed")
        );
    }
}
