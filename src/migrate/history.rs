//! Migration history tables: finding the table each migration tool keeps (Prisma, EF Core,
//! Flyway, Rails, Django, sqlx, Diesel, Alembic, Liquibase, golang-migrate, or one named), reading
//! it before and after a run, and counting what the run applied.

use std::collections::{BTreeMap, BTreeSet};

use crate::actions;
use crate::error::{Error, Result, ResultExt};
use crate::postgres::{self, Database, Queries};
use crate::state::backup::MigrationVersion;
use crate::state::migrate::HistoryTable;

/// `schema.table` or `table`, case kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    pub(crate) fn parse(text: &str) -> Result<TableName> {
        let text = text.trim();
        let (schema, table) = match text.split_once('.') {
            Some((schema, table)) => (Some(schema.to_string()), table.to_string()),
            None => (None, text.to_string()),
        };
        let bad = |part: &str| part.is_empty() || part.chars().any(|c| c.is_control());
        if bad(&table) || schema.as_deref().is_some_and(bad) {
            return Err(Error::usage(format!(
                "history table {} is not `table` or `schema.table`",
                actions::quote(text)
            )));
        }
        Ok(TableName { schema, table })
    }
}

/// How a migration tool records what it applied.
#[derive(Debug)]
pub(crate) struct Style {
    tool: &'static str,
    table: &'static str,
    /// `SELECT key, name, status FROM {t} ORDER BY …`: one row per migration the tool recorded,
    /// in the order it applied them; status `true` applied, `false` failed, NULL neither (rolled
    /// back, marked as run without running).
    rows: &'static str,
    /// The table holds only the current version(s), not one row per migration.
    version_only: bool,
}

pub(crate) const STYLES: &[Style] = &[
    Style {
        tool: "prisma",
        table: "_prisma_migrations",
        rows: "SELECT id::text, migration_name::text, CASE WHEN rolled_back_at IS NULL THEN finished_at IS NOT NULL END FROM {t} ORDER BY started_at, migration_name",
        version_only: false,
    },
    Style {
        tool: "ef-core",
        table: "__EFMigrationsHistory",
        rows: "SELECT \"MigrationId\"::text, \"MigrationId\"::text, true FROM {t} ORDER BY \"MigrationId\"",
        version_only: false,
    },
    Style {
        tool: "flyway",
        table: "flyway_schema_history",
        rows: "SELECT installed_rank::text, coalesce(script, description, version)::text, success FROM {t} WHERE type NOT IN ('SCHEMA', 'BASELINE') ORDER BY installed_rank",
        version_only: false,
    },
    Style {
        tool: "rails",
        table: "schema_migrations",
        rows: "SELECT version::text, version::text, true FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "django",
        table: "django_migrations",
        rows: "SELECT id::text, (app || '.' || name)::text, true FROM {t} ORDER BY id",
        version_only: false,
    },
    Style {
        tool: "sqlx",
        table: "_sqlx_migrations",
        rows: "SELECT version::text, (version::text || ' ' || description)::text, success FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "diesel",
        table: "__diesel_schema_migrations",
        rows: "SELECT version::text, version::text, true FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "alembic",
        table: "alembic_version",
        rows: "SELECT version_num::text, version_num::text, true FROM {t} ORDER BY version_num",
        version_only: true,
    },
    Style {
        tool: "liquibase",
        table: "databasechangelog",
        rows: "SELECT (id || ':' || author || ':' || filename)::text, (filename || '::' || id || '::' || author)::text, CASE WHEN exectype IN ('EXECUTED', 'RERAN') THEN true WHEN exectype = 'FAILED' THEN false END FROM {t} ORDER BY orderexecuted, dateexecuted",
        version_only: false,
    },
];

/// golang-migrate shares Rails' table name; its table has a `dirty` column and one row.
pub(crate) const GOLANG_MIGRATE: Style = Style {
    tool: "golang-migrate",
    table: "schema_migrations",
    rows: "SELECT version::text, version::text, NOT dirty FROM {t} ORDER BY version",
    version_only: true,
};

/// A table named by `--history-table` that is none of the known ones: one row per migration,
/// named by its first `name`/`migration`/`version`/`id` column, else by the whole row.
pub(crate) const CUSTOM: &str = "custom";

#[derive(Debug, Clone)]
pub(crate) struct Row {
    key: String,
    name: String,
    /// `Some(true)` applied, `Some(false)` failed, `None` neither.
    applied: Option<bool>,
}

/// One history table at one moment.
#[derive(Debug, Clone)]
pub(crate) struct TableRows {
    schema: String,
    table: String,
    tool: &'static str,
    version_only: bool,
    rows: Vec<Row>,
}

/// Every history table found, by `(schema, table)`.
pub(crate) type Snapshot = BTreeMap<(String, String), TableRows>;

/// Finds the history tables (the known ones in every schema, or the one named) and reads them.
pub(crate) async fn snapshot(db: &Database, named: Option<&TableName>) -> Result<Snapshot> {
    snapshot_in(&mut db.clone(), named).await
}

/// [`snapshot`] through `db`, which may be a session inside a transaction (the backup reads the
/// history in the snapshot it dumps).
pub(crate) async fn snapshot_in(
    db: &mut impl Queries,
    named: Option<&TableName>,
) -> Result<Snapshot> {
    let dirty = "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'dirty' AND NOT a.attisdropped)";
    let columns = "(SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)";
    let filter = match named {
        Some(name) => {
            let qualified = match &name.schema {
                Some(schema) => format!(
                    "{}.{}",
                    postgres::identifier(schema),
                    postgres::identifier(&name.table)
                ),
                None => postgres::identifier(&name.table),
            };
            format!("c.oid = to_regclass({})", postgres::literal(&qualified))
        }
        None => {
            let names: Vec<String> = STYLES
                .iter()
                .map(|style| postgres::literal(style.table))
                .collect();
            format!(
                "c.relname IN ({}) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'",
                names.join(", ")
            )
        }
    };
    let sql = format!(
        "SELECT n.nspname, c.relname, {dirty}, coalesce({columns}, '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {filter} ORDER BY 1, 2"
    );
    let found = db
        .rows(&sql)
        .await
        .context("cannot look for the migration history table")?;
    let mut out = Snapshot::new();
    for row in found {
        let [schema, table, dirty, columns] = &row[..] else {
            continue;
        };
        let known = if table == "schema_migrations" && dirty == "t" {
            Some(&GOLANG_MIGRATE)
        } else {
            STYLES.iter().find(|style| style.table == table)
        };
        let qualified = format!(
            "{}.{}",
            postgres::identifier(schema),
            postgres::identifier(table)
        );
        let (tool, version_only, sql) = match known {
            Some(style) => (
                style.tool,
                style.version_only,
                style.rows.replace("{t}", &format!("{qualified} AS h")),
            ),
            None => {
                let columns: Vec<&str> = columns.split(',').collect();
                let name = ["name", "migration_name", "migration", "version", "id"]
                    .into_iter()
                    .find(|candidate| columns.contains(candidate))
                    .map_or_else(
                        || "(h.*)::text".to_string(),
                        |column| format!("h.{}::text", postgres::identifier(column)),
                    );
                let order = columns
                    .first()
                    .filter(|c| !c.is_empty())
                    .map_or_else(String::new, |c| {
                        format!(" ORDER BY h.{}", postgres::identifier(c))
                    });
                (
                    CUSTOM,
                    false,
                    format!("SELECT (h.*)::text, {name}, true FROM {qualified} AS h{order}"),
                )
            }
        };
        let rows = db
            .rows(&sql)
            .await
            .context(format!(
                "cannot read the migration history table `{schema}.{table}`"
            ))?
            .into_iter()
            .map(|fields| Row {
                key: fields.first().cloned().unwrap_or_default(),
                name: fields.get(1).cloned().unwrap_or_default(),
                applied: match fields.get(2).map(String::as_str) {
                    Some("t") => Some(true),
                    Some("f") => Some(false),
                    _ => None,
                },
            })
            .collect();
        out.insert(
            (schema.clone(), table.clone()),
            TableRows {
                schema: schema.clone(),
                table: table.clone(),
                tool,
                version_only,
                rows,
            },
        );
    }
    Ok(out)
}

/// What the run changed, from the snapshots before and after.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    /// `None` when a table that keeps only the current version changed (the number of steps in
    /// between is not recorded anywhere).
    pub(crate) applied_count: Option<u64>,
    pub(crate) applied: Vec<String>,
    pub(crate) failed: Vec<String>,
    pub(crate) tables: Vec<HistoryTable>,
}

pub(crate) fn count(before: &Snapshot, after: &Snapshot) -> Counted {
    let mut counted = Counted {
        // No history table at all: whatever the command did, it left no count to read.
        applied_count: (!after.is_empty()).then_some(0),
        ..Counted::default()
    };
    for (id, now) in after {
        let earlier = before.get(id);
        let done_before: BTreeSet<&str> = earlier
            .map(|t| {
                t.rows
                    .iter()
                    .filter(|r| r.applied == Some(true))
                    .map(|r| r.key.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let seen_before: BTreeSet<&str> = earlier
            .map(|t| t.rows.iter().map(|r| r.key.as_str()).collect())
            .unwrap_or_default();
        let applied: Vec<String> = now
            .rows
            .iter()
            .filter(|r| r.applied == Some(true) && !done_before.contains(r.key.as_str()))
            .map(|r| r.name.clone())
            .collect();
        counted.failed.extend(
            now.rows
                .iter()
                .filter(|r| r.applied == Some(false) && !seen_before.contains(r.key.as_str()))
                .map(|r| r.name.clone()),
        );
        let mut entry = HistoryTable {
            schema: now.schema.clone(),
            table: now.table.clone(),
            tool: now.tool.to_string(),
            rows_before: earlier.map(|t| t.rows.len()),
            rows_after: now.rows.len(),
            versions_before: None,
            versions_after: None,
        };
        if now.version_only {
            let versions = |t: &TableRows| {
                let mut v: Vec<String> = t.rows.iter().map(|r| r.name.clone()).collect();
                v.sort();
                v
            };
            let after_versions = versions(now);
            let before_versions = earlier.map(versions).unwrap_or_default();
            if after_versions != before_versions {
                counted.applied_count = None;
            }
            entry.versions_before = Some(before_versions);
            entry.versions_after = Some(after_versions);
        } else if let Some(n) = counted.applied_count.as_mut() {
            *n += applied.len() as u64;
        }
        counted.applied.extend(applied);
        counted.tables.push(entry);
    }
    counted
}

/// The schema version each history table records: its latest applied migration (for a table
/// that keeps only the current version(s), the highest), with how many it has applied. The
/// backup stores these in its sidecar; a drill compares a restore's with them.
pub(crate) fn versions(snapshot: &Snapshot) -> Vec<MigrationVersion> {
    snapshot
        .values()
        .map(|t| {
            let applied: Vec<&Row> = t.rows.iter().filter(|r| r.applied == Some(true)).collect();
            let latest = if t.version_only {
                applied.iter().map(|r| r.name.clone()).max()
            } else {
                applied.last().map(|r| r.name.clone())
            };
            MigrationVersion {
                table: format!("{}.{}", t.schema, t.table),
                tool: t.tool.to_string(),
                version: latest,
                applied: applied.len() as u64,
            }
        })
        .collect()
}

/// The tools whose tables were found, e.g. `prisma`.
pub(crate) fn tools(counted: &Counted) -> Option<String> {
    let mut names: Vec<&str> = counted.tables.iter().map(|t| t.tool.as_str()).collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

pub(crate) fn describe_before(before: &Snapshot, named: Option<&TableName>) {
    if before.is_empty() {
        match named {
            Some(name) => tracing::info!(
                "history table {} does not exist yet",
                actions::quote(&display_table(name))
            ),
            None => tracing::info!("no migration history table yet"),
        }
        return;
    }
    for table in before.values() {
        tracing::info!(
            "history table `{}.{}` ({}): {} row(s) before the run",
            table.schema,
            table.table,
            table.tool,
            table.rows.len()
        );
    }
}

pub(crate) fn display_table(name: &TableName) -> String {
    match &name.schema {
        Some(schema) => format!("{schema}.{}", name.table),
        None => name.table.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(
            TableName::parse("public.__EFMigrationsHistory").expect("name"),
            TableName {
                schema: Some("public".into()),
                table: "__EFMigrationsHistory".into()
            }
        );
        assert!(TableName::parse("x.").is_err());
        assert!(TableName::parse("").is_err());
    }

    fn rows(tool: &'static str, version_only: bool, rows: &[(&str, Option<bool>)]) -> TableRows {
        TableRows {
            schema: "public".into(),
            table: "t".into(),
            tool,
            version_only,
            rows: rows
                .iter()
                .map(|(name, applied)| Row {
                    key: name.to_string(),
                    name: name.to_string(),
                    applied: *applied,
                })
                .collect(),
        }
    }

    fn snap(table: TableRows) -> Snapshot {
        let mut s = Snapshot::new();
        s.insert((table.schema.clone(), table.table.clone()), table);
        s
    }

    #[test]
    fn counting_rows_and_versions() {
        let (yes, no) = (Some(true), Some(false));
        let before = snap(rows("prisma", false, &[("a", yes), ("b", no)]));
        let after = snap(rows(
            "prisma",
            false,
            &[("a", yes), ("b", yes), ("c", yes), ("d", no), ("e", None)],
        ));
        let counted = count(&before, &after);
        assert_eq!(counted.applied_count, Some(2));
        assert_eq!(counted.applied, ["b", "c"]);
        assert_eq!(counted.failed, ["d"]);

        let none = count(&Snapshot::new(), &after);
        assert_eq!(none.applied_count, Some(3));
        assert_eq!(none.tables[0].rows_before, None);

        let v1 = snap(rows("alembic", true, &[("abc", yes)]));
        let v2 = snap(rows("alembic", true, &[("def", yes)]));
        let moved = count(&v1, &v2);
        assert_eq!(moved.applied_count, None);
        assert_eq!(moved.applied, ["def"]);
        assert_eq!(count(&v1, &v1).applied_count, Some(0));
        assert_eq!(
            count(&Snapshot::new(), &Snapshot::new()).applied_count,
            None
        );
    }

    #[test]
    fn the_version_is_the_latest_applied_migration() {
        let (yes, no) = (Some(true), Some(false));
        let listed = versions(&snap(rows(
            "prisma",
            false,
            &[("a", yes), ("c", yes), ("d", no)],
        )));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].table, "public.t");
        assert_eq!(listed[0].version.as_deref(), Some("c"));
        assert_eq!(listed[0].applied, 2);
        let only = versions(&snap(rows("alembic", true, &[("b", yes), ("a", yes)])));
        assert_eq!(only[0].version.as_deref(), Some("b"));
        let empty = versions(&snap(rows("rails", false, &[])));
        assert_eq!(empty[0].version, None);
    }
}
