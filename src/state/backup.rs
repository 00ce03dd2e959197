//! `backup.json`: the backup taken before the deployment (or why there is none).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `backup.json`, and `backup`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct BackupFile {
    /// `timestamp`: when the backup was taken (for a reused backup: when it was first taken).
    #[serde(flatten)]
    pub(crate) header: Header,
    /// When this run started.
    pub(crate) ran_at: String,
    pub(crate) deployment_id: String,
    pub(crate) log_file: String,
    #[serde(flatten)]
    pub(crate) outcome: BackupOutcome,
}

impl StateFile for BackupFile {
    const FILE: &'static str = "backup.json";
    const COMMAND: &'static str = "backup";
}

impl BackupFile {
    /// The backup, when this run took (or reused) one.
    pub(crate) fn taken(&self) -> Option<&Taken> {
        match &self.outcome {
            BackupOutcome::Taken(taken) if self.header.result == "pass" => Some(taken.as_ref()),
            _ => None,
        }
    }
}

/// A backup (`result: pass`), or why the run failed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum BackupOutcome {
    Taken(Box<Taken>),
    Failed(Failed),
}

/// A verified backup at its destination.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Taken {
    pub(crate) environment: String,
    pub(crate) backup_id: String,
    /// `s3://…` or `file://…` of the dump.
    pub(crate) location: String,
    pub(crate) sidecar_location: String,
    pub(crate) size: u64,
    pub(crate) uncompressed_size: u64,
    pub(crate) sha256: String,
    pub(crate) compression: Compression,
    pub(crate) compression_level: u32,
    pub(crate) format: DumpFormat,
    pub(crate) parts: u32,
    pub(crate) verified: bool,
    pub(crate) verification: Option<Verification>,
    /// An earlier run's backup of the same deployment and database, reused.
    pub(crate) reused: bool,
    pub(crate) database: String,
    pub(crate) server_version: String,
    pub(crate) client_version: String,
}

/// The schema version one migration history table records (`migrate`'s tables): stored in the
/// backup's sidecar, compared by `drill` after restoring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct MigrationVersion {
    /// `schema.table`, e.g. `public._prisma_migrations`.
    pub(crate) table: String,
    /// The tool that keeps it (`prisma`, `flyway`, …, `custom`).
    pub(crate) tool: String,
    /// The latest applied migration's name; `None` when none is applied.
    pub(crate) version: Option<String>,
    /// Migrations applied.
    pub(crate) applied: u64,
}

/// A run that took no backup.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Failed {
    pub(crate) backup_id: Option<String>,
    pub(crate) location: Option<String>,
    /// Whether a dump had been published at `location` when it failed (it is withdrawn).
    pub(crate) published: bool,
    pub(crate) reason: String,
    pub(crate) exit_code: u8,
}

/// pg_dump's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DumpFormat {
    /// SQL text (`--format=plain --clean --if-exists`): `gunzip | psql` restores it.
    Plain,
    /// pg_dump's archive (`--format=custom --compress=0`, gzipped by shipgate): restored with
    /// `pg_restore`.
    Custom,
    /// pg_dump's directory archive (`--format=directory --jobs=N`): each file compressed by
    /// shipgate to `backup-<id>/<file>.gz` (or `.zst`), listed with its size and SHA-256 in the sidecar;
    /// restored with `pg_restore --jobs=N`.
    Directory,
}

impl DumpFormat {
    /// What the dump's object is called after `backup-<id>`, before the compression's suffix.
    fn suffix(self) -> &'static str {
        match self {
            DumpFormat::Plain => ".sql",
            DumpFormat::Custom => ".dump",
            DumpFormat::Directory => "/",
        }
    }

    /// The object's name after `backup-<deployment-id>`: `.sql.gz`, `.dump.zst`, …; for a
    /// directory archive the `/` of the prefix its files live under (each file carries the
    /// compression's suffix).
    pub(crate) fn extension(self, compression: Compression) -> String {
        match self {
            DumpFormat::Directory => self.suffix().to_string(),
            _ => format!("{}{}", self.suffix(), compression.suffix()),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DumpFormat::Plain => "plain",
            DumpFormat::Custom => "custom",
            DumpFormat::Directory => "directory",
        }
    }

    /// `backup-<id>` of one of a backup's objects: a dump of any format and compression, or its
    /// sidecar (`backup-<id>.sql.gz`, `.dump.zst`, `.json`, the directory archive's
    /// `backup-<id>/`).
    pub(crate) fn object_stem(name: &str) -> Option<&str> {
        for suffix in [".json", DumpFormat::Directory.suffix()] {
            if let Some(stem) = name.strip_suffix(suffix) {
                return Some(stem);
            }
        }
        let (stem, _) = Compression::split(name)?;
        [DumpFormat::Plain, DumpFormat::Custom]
            .iter()
            .find_map(|format| stem.strip_suffix(format.suffix()))
    }

    /// The format a record or sidecar names, else the one its object's name says.
    pub(crate) fn of(named: Option<&str>, location: &str) -> DumpFormat {
        match named.and_then(|n| n.parse().ok()) {
            Some(format) => format,
            None if location.ends_with('/') => DumpFormat::Directory,
            None => {
                let stem = Compression::split(location).map_or(location, |(stem, _)| stem);
                if stem.ends_with(DumpFormat::Custom.suffix()) {
                    DumpFormat::Custom
                } else {
                    DumpFormat::Plain
                }
            }
        }
    }
}

/// How the dump is compressed before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Compression {
    /// gzip (RFC 1952): `gunzip` reads it. Several threads compress it as a series of gzip
    /// members, which `gunzip` reads as one stream.
    #[default]
    Gzip,
    /// Zstandard (RFC 8878), multi-threaded: `zstd -d` reads it.
    Zstd,
}

impl Compression {
    pub(crate) const ALL: [Compression; 2] = [Compression::Gzip, Compression::Zstd];

    /// A stored name without its compression's suffix, and that compression: `3012.dat.gz` →
    /// (`3012.dat`, gzip); `None` without one.
    pub(crate) fn split(name: &str) -> Option<(&str, Compression)> {
        Compression::ALL
            .into_iter()
            .find_map(|c| name.strip_suffix(c.suffix()).map(|stem| (stem, c)))
    }

    /// The stored object's last suffix.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The levels this compression takes, and its default.
    pub(crate) fn levels(self) -> (std::ops::RangeInclusive<u32>, u32) {
        match self {
            Compression::Gzip => (0..=9, 1),
            Compression::Zstd => (1..=19, 3),
        }
    }

    /// The stored object's media type.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/gzip",
            Compression::Zstd => "application/zstd",
        }
    }

    /// The shell command that decompresses it from stdin to stdout.
    pub(crate) fn shell_decompress(self) -> &'static str {
        match self {
            Compression::Gzip => "gunzip",
            Compression::Zstd => "zstd -dc",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            other => Err(format!(
                "`{other}` is not a compression; use `gzip` or `zstd`"
            )),
        }
    }
}

impl std::str::FromStr for DumpFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "plain" | "p" | "sql" => Ok(DumpFormat::Plain),
            "custom" | "c" => Ok(DumpFormat::Custom),
            "directory" | "d" => Ok(DumpFormat::Directory),
            other => Err(format!(
                "`{other}` is not a dump format; use `plain`, `custom` or `directory`"
            )),
        }
    }
}

/// How a backup was verified.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub(crate) struct Verification {
    /// `sha256` (read back, hash, full decompression and read) or `restore` (also restored
    /// into a scratch database and row counts compared).
    pub(crate) mode: String,
    pub(crate) checked_at: String,
    /// Bytes of dump read back after decompression.
    pub(crate) read_bytes: u64,
    /// Tables compared, with `restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tables: Option<usize>,
}
