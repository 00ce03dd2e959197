//! Restoring a backup: the tools `shipgate restore` (and verification by restore) runs, and the
//! one text that restores a backup by hand.

use crate::postgres::Database;
use crate::process;
use crate::state::backup::DumpFormat;

/// The one text that restores a backup by hand, without shipgate, the way `shipgate restore`
/// does it (one transaction, stopping at the first error): the SHA-256 check to run first, then
/// fetch | gunzip | psql or pg_restore into `$DATABASE_URL`. `None` for a location that is
/// neither `s3://` nor `file://`.
pub(crate) fn manual_restore(
    location: &str,
    format: DumpFormat,
    sha256: Option<&str>,
) -> Option<String> {
    let fetch = if let Some(path) = location.strip_prefix("file://") {
        format!("cat '{path}'")
    } else if location.starts_with("s3://") {
        format!("aws s3 cp '{location}' -")
    } else {
        return None;
    };
    let unpack = if location.ends_with(".gz") {
        " | gunzip"
    } else {
        ""
    };
    let apply = match format {
        DumpFormat::Plain => {
            "psql --no-psqlrc --set=ON_ERROR_STOP=1 --single-transaction --file=- --dbname=\"$DATABASE_URL\""
        }
        DumpFormat::Custom => {
            "pg_restore --clean --if-exists --single-transaction --exit-on-error --dbname=\"$DATABASE_URL\""
        }
    };
    let mut text = String::from("set -o pipefail\n");
    if let Some(sha) = sha256 {
        text.push_str(&format!("{fetch} | sha256sum   # expect {sha}\n"));
    }
    text.push_str(&format!("{fetch}{unpack} | {apply}\n"));
    Some(text)
}

/// The tool that restores a dump of `format` into `db` in one transaction.
pub(crate) fn restore_spec(db: &Database, format: DumpFormat) -> process::Spec {
    match format {
        DumpFormat::Plain => db.spec(
            "psql",
            "psql",
            vec![
                "--no-psqlrc".into(),
                "--quiet".into(),
                "--set=ON_ERROR_STOP=1".into(),
                "--single-transaction".into(),
                "--no-password".into(),
                "--file=-".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
        DumpFormat::Custom => db.spec(
            "pg_restore",
            "pg_restore",
            vec![
                "--clean".into(),
                "--if-exists".into(),
                "--single-transaction".into(),
                "--exit-on-error".into(),
                "--no-password".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_manual_restore_text_for_every_format_and_place() {
        let plain = manual_restore(
            "s3://bk/prod/backup-1.sql.gz",
            DumpFormat::Plain,
            Some("ab"),
        )
        .expect("s3");
        assert!(plain.starts_with("set -o pipefail\n"), "{plain}");
        assert!(
            plain.contains("aws s3 cp 's3://bk/prod/backup-1.sql.gz' - | sha256sum   # expect ab"),
            "{plain}"
        );
        assert!(
            plain.contains(
                "- | gunzip | psql --no-psqlrc --set=ON_ERROR_STOP=1 --single-transaction"
            ),
            "{plain}"
        );
        let custom = manual_restore("file:///var/bk/backup-1.dump.gz", DumpFormat::Custom, None)
            .expect("file");
        assert!(
            custom.contains("cat '/var/bk/backup-1.dump.gz' | gunzip | pg_restore --clean --if-exists --single-transaction --exit-on-error"),
            "{custom}"
        );
        assert!(!custom.contains("sha256sum"), "{custom}");
        assert_eq!(manual_restore("https://x/y", DumpFormat::Plain, None), None);
        assert_eq!(
            DumpFormat::of(None, "s3://b/backup-1.dump.gz"),
            DumpFormat::Custom
        );
        assert_eq!(
            DumpFormat::of(Some("plain"), "s3://b/backup-1.dump.gz"),
            DumpFormat::Plain
        );
    }
}
