//! The backup's sidecar (`backup-<deployment-id>.json`), whose shape other tools read, so it is
//! frozen here; the database identity it records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::actions;
use crate::error::Error;
use crate::state::backup::{Compression, DumpFormat, MigrationVersion, Verification};

/// `backup-<deployment-id>.json`, written after the dump is uploaded and verified: a backup
/// without it is incomplete by definition. Readers ignore fields they do not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub(crate) schema_version: u32,
    pub(crate) backup_id: String,
    pub(crate) deployment_id: String,
    /// URL of the dump object.
    pub(crate) location: String,
    pub(crate) sidecar_location: String,
    /// The dump object's name in its destination.
    pub(crate) object: String,
    /// When the dump started (RFC 3339 UTC).
    pub(crate) timestamp: String,
    pub(crate) completed_at: String,
    /// Bytes stored (compressed).
    pub(crate) size: u64,
    pub(crate) uncompressed_size: u64,
    /// SHA-256 of the stored object, hex.
    pub(crate) sha256: String,
    pub(crate) compression: Compression,
    pub(crate) compression_level: u32,
    pub(crate) format: DumpFormat,
    pub(crate) database: String,
    /// Which database this is a backup of (absent in sidecars written before shipgate recorded
    /// it): a re-run with the same deployment id must name the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) database_identity: Option<DatabaseIdentity>,
    pub(crate) server_version: String,
    pub(crate) client_version: String,
    pub(crate) duration_ms: u64,
    pub(crate) parts: u32,
    pub(crate) verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verification: Option<Verification>,
    /// Exact per-table row counts (`schema.table`), counted in the dump's own snapshot (absent
    /// in sidecars of older shipgates, which counted only with `verify: restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) row_counts: Option<BTreeMap<String, u64>>,
    /// The migration history tables' versions in the dump's snapshot (absent in older
    /// sidecars; empty when the database has no history table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) migration_versions: Option<Vec<MigrationVersion>>,
    #[serde(default)]
    pub(crate) environment: String,
    #[serde(default)]
    pub(crate) repository: Option<String>,
    #[serde(default)]
    pub(crate) created_by: String,
    /// A directory-format backup's manifest: every file under `object` (`backup-<id>/`), in
    /// name order. `sha256` is then the SHA-256 of [`manifest_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) files: Option<Vec<ManifestFile>>,
    /// pg_dump's `--jobs` for a directory-format backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jobs: Option<u32>,
}

/// One file of a directory-format backup, as stored: `<pg_dump's file>.gz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestFile {
    /// The object's name under `backup-<id>/`, e.g. `3346.dat.gz` or `toc.dat.gz`.
    pub(crate) name: String,
    /// Bytes stored (compressed).
    pub(crate) size: u64,
    pub(crate) uncompressed_size: u64,
    /// SHA-256 of the stored object, hex.
    pub(crate) sha256: String,
}

/// The manifest as `sha256sum` prints it (`<sha256>  <name>` per line, in name order): its
/// SHA-256 is a directory backup's `sha256`, and `sha256sum -c` checks the files by hand.
pub(crate) fn manifest_text(files: &[ManifestFile]) -> String {
    let mut sorted: Vec<&ManifestFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect()
}

/// Whether `name` may be a file of a directory backup: a plain file name ending in a
/// compression's suffix (`.gz`, `.zst`).
pub(crate) fn is_manifest_name(name: &str) -> bool {
    Compression::split(name).is_some_and(|(stem, _)| !stem.is_empty())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The database a backup was taken from: the host, port and name `database-url` gave, and the
/// server's own `system_identifier` (`pg_control_system()`; the same on a physical standby,
/// different for every `initdb`). `None` when the role may not read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DatabaseIdentity {
    /// As written in the URL; empty for the default local socket.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) database: String,
    #[serde(default)]
    pub(crate) system_identifier: Option<String>,
}

impl DatabaseIdentity {
    /// `` `app` on `db.internal:5432` (system identifier 7321…) ``, for messages.
    pub(crate) fn describe(&self) -> String {
        let host = if self.host.is_empty() {
            "the local socket".to_string()
        } else {
            format!("`{}:{}`", self.host, self.port)
        };
        let system = match &self.system_identifier {
            Some(id) => format!("system identifier {id}"),
            None => "system identifier unknown".to_string(),
        };
        format!("`{}` on {host} ({system})", self.database)
    }

    /// Whether `self` (recorded in a sidecar) and `current` are the same database: `Ok` with an
    /// optional warning, or `Err` saying why not. Same name and system identifier are the same
    /// database whatever address reached it; without both identifiers, the host and port must
    /// match too.
    pub(crate) fn same_as(&self, current: &DatabaseIdentity) -> Result<Option<String>, String> {
        if self.database != current.database {
            return Err("the database names differ".to_string());
        }
        match (&self.system_identifier, &current.system_identifier) {
            (Some(a), Some(b)) if a == b => Ok(None),
            (Some(_), Some(_)) => Err(
                "the system identifiers differ: it is another PostgreSQL server"
                    .to_string(),
            ),
            _ if self.host == current.host && self.port == current.port => Ok(Some(
                "the server's system identifier could not be compared (the role may not run `pg_control_system()`); the host, port and database name match".to_string(),
            )),
            _ => Err(
                "the host or port differ and the servers' system identifiers cannot be compared"
                    .to_string(),
            ),
        }
    }
}

/// The host (as written; empty for the default local socket) and port (default 5432) a
/// PostgreSQL URL names, from its authority or its `host`/`port` parameters.
pub(crate) fn address_of(conninfo: &str) -> (String, u16) {
    let url = url::Url::parse(conninfo).ok();
    let query = |key: &str| {
        url.as_ref().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        })
    };
    let host = url
        .as_ref()
        .and_then(|u| u.host_str())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| query("host"))
        .unwrap_or_default();
    let port = url
        .as_ref()
        .and_then(|u| u.port())
        .or_else(|| query("port").and_then(|p| p.parse().ok()))
        .unwrap_or(5432);
    (host, port)
}

/// Sidecars are small; anything bigger at that name is not one.
pub(crate) const SIDECAR_LIMIT: usize = 1024 * 1024;

/// Refuses a sidecar whose names do not follow shipgate's layout (it could point anywhere).
pub(crate) fn check_sidecar(sidecar: &Sidecar, url: &str) -> crate::error::Result<()> {
    let id_ok = sidecar.backup_id.strip_prefix("backup-").is_some_and(|id| {
        id == sidecar.deployment_id && crate::state::check_deployment_id(id).is_ok()
    });
    let object_ok = sidecar.object
        == format!(
            "{}{}",
            sidecar.backup_id,
            sidecar.format.extension(sidecar.compression)
        );
    let hex = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
    let sha_ok = hex(&sidecar.sha256);
    let toc = format!("toc.dat{}", sidecar.compression.suffix());
    let files_ok = match (sidecar.format, &sidecar.files) {
        (DumpFormat::Directory, Some(files)) => {
            files.iter().any(|f| f.name == toc)
                && files
                    .iter()
                    .all(|f| is_manifest_name(&f.name) && hex(&f.sha256))
                && crate::backup::archive::hex(&{
                    use sha2::Digest as _;
                    sha2::Sha256::digest(manifest_text(files).as_bytes())
                }) == sidecar.sha256
        }
        (DumpFormat::Directory, None) => false,
        (_, files) => files.is_none(),
    };
    if id_ok && object_ok && sha_ok && files_ok {
        Ok(())
    } else {
        Err(Error::gate(format!(
            "`{url}` does not describe a shipgate backup (backup id {}, object {}); refusing to use it",
            actions::quote(&sidecar.backup_id),
            actions::quote(&sidecar.object)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_identities_compare_by_name_then_server() {
        let id = |host: &str, port: u16, db: &str, system: Option<&str>| DatabaseIdentity {
            host: host.into(),
            port,
            database: db.into(),
            system_identifier: system.map(str::to_string),
        };
        let recorded = id("db.internal", 5432, "app", Some("73"));
        assert_eq!(recorded.same_as(&recorded), Ok(None));
        // The same server through another address.
        assert_eq!(
            recorded.same_as(&id("10.0.0.5", 6432, "app", Some("73"))),
            Ok(None)
        );
        assert!(
            recorded
                .same_as(&id("db.internal", 5432, "other", Some("73")))
                .is_err()
        );
        assert!(
            recorded
                .same_as(&id("db.internal", 5432, "app", Some("74")))
                .is_err()
        );
        // Without an identifier on one side, the address decides.
        assert!(matches!(
            recorded.same_as(&id("db.internal", 5432, "app", None)),
            Ok(Some(_))
        ));
        assert!(
            recorded
                .same_as(&id("db2.internal", 5432, "app", None))
                .is_err()
        );
        assert!(recorded.describe().contains("`app` on `db.internal:5432`"));
    }
}
