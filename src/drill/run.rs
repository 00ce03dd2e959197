//! One drill: pick the backup (the newest complete one at the destination, or the one named),
//! restore it into a new scratch database on the drill server — the fetch and restore timed as
//! the RTO, the backup's age taken as the RPO — run the parity checks and the optional smoke
//! suite against it, and drop it afterwards (also on failure, a signal or the deadline) unless
//! asked to keep it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::checks;
use crate::actions;
use crate::backup::restore::{Which, restore};
use crate::backup::sidecar::{Sidecar, address_of};
use crate::backup::storage::open_storage;
use crate::backup::verify::{create_scratch, drop_scratch};
use crate::backup::{log_line, say};
use crate::error::{Error, Result};
use crate::migrate::history;
use crate::postgres::Database;
use crate::process::{self, SharedLog, Shutdown, Spec};
use crate::secret::Secret;
use crate::state::StateDir;
use crate::state::backup::MigrationVersion;
use crate::state::drill::Check;
use crate::state::smoke::SmokeFile;
use crate::storage::S3Options;

/// The environment variable the smoke suite reads the scratch database's URL from.
pub(crate) const SCRATCH_URL_ENV: &str = "SHIPGATE_DRILL_DATABASE_URL";

/// The smoke suite to run against the scratch database: this executable's `smoke` command line
/// (the command builds it: config, state dir, deployment id).
pub(crate) struct Smoke {
    /// The suite file, for the report.
    pub(crate) suite: String,
    pub(crate) argv: Vec<String>,
}

/// A drill's options, resolved by `shipgate drill`.
pub(crate) struct Options {
    pub(crate) which: Which,
    pub(crate) s3: S3Options,
    /// The server the scratch database is created on (`drill-database-url`: the database it
    /// names is only where shipgate connects to create and drop it).
    pub(crate) server: Database,
    /// `drill-database-url` itself, for the scratch database's URL the smoke suite gets.
    pub(crate) server_url: Secret,
    pub(crate) max_rto: Duration,
    pub(crate) max_rpo: Duration,
    pub(crate) keep: bool,
    pub(crate) work_dir: PathBuf,
    /// Files downloaded at once and `pg_restore --jobs` for a directory backup.
    pub(crate) jobs: u32,
    pub(crate) timeout: Duration,
    pub(crate) smoke: Option<Smoke>,
}

/// What is known so far, for the report of a drill that stopped.
#[derive(Debug, Default)]
pub(crate) struct Known {
    pub(crate) backup_id: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) backup_timestamp: Option<String>,
    pub(crate) scratch_database: Option<String>,
    pub(crate) scratch_dropped: bool,
}

/// A drill that ran to the end (its checks may still have failed).
pub(crate) struct Drilled {
    pub(crate) sidecar: Sidecar,
    pub(crate) rto: Duration,
    pub(crate) rpo: Duration,
    pub(crate) row_counts: BTreeMap<String, u64>,
    pub(crate) migration_versions: Vec<MigrationVersion>,
    pub(crate) checks: Vec<Check>,
}

impl Drilled {
    /// The first failed check's detail; `None` when every check passed (or was skipped).
    pub(crate) fn failure(&self) -> Option<String> {
        self.checks
            .iter()
            .find(|c| c.verdict == checks::FAIL)
            .map(|c| format!("{}: {}", c.name, c.detail))
    }
}

/// Runs the drill; `known` says how far it got when it fails. The scratch database is dropped
/// before this returns, whatever happened, unless `options.keep`.
pub(crate) async fn drill(
    options: &Options,
    state: &StateDir,
    log: &SharedLog,
    shutdown: &Shutdown,
    known: &mut Known,
) -> Result<Drilled> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let stopped = |what: &str| {
        let what = what.to_string();
        async move {
            tokio::select! {
                signal = shutdown.recv() => Error::timeout(format!("cancelled by {signal} while {what}")),
                _ = tokio::time::sleep_until(deadline) => Error::timeout(format!(
                    "the drill did not finish within {} (`drill-timeout`) while {what}",
                    crate::ui::format_duration(options.timeout)
                )),
            }
        }
    };

    // Which backup.
    let (storage, sidecar) = tokio::select! {
        found = find(options) => found?,
        error = stopped("looking for the backup") => return Err(error),
    };
    known.backup_id = Some(sidecar.backup_id.clone());
    known.location = Some(sidecar.location.clone());
    known.backup_timestamp = Some(sidecar.timestamp.clone());
    let rpo = age(&sidecar)?;
    say(
        log,
        &format!(
            "drilling `{}` ({}, taken {}, {} old)",
            sidecar.backup_id,
            sidecar.location,
            sidecar.timestamp,
            crate::ui::format_duration(Duration::from_secs(rpo.as_secs()))
        ),
    );

    // A scratch database on the drill server.
    let scratch_name = tokio::select! {
        created = create_scratch(
            &options.server,
            "shipgate_drill",
            "for the drill; the role in `drill-database-url` needs CREATEDB",
        ) => created?,
        error = stopped("creating the scratch database") => return Err(error),
    };
    known.scratch_database = Some(scratch_name.clone());
    say(
        log,
        &format!(
            "created the scratch database `{scratch_name}` on `{}`",
            options.server.display()
        ),
    );
    let scratch = options.server.with_database(&scratch_name);

    let committed = AtomicBool::new(false);
    let work = async {
        let started = Instant::now();
        let counts = restore(
            &options.work_dir,
            &storage,
            &sidecar,
            &scratch,
            options.jobs,
            log,
            &committed,
        )
        .await?;
        let rto = started.elapsed();
        say(
            log,
            &format!(
                "restored in {}: {} tables, {} rows",
                crate::ui::took(rto),
                counts.len(),
                counts.values().sum::<u64>()
            ),
        );
        let _group = actions::group("Parity checks");
        let history = history::snapshot(&scratch, None).await?;
        let versions = history::versions(&history);
        let invalid = checks::invalid_indexes(&scratch).await?;
        let unvalidated = checks::unvalidated_constraints(&scratch).await?;
        drop(_group);
        let smoke = match &options.smoke {
            Some(smoke) => Some(run_smoke(options, smoke, &scratch_name, state, shutdown).await?),
            None => None,
        };
        Ok::<_, Error>((rto, counts, versions, invalid, unvalidated, smoke))
    };
    let outcome = tokio::select! {
        done = work => done,
        error = stopped("restoring and checking the scratch database") => Err(error),
    };

    // Dropped whatever happened, unless kept.
    if options.keep {
        say(
            log,
            &format!("keeping the scratch database `{scratch_name}` (`--keep`); drop it when done"),
        );
    } else {
        match drop_scratch(&options.server, &scratch_name).await {
            Ok(()) => {
                known.scratch_dropped = true;
                say(
                    log,
                    &format!("dropped the scratch database `{scratch_name}`"),
                );
            }
            Err(message) => {
                actions::annotate(actions::Level::Warning, Some("shipgate drill"), &message);
                log_line(log, &message);
            }
        }
    }
    let (rto, counts, versions, invalid, unvalidated, smoke) = outcome?;

    let mut list = vec![
        checks::rto(rto, options.max_rto),
        checks::rpo(rpo, options.max_rpo, &sidecar.backup_id, &sidecar.timestamp),
        checks::row_counts(sidecar.row_counts.as_ref(), &counts),
        checks::schema_version(sidecar.migration_versions.as_deref(), &versions),
        checks::indexes(&invalid),
        checks::constraints(&unvalidated),
    ];
    list.push(match (&options.smoke, smoke) {
        (Some(run), Some((passed, tally, how))) => {
            checks::smoke(Some(&run.suite), passed, tally, &how)
        }
        _ => checks::smoke(None, true, None, ""),
    });
    for check in &list {
        log_line(
            log,
            &format!("check {}: {} ({})", check.name, check.verdict, check.detail),
        );
    }
    Ok(Drilled {
        sidecar,
        rto,
        rpo,
        row_counts: counts,
        migration_versions: versions,
        checks: list,
    })
}

/// The backup to drill and its destination, opened.
async fn find(options: &Options) -> Result<(crate::storage::Storage, Sidecar)> {
    let storage = open_storage(options.which.location(), &options.s3).await;
    let sidecar = options.which.read(&storage, &Shutdown::never()).await?;
    Ok((storage, sidecar))
}

/// How old the backup is: now minus the time its dump started (the sidecar's `timestamp`).
fn age(sidecar: &Sidecar) -> Result<Duration> {
    let taken: jiff::Timestamp = sidecar.timestamp.parse().map_err(|e| {
        Error::gate(format!(
            "the sidecar of `{}` has the timestamp {} ({e}); its age cannot be measured",
            sidecar.backup_id,
            actions::quote(&sidecar.timestamp)
        ))
    })?;
    let seconds = (jiff::Timestamp::now().as_millisecond() - taken.as_millisecond()).max(0);
    Ok(Duration::from_millis(seconds as u64))
}

/// Whether `a` and `b` name the same database on the same server, as far as their URLs tell:
/// the same host (every local name — the socket, `localhost`, loopback — counts as one), port
/// and database name (libpq's default, the user name, when the URL names none).
pub(crate) fn same_database(a: &Database, b: &Database) -> bool {
    fn key(db: &Database) -> (String, u16, String) {
        let (host, port) = address_of(db.conninfo());
        let host = host.to_ascii_lowercase();
        let local = host.is_empty()
            || host == "localhost"
            || host.starts_with("127.")
            || host == "[::1]"
            || host == "::1"
            || host.starts_with('/');
        let name = if db.name().is_empty() {
            url::Url::parse(db.conninfo())
                .map(|u| u.username().to_string())
                .unwrap_or_default()
        } else {
            db.name().to_string()
        };
        (if local { String::new() } else { host }, port, name)
    }
    key(a) == key(b)
}

/// How the drill server and the production database relate, asked of the servers themselves.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Relation {
    /// The same cluster (`system_identifier`) and the same database: refused.
    SameDatabase,
    /// The same cluster, another database: allowed, with a warning (the drill's load lands on
    /// production's server).
    SameServer,
    /// Different clusters.
    Separate,
    /// One of them could not be asked (why); only the URLs could be compared.
    Unknown(String),
}

/// Asks both servers who they are: the cluster's `system_identifier` (`pg_control_system()`,
/// readable by any role) and the database connected to. Unlike [`same_database`] this sees
/// through DNS aliases, `hostaddr`, proxies and port forwards.
pub(crate) async fn relation(server: &Database, production: &Database) -> Relation {
    const WHO: &str = "SELECT system_identifier::text || ' ' || current_database() \
                       FROM pg_control_system()";
    let (a, b) = tokio::join!(server.scalar(WHO), production.scalar(WHO));
    match (a, b) {
        (Ok(Some(a)), Ok(Some(b))) => {
            let cluster = |who: &str| who.split(' ').next().unwrap_or_default().to_string();
            if a == b {
                Relation::SameDatabase
            } else if cluster(&a) == cluster(&b) {
                Relation::SameServer
            } else {
                Relation::Separate
            }
        }
        (Err(e), _) => Relation::Unknown(format!("`drill-database-url`: {e}")),
        (_, Err(e)) => Relation::Unknown(format!("`database-url`: {e}")),
        _ => Relation::Unknown("no answer to `pg_control_system()`".into()),
    }
}

/// The URL of the scratch database: `drill-database-url` naming it instead (a secret).
fn scratch_url(server_url: &Secret, name: &str) -> Result<Secret> {
    let mut url = url::Url::parse(server_url.expose())
        .map_err(|e| Error::usage(format!("`drill-database-url` is not a URL: {e}")))?;
    url.set_path(&format!("/{name}"));
    Ok(Secret::new(url.to_string()))
}

/// Runs the smoke suite as a child `shipgate smoke` with the scratch database's URL in
/// [`SCRATCH_URL_ENV`]: whether it passed, its tally (tests, failed) from its `smoke.json`, and
/// how it ended.
async fn run_smoke(
    options: &Options,
    smoke: &Smoke,
    scratch_name: &str,
    state: &StateDir,
    shutdown: &Shutdown,
) -> Result<(bool, Option<(usize, usize)>, String)> {
    let _group = actions::group(&format!("Smoke suite `{}`", smoke.suite));
    let url = scratch_url(&options.server_url, scratch_name)?;
    let mut spec = Spec::new("smoke", smoke.argv.clone())
        .shipgate_child()
        .secret_env(SCRATCH_URL_ENV, &url);
    // Its outputs and summary are not this step's: the drill reports the suite's verdict.
    for var in [
        "GITHUB_OUTPUT",
        "GITHUB_ENV",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_STATE",
        "GITHUB_PATH",
        "GITHUB_ACTIONS",
    ] {
        spec = spec.env_remove(var);
    }
    let finished = process::run_logged(&spec, None, shutdown.wait()).await?;
    let tally = state
        .load::<SmokeFile>()
        .ok()
        .flatten()
        .map(|file| (file.total, file.failed));
    Ok((finished.success(), tally, finished.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_url_names_the_scratch_database_and_stays_secret() {
        let server = Secret::new("postgres://u:drill-pw@db:5432/postgres?sslmode=require");
        let url = scratch_url(&server, "shipgate_drill_ab12").expect("url");
        assert_eq!(
            url.expose(),
            "postgres://u:drill-pw@db:5432/shipgate_drill_ab12?sslmode=require"
        );
        assert_eq!(format!("{url}"), "***");
    }

    #[test]
    fn the_same_database_through_another_local_name_is_the_same() {
        let db = |url: &str| Database::from_url("x", &Secret::new(url)).expect("url");
        let prod = db("postgres://app:pw@localhost:5432/app");
        assert!(same_database(
            &prod,
            &db("postgresql://other@127.0.0.1/app")
        ));
        assert!(same_database(&prod, &db("postgres://app@localhost:5432/")));
        assert!(!same_database(
            &prod,
            &db("postgres://app@localhost:5432/postgres")
        ));
        assert!(!same_database(
            &prod,
            &db("postgres://app@localhost:5433/app")
        ));
        assert!(!same_database(&prod, &db("postgres://app@db.internal/app")));
    }
}
