//! `backup prune`: which backups in a destination retention keeps, and deleting the others
//! (the sidecar first, so a half-deleted backup is incomplete, never a broken complete one).

use std::collections::BTreeMap;

use serde::Serialize;

use super::sidecar::{SIDECAR_LIMIT, Sidecar};
use crate::actions::Table;
use crate::error::{Error, Result, ResultExt};
use crate::process::Shutdown;
use crate::storage::{Location, Storage, lease};

/// One backup found in the destination.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Found {
    pub(crate) backup_id: String,
    /// Seconds since the epoch: the sidecar's timestamp, else the object's.
    pub(crate) taken: i64,
    pub(crate) timestamp: String,
    pub(crate) size: u64,
    /// It has a sidecar, and the dump the sidecar names exists.
    pub(crate) complete: bool,
    pub(crate) verified: bool,
    #[serde(skip)]
    names: Vec<String>,
    /// `backup-<id>.json`.
    #[serde(skip)]
    pub(crate) sidecar_name: String,
    /// The sidecar, when there is one and it parses.
    #[serde(skip)]
    pub(crate) sidecar: Option<Sidecar>,
    action: String,
    reason: String,
}

/// What a prune found (newest first, each with its action and why) and did.
pub(crate) struct Pruned {
    pub(crate) found: Vec<Found>,
    pub(crate) kept: usize,
    pub(crate) deleted: usize,
    pub(crate) would: usize,
}

/// Every backup in `storage` (at `location`), complete or not, newest first (by the sidecar's
/// timestamp, else the objects' time); stops at a signal. `prune` applies retention to them,
/// `drill` restores the newest complete one, `gate`'s backup-recency gate judges its age.
pub(crate) async fn list_backups(
    storage: &Storage,
    location: &Location,
    shutdown: &Shutdown,
) -> Result<Vec<Found>> {
    let listing = tokio::select! {
        listing = storage.list("backup-") => listing.context(format!("cannot list `{}`", location.display()))?,
        signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal} while listing backups"))),
    };
    let mut groups: BTreeMap<String, Vec<crate::storage::ObjectInfo>> = BTreeMap::new();
    for object in listing {
        if let Some(stem) = backup_stem(&object.name) {
            groups.entry(stem.to_string()).or_default().push(object);
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let mut found = Vec::new();
    for (stem, objects) in groups {
        let sidecar_name = format!("{stem}.json");
        let has_sidecar = objects.iter().any(|o| o.name == sidecar_name);
        let sidecar: Option<Sidecar> = if has_sidecar {
            storage
                .read_small(&sidecar_name, SIDECAR_LIMIT)
                .await
                .context(format!("cannot read `{}`", storage.url(&sidecar_name)))?
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        } else {
            None
        };
        let dump = objects
            .iter()
            .find(|o| o.name != sidecar_name && lease::marker_stem(&o.name).is_none());
        // A directory backup is complete when every file its manifest lists is stored.
        let complete = match sidecar.as_ref() {
            Some(s) => match &s.files {
                Some(files) => {
                    let stored = storage
                        .child(&stem)
                        .list("")
                        .await
                        .context(format!("cannot list `{}`", storage.child(&stem).url("")))?;
                    files
                        .iter()
                        .all(|f| stored.iter().any(|o| o.name == f.name))
                }
                None => objects.iter().any(|o| o.name == s.object),
            },
            None => false,
        };
        // Without a sidecar, what a dead directory run left under `backup-<id>/` counts too:
        // `backup list` shows what the leftovers hold and `prune` what it frees.
        let left_files = if sidecar.is_none() {
            let files = storage.child(&stem);
            files
                .list("")
                .await
                .context(format!("cannot list `{}`", files.url("")))?
                .iter()
                .map(|o| o.size)
                .sum()
        } else {
            0
        };
        let taken = sidecar
            .as_ref()
            .and_then(|s| s.timestamp.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
            .or_else(|| objects.iter().filter_map(|o| o.modified).max())
            .unwrap_or(now);
        found.push(Found {
            backup_id: stem.clone(),
            taken,
            timestamp: jiff::Timestamp::from_second(taken)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            size: match sidecar.as_ref() {
                Some(s) if s.files.is_some() => s.size,
                _ => dump.map(|d| d.size).unwrap_or(0) + left_files,
            },
            complete,
            verified: complete && sidecar.as_ref().is_some_and(|s| s.verified),
            names: objects.iter().map(|o| o.name.clone()).collect(),
            sidecar_name,
            sidecar,
            action: String::new(),
            reason: String::new(),
        });
    }
    // Newest first.
    found.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.backup_id.cmp(&a.backup_id)));
    Ok(found)
}

/// Applies the retention rules to the backups in `storage` (at `location`): keeps the newest
/// `keep_last` complete ones, those younger than `keep_days` and always the newest verified
/// one; deletes the others unless `dry_run`; stops at a signal.
pub(crate) async fn prune(
    storage: &Storage,
    location: &Location,
    keep_days: Option<u64>,
    keep_last: Option<u64>,
    dry_run: bool,
    shutdown: &Shutdown,
) -> Result<Pruned> {
    let mut found = list_backups(storage, location, shutdown).await?;
    let now = jiff::Timestamp::now().as_second();
    let newest_verified = found.iter().position(|f| f.verified);
    let mut complete_seen = 0u64;
    for (index, backup) in found.iter_mut().enumerate() {
        let age_days = (now - backup.taken).max(0) as f64 / 86_400.0;
        let reason = if Some(index) == newest_verified {
            Some("the newest verified backup is always kept".to_string())
        } else if backup.complete && keep_last.is_some_and(|m| complete_seen < m) {
            Some(format!(
                "one of the newest {} complete backups",
                keep_last.unwrap_or(0)
            ))
        } else if keep_days.is_some_and(|d| age_days < d as f64) {
            Some(format!("younger than {} days", keep_days.unwrap_or(0)))
        } else if !backup.complete && age_days < 1.0 {
            Some("incomplete and younger than a day: it may still be uploading".to_string())
        } else {
            None
        };
        if backup.complete {
            complete_seen += 1;
        }
        match reason {
            Some(reason) => {
                backup.action = "keep".into();
                backup.reason = reason;
            }
            None => {
                backup.action = if dry_run { "would delete" } else { "delete" }.into();
                backup.reason = if backup.complete {
                    "outside the retention rules".into()
                } else {
                    "incomplete (no sidecar) and outside the retention rules".into()
                };
            }
        }
    }
    let mut deleted = 0usize;
    for backup in found.iter().filter(|b| b.action == "delete") {
        // The sidecar first: a backup without one is incomplete, never a broken complete one.
        // Then a directory backup's files (`backup-<id>/`), then the rest.
        let mut names = backup.names.clone();
        names.sort_by_key(|n| !n.ends_with(".json"));
        let files = storage.child(&backup.backup_id);
        let listed = tokio::select! {
            listed = files.list("") => listed.context(format!("cannot list `{}`", files.url("")))?,
            signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal} while listing `{}`; {deleted} backup(s) were deleted", files.url("")))),
        };
        let mut doomed: Vec<(&Storage, String)> = Vec::new();
        let sidecars = names.iter().take_while(|n| n.ends_with(".json")).count();
        doomed.extend(names[..sidecars].iter().map(|n| (storage, n.clone())));
        doomed.extend(listed.into_iter().map(|o| (&files, o.name)));
        doomed.extend(names[sidecars..].iter().map(|n| (storage, n.clone())));
        for (place, name) in doomed {
            tokio::select! {
                result = place.delete(&name) => result.context(format!("cannot delete `{}`", place.url(&name)))?,
                signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal} while deleting `{}`; {deleted} backup(s) were deleted", place.url(&name)))),
            }
        }
        files
            .remove_if_empty()
            .await
            .context(format!("cannot remove `{}`", files.url("")))?;
        tracing::info!("deleted `{}` ({})", backup.backup_id, backup.timestamp);
        deleted += 1;
    }
    let kept = found.iter().filter(|b| b.action == "keep").count();
    let would = found.iter().filter(|b| b.action == "would delete").count();
    tracing::info!(
        "{} backups in `{}`: {kept} kept, {}",
        found.len(),
        location.display(),
        if dry_run {
            format!("{would} would be deleted (dry run)")
        } else {
            format!("{deleted} deleted")
        }
    );
    Ok(Pruned {
        found,
        kept,
        deleted,
        would,
    })
}

/// The retention defaults, for messages and `--help`.
pub(crate) const DEFAULTS_TEXT: &str = "`dev` 7 days, `staging` 14 days, `production` 35 days";

/// The days a prune keeps when no rule is given, by environment name (seed 002: dev 7, staging
/// 14, production 35); `None` for any other name.
pub(crate) fn default_keep_days(environment: &str) -> Option<u64> {
    match environment.to_ascii_lowercase().as_str() {
        "dev" | "development" => Some(7),
        "staging" | "stage" => Some(14),
        "production" | "prod" => Some(35),
        _ => None,
    }
}

/// `backup-<id>` for `backup-<id>.sql.gz`, `.dump.gz`, `.json` and the run markers
/// `.run-<token>` (deleted with the backup they belong to).
fn backup_stem(name: &str) -> Option<&str> {
    crate::state::backup::DumpFormat::object_stem(name)
        .or_else(|| lease::marker_stem(name))
        .filter(|stem| stem.len() > "backup-".len() && stem.starts_with("backup-"))
}

/// The step summary of a prune.
pub(crate) fn prune_summary(found: &[Found], dry_run: bool, destination: &str) -> String {
    let mut table = Table::new(&["Backup", "Taken", "Size", "State", "Action", "Why"]);
    for backup in found {
        table.row(&[
            format!("`{}`", backup.backup_id),
            backup.timestamp.clone(),
            crate::ui::bytes(backup.size),
            if backup.verified {
                "verified".to_string()
            } else if backup.complete {
                "complete".to_string()
            } else {
                "incomplete".to_string()
            },
            backup.action.clone(),
            backup.reason.clone(),
        ]);
    }
    format!(
        "### 🧹 Backup retention in `{destination}`{}\n\n{}",
        if dry_run { " (dry run)" } else { "" },
        table.render()
    )
}

/// One backup as `backup list` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    pub(crate) backup_id: String,
    /// When its dump started (the sidecar's `timestamp`, else the objects' newest time).
    pub(crate) taken: String,
    pub(crate) age_seconds: i64,
    /// The dump's size in bytes (compressed).
    pub(crate) size: u64,
    /// `complete` (sidecar and dump), `incomplete` (one without the other: an interrupted or
    /// running backup).
    pub(crate) state: &'static str,
    /// `plain` or `custom`; `None` without a sidecar.
    pub(crate) format: Option<String>,
    pub(crate) compression: Option<String>,
    /// `sha256` or `restore` when verified after the upload; `None` when not verified.
    pub(crate) verified: Option<String>,
    pub(crate) deployment_id: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) database: Option<String>,
    /// The dump's URL.
    pub(crate) location: Option<String>,
}

/// Every backup at the destination, newest first, as `backup list` shows it.
pub(crate) fn listing(found: &[Found], now: i64) -> Vec<Listed> {
    found
        .iter()
        .map(|f| {
            let sidecar = f.sidecar.as_ref();
            Listed {
                backup_id: f.backup_id.clone(),
                taken: f.timestamp.clone(),
                age_seconds: (now - f.taken).max(0),
                size: f.size,
                state: if f.complete { "complete" } else { "incomplete" },
                format: sidecar.map(|s| s.format.name().to_string()),
                compression: sidecar.map(|s| s.compression.name().to_string()),
                verified: sidecar.filter(|_| f.verified).map(|s| {
                    s.verification
                        .as_ref()
                        .map_or("yes".to_string(), |v| v.mode.clone())
                }),
                deployment_id: sidecar.map(|s| s.deployment_id.clone()),
                environment: sidecar.map(|s| s.environment.clone()),
                database: sidecar.map(|s| s.database.clone()),
                location: sidecar.map(|s| s.location.clone()),
            }
        })
        .collect()
}

/// The listing as a plain-text table for a terminal (stdout).
pub(crate) fn listing_text(listed: &[Listed], destination: &str) -> String {
    if listed.is_empty() {
        return format!("no backups in {destination}");
    }
    let header = [
        "BACKUP",
        "TAKEN",
        "AGE",
        "SIZE",
        "STATE",
        "FORMAT",
        "VERIFIED",
        "DEPLOYMENT",
    ];
    let rows: Vec<[String; 8]> = listed
        .iter()
        .map(|l| {
            [
                l.backup_id.clone(),
                l.taken.clone(),
                crate::ui::format_duration(std::time::Duration::from_secs(l.age_seconds as u64)),
                crate::ui::bytes(l.size),
                l.state.to_string(),
                l.format.clone().unwrap_or_else(|| "-".into()),
                l.verified.clone().unwrap_or_else(|| "no".into()),
                l.deployment_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(|r| line(r.to_vec())));
    out.join("\n")
}

/// The listing as the step summary's Markdown.
pub(crate) fn listing_summary(listed: &[Listed], destination: &str) -> String {
    let mut table = Table::new(&[
        "Backup",
        "Taken",
        "Size",
        "State",
        "Format",
        "Verified",
        "Deployment",
    ]);
    for l in listed {
        table.row(&[
            format!("`{}`", l.backup_id),
            l.taken.clone(),
            crate::ui::bytes(l.size),
            l.state.to_string(),
            l.format.clone().unwrap_or_else(|| "—".into()),
            l.verified.clone().unwrap_or_else(|| "no".into()),
            l.deployment_id
                .clone()
                .map_or_else(|| "—".into(), |d| format!("`{d}`")),
        ]);
    }
    format!(
        "### 🗄️ Backups in `{destination}`\n\n{}",
        if listed.is_empty() {
            "none\n".to_string()
        } else {
            table.render()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_defaults_per_environment() {
        assert_eq!(default_keep_days("dev"), Some(7));
        assert_eq!(default_keep_days("Staging"), Some(14));
        assert_eq!(default_keep_days("production"), Some(35));
        assert_eq!(default_keep_days("prod"), Some(35));
        assert_eq!(default_keep_days("qa"), None);
    }

    #[test]
    fn stems() {
        assert_eq!(backup_stem("backup-1-abc.sql.gz"), Some("backup-1-abc"));
        assert_eq!(backup_stem("backup-1-abc.dump.gz"), Some("backup-1-abc"));
        assert_eq!(backup_stem("backup-1-abc.json"), Some("backup-1-abc"));
        assert_eq!(
            backup_stem("backup-1-abc.run-0123456789abcdef"),
            Some("backup-1-abc")
        );
        assert_eq!(backup_stem("backup-.json"), None);
        assert_eq!(backup_stem("other.json"), None);
        assert_eq!(backup_stem("backup-1.txt"), None);
    }
}
