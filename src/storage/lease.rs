//! Run markers: how one `shipgate backup` tells another, through the destination itself,
//! that it is still alive.
//!
//! Each run writes its own marker, `backup-<id>.run-<16 hex>` next to the backup, before it
//! starts uploading, and renews it every [`Timing::beat`] while it runs (recording its upload
//! id once it has one). A marker not renewed for [`Timing::lease`] belongs to a dead run (killed,
//! or its runner lost); a run that cannot renew its marker for [`Timing::hold`] (shorter) stops
//! itself, so no other run takes it for dead while it still writes. At the end a run deletes
//! its marker, or marks it `ended` when it left something behind (an upload it could not abort).
//!
//! Freshness is judged on the destination's clock only: the markers' modification times
//! against the time the server gave the reader's own, just-written marker.
//!
//! [`assess`] turns the markers and the unfinished uploads into a decision: another live run
//! (refuse to start), uploads that provably belong to no live run (abort them, saying why), and
//! uploads nobody claims that are younger than the backup timeout (refuse: an older shipgate or
//! another tool may still be writing them).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::{ObjectInfo, PendingUpload, Storage};

/// How long a marker stays fresh after its last renewal. Scaled by `SHIPGATE_RETRY_SCALE`
/// (tests), never below [`LEASE_FLOOR`]: S3 times have a resolution of one second.
const LEASE: Duration = Duration::from_secs(90);
const LEASE_FLOOR: Duration = Duration::from_secs(9);
/// Markers are small; anything bigger is not one.
const MARKER_LIMIT: usize = 64 * 1024;
const KIND: &str = "shipgate-backup-run";

/// The lease's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// A marker older than this (on the destination's clock) belongs to a dead run.
    pub(crate) lease: Duration,
    /// How often a live run renews its marker.
    pub(crate) beat: Duration,
    /// A run that could not renew its marker for this long stops itself.
    pub(crate) hold: Duration,
}

impl Timing {
    /// 90 s / 15 s / 60 s (in tests, scaled down to 9 s / 1.5 s / 6 s).
    pub(crate) fn current() -> Timing {
        let lease = crate::util::retry_delay(LEASE).max(LEASE_FLOOR);
        Timing {
            lease,
            beat: lease / 6,
            hold: lease * 2 / 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunState {
    Running,
    Ended,
}

/// A marker's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MarkerBody {
    pub(crate) kind: String,
    pub(crate) schema_version: u32,
    pub(crate) backup_id: String,
    /// The run's random token (also in the marker's name).
    pub(crate) run: String,
    pub(crate) state: RunState,
    /// The writer's clock, RFC 3339 with milliseconds; used only to order two runs that start
    /// together.
    pub(crate) started_at: String,
    pub(crate) renewed_at: String,
    #[serde(default)]
    pub(crate) ended_at: Option<String>,
    /// The run's unfinished upload, once it has one.
    #[serde(default)]
    pub(crate) upload_id: Option<String>,
    pub(crate) lease_seconds: u64,
    /// Who runs it: the GitHub run, else the host and process id.
    #[serde(default)]
    pub(crate) by: String,
    /// What an ended run left behind.
    #[serde(default)]
    pub(crate) left: Option<String>,
}

/// A marker found in the destination.
#[derive(Debug, Clone)]
pub(crate) struct Marker {
    pub(crate) name: String,
    pub(crate) body: MarkerBody,
    /// Last renewal, seconds since the epoch on the destination's clock.
    pub(crate) modified: Option<i64>,
}

impl Marker {
    fn fresh(&self, now: i64, timing: Timing) -> bool {
        self.body.state == RunState::Running
            && self
                .modified
                .is_none_or(|t| t + timing.lease.as_secs() as i64 >= now)
    }

    /// Orders two runs that started together: the earlier start (then the smaller token) wins.
    fn started_before(&self, other: &Marker) -> bool {
        let at = |m: &Marker| m.body.started_at.parse::<jiff::Timestamp>().ok();
        (at(self), &self.body.run) < (at(other), &other.body.run)
    }

    /// `started 2026-…Z by <who>`, for messages.
    pub(crate) fn describe(&self) -> String {
        let by = if self.body.by.is_empty() {
            String::new()
        } else {
            format!(" by {}", self.body.by)
        };
        format!("started {}{by}", self.body.started_at)
    }
}

/// The name of run `token`'s marker for `backup_id`.
fn marker_name(backup_id: &str, token: &str) -> String {
    format!("{backup_id}.run-{token}")
}

/// Whether `name` is a run marker of `backup_id`.
fn is_marker_of(backup_id: &str, name: &str) -> bool {
    name.strip_prefix(backup_id)
        .and_then(|rest| rest.strip_prefix(".run-"))
        .is_some_and(|token| token.len() == 16 && token.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `backup-<id>` for a run marker's name (for retention, which groups a backup's objects).
pub(crate) fn marker_stem(name: &str) -> Option<&str> {
    let (stem, token) = name.rsplit_once(".run-")?;
    (token.len() == 16 && token.chars().all(|c| c.is_ascii_hexdigit())).then_some(stem)
}

/// Seconds since the epoch as RFC 3339.
pub(crate) fn time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

fn now_millis() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| crate::util::now_rfc3339())
}

/// This process, for other runs' messages: `process <pid> on `<host>``.
pub(crate) fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("process {} on `{host}`", std::process::id())
}

/// Who is running this, for other runs' messages: the GitHub run's URL, else host and pid.
fn who() -> String {
    let env = crate::inputs::env;
    let local = this_process();
    match crate::actions::run_url() {
        Some(run) => format!(
            "{run} (attempt {}, {local})",
            env("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into())
        ),
        None => local,
    }
}

/// Why an upload may be aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stale {
    pub(crate) upload: PendingUpload,
    pub(crate) reason: String,
}

/// What the markers and uploads say, from one run's point of view.
#[derive(Debug, Default)]
pub(crate) struct Assessment {
    /// Another run that is alive and ahead of this one: do not start.
    pub(crate) live: Option<Marker>,
    /// The uploads of the live run (or that may be), for the message.
    pub(crate) live_uploads: Vec<PendingUpload>,
    /// Uploads no live run can own, with the reason.
    pub(crate) stale: Vec<Stale>,
    /// Uploads nobody claims, younger than the backup timeout: they may still be written.
    pub(crate) unknown: Vec<PendingUpload>,
    /// Markers of ended or dead runs, to delete once their uploads are gone.
    pub(crate) leftovers: Vec<String>,
}

/// Decides, at `now` (the destination's clock), which other runs are alive and which uploads
/// belong to none of them. Only an upload that provably belongs to no live run is stale: one
/// recorded by a run that ended or stopped renewing its marker, one started by such a run
/// before it could record it, or one nobody claims that is older than `timeout`.
pub(crate) fn assess(
    mine: &Marker,
    others: &[Marker],
    uploads: &[PendingUpload],
    now: i64,
    timing: Timing,
    timeout: Duration,
) -> Assessment {
    let mut assessment = Assessment::default();
    let fresh: Vec<&Marker> = others.iter().filter(|m| m.fresh(now, timing)).collect();
    // Another live run is ahead when it has an upload, or started first.
    assessment.live = fresh
        .iter()
        .find(|m| m.body.upload_id.is_some())
        .or_else(|| fresh.iter().find(|m| m.started_before(mine)))
        .map(|m| (*m).clone());
    for upload in uploads {
        let recorded = others
            .iter()
            .find(|m| m.body.upload_id.as_deref() == Some(upload.id.as_str()));
        let reason = match recorded {
            Some(m) if m.fresh(now, timing) => {
                assessment.live.get_or_insert_with(|| m.clone());
                assessment.live_uploads.push(upload.clone());
                continue;
            }
            Some(m) if m.body.state == RunState::Ended => format!(
                "its run ({}) ended at {}",
                m.describe(),
                m.body.ended_at.as_deref().unwrap_or("an unknown time")
            ),
            Some(m) => dead(m, timing),
            None => {
                // Unrecorded: a live run may not have recorded it yet.
                if let Some(m) = fresh.iter().find(|m| m.body.upload_id.is_none()) {
                    assessment.live.get_or_insert_with(|| (*m).clone());
                    assessment.live_uploads.push(upload.clone());
                    continue;
                }
                let killed = others.iter().find(|m| {
                    m.body.state == RunState::Running
                        && m.body.upload_id.is_none()
                        && !m.fresh(now, timing)
                });
                match (killed, upload.initiated) {
                    (Some(m), _) => dead(m, timing),
                    (None, Some(at)) if at + timeout.as_secs() as i64 <= now => format!(
                        "it was initiated at {}, longer ago than the backup timeout ({}), so no run can still be writing it",
                        time(at),
                        crate::ui::format_duration(timeout)
                    ),
                    _ => {
                        assessment.unknown.push(upload.clone());
                        continue;
                    }
                }
            }
        };
        assessment.stale.push(Stale {
            upload: upload.clone(),
            reason,
        });
    }
    assessment.leftovers = others
        .iter()
        .filter(|m| !m.fresh(now, timing))
        .map(|m| m.name.clone())
        .collect();
    assessment
}

fn dead(marker: &Marker, timing: Timing) -> String {
    format!(
        "its run ({}) stopped renewing its marker at {}, more than {} ago: it was killed or lost its runner",
        marker.describe(),
        marker.modified.map(time).unwrap_or_else(|| "?".into()),
        crate::ui::format_duration(timing.lease)
    )
}

/// This run's marker, renewed in the background once [`Lease::start`] is called.
pub(crate) struct Lease {
    storage: Storage,
    name: String,
    body: Arc<Mutex<MarkerBody>>,
    timing: Timing,
    renew_now: Arc<Notify>,
    stop: Arc<Notify>,
    lost: watch::Receiver<Option<String>>,
    lost_tx: Option<watch::Sender<Option<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What [`Lease::begin`] found.
pub(crate) struct Found {
    pub(crate) mine: Marker,
    pub(crate) others: Vec<Marker>,
    /// The destination's clock, from this run's marker.
    pub(crate) now: i64,
}

impl Lease {
    /// This run's marker for `backup_id`, not written yet.
    pub(crate) fn new(storage: &Storage, backup_id: &str) -> Lease {
        let timing = Timing::current();
        let token = crate::util::random_hex(8);
        let started = now_millis();
        let body = MarkerBody {
            kind: KIND.into(),
            schema_version: 1,
            backup_id: backup_id.into(),
            run: token.clone(),
            state: RunState::Running,
            started_at: started.clone(),
            renewed_at: started,
            ended_at: None,
            upload_id: None,
            lease_seconds: timing.lease.as_secs(),
            by: who(),
            left: None,
        };
        let (lost_tx, lost) = watch::channel(None);
        Lease {
            storage: storage.clone(),
            name: marker_name(backup_id, &token),
            body: Arc::new(Mutex::new(body)),
            timing,
            renew_now: Arc::new(Notify::new()),
            stop: Arc::new(Notify::new()),
            lost,
            lost_tx: Some(lost_tx),
            task: None,
        }
    }

    /// Writes this run's marker and reads every other marker of the backup; this one's
    /// modification time gives the destination's clock. A future of its own, to spawn: if the
    /// caller stops waiting (a signal, the deadline), it lets the task finish before
    /// [`Lease::release`], so a write still in flight cannot land after the marker's deletion.
    pub(crate) fn begin(
        &self,
    ) -> impl std::future::Future<Output = Result<Found, super::StorageError>> + Send + 'static
    {
        let storage = self.storage.clone();
        let name = self.name.clone();
        let body = self.body.lock().unwrap_or_else(|p| p.into_inner()).clone();
        async move {
            storage
                .put_replace(&name, serialize(&body), "application/json")
                .await?;
            let listed = storage.list(&format!("{}.run-", body.backup_id)).await?;
            let mut mine = listed
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| o.modified);
            if mine.is_none() {
                mine = storage.head(&name).await?.and_then(|o| o.modified);
            }
            let mut others = Vec::new();
            for object in listed
                .iter()
                .filter(|o| o.name != name && is_marker_of(&body.backup_id, &o.name))
            {
                if let Some(marker) = read_marker(&storage, object).await? {
                    others.push(marker);
                }
            }
            let now = mine.unwrap_or_else(|| jiff::Timestamp::now().as_second());
            let mine = Marker {
                name,
                body,
                modified: Some(now),
            };
            Ok(Found { mine, others, now })
        }
    }

    pub(crate) fn timing(&self) -> Timing {
        self.timing
    }

    /// The marker's URL, for messages.
    pub(crate) fn url(&self) -> String {
        self.storage.url(&self.name)
    }

    /// Starts renewing the marker every [`Timing::beat`]; if no renewal succeeds for
    /// [`Timing::hold`], [`Lease::lost`] fires.
    pub(crate) fn start(&mut self) {
        let Some(lost_tx) = self.lost_tx.take() else {
            return;
        };
        let storage = self.storage.clone();
        let name = self.name.clone();
        let body = self.body.clone();
        let timing = self.timing;
        let renew_now = self.renew_now.clone();
        let stop = self.stop.clone();
        let url = self.url();
        self.task = Some(tokio::spawn(async move {
            let mut last_ok = Instant::now();
            let mut last_error = String::from("no answer");
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(timing.beat) => {}
                    _ = renew_now.notified() => {}
                    _ = stop.notified() => return,
                }
                let bytes = {
                    let mut body = body.lock().unwrap_or_else(|p| p.into_inner());
                    body.renewed_at = now_millis();
                    serialize(&body)
                };
                // Not interrupted by `stop`: a write dropped halfway could still land after
                // the marker is deleted.
                let renewal = tokio::time::timeout(
                    timing.hold / 2,
                    storage.put_replace(&name, bytes, "application/json"),
                )
                .await;
                match renewal {
                    Ok(Ok(())) => last_ok = Instant::now(),
                    Ok(Err(e)) => last_error = e.to_string(),
                    Err(_) => {
                        last_error = format!(
                            "no answer within {}",
                            crate::ui::format_duration(timing.hold / 2)
                        )
                    }
                }
                if last_ok.elapsed() >= timing.hold {
                    let _ = lost_tx.send(Some(format!(
                        "cannot renew this run's marker `{url}` for {} ({last_error}); stopping, so that another run cannot take this one for dead while it still writes",
                        crate::ui::format_duration(timing.hold)
                    )));
                    return;
                }
            }
        }));
    }

    /// Records the run's upload id in the marker (renewed at once when it changes).
    pub(crate) fn note_upload(&self, id: Option<String>) {
        let mut body = self.body.lock().unwrap_or_else(|p| p.into_inner());
        if id.is_some() && body.upload_id != id {
            body.upload_id = id;
            self.renew_now.notify_one();
        }
    }

    /// Resolves (with the reason) when the marker could not be renewed for [`Timing::hold`];
    /// never otherwise.
    pub(crate) fn watch(&self) -> LostWatch {
        LostWatch(self.lost.clone())
    }

    /// Ends the lease: deletes the marker, or, when the run `left` something behind, keeps it
    /// marked `ended` (saying what) so a later run knows that upload is nobody's.
    pub(crate) async fn release(mut self, left: Option<String>) {
        self.stop.notify_one();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(self.timing.hold, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        let result = match left {
            None => self.storage.delete(&self.name).await,
            Some(left) => {
                let bytes = {
                    let mut body = self.body.lock().unwrap_or_else(|p| p.into_inner());
                    body.state = RunState::Ended;
                    body.ended_at = Some(now_millis());
                    body.left = Some(left);
                    serialize(&body)
                };
                self.storage
                    .put_replace(&self.name, bytes, "application/json")
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(
                "cannot update this run's marker `{}` ({e}); it expires by itself in {}",
                self.url(),
                crate::ui::format_duration(self.timing.lease)
            );
        }
    }
}

/// See [`Lease::watch`].
pub(crate) struct LostWatch(watch::Receiver<Option<String>>);

impl LostWatch {
    pub(crate) async fn lost(&mut self) -> String {
        loop {
            if let Some(reason) = self.0.borrow_and_update().clone() {
                return reason;
            }
            if self.0.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

fn serialize(body: &MarkerBody) -> Vec<u8> {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    crate::secret::redact(&text).into_bytes()
}

/// A marker's content; `None` when it is gone or is not one.
async fn read_marker(
    storage: &Storage,
    object: &ObjectInfo,
) -> Result<Option<Marker>, super::StorageError> {
    let Some(bytes) = storage.read_small(&object.name, MARKER_LIMIT).await? else {
        return Ok(None);
    };
    match serde_json::from_slice::<MarkerBody>(&bytes) {
        Ok(body) if body.kind == KIND => Ok(Some(Marker {
            name: object.name.clone(),
            body,
            modified: object.modified,
        })),
        _ => {
            tracing::warn!(
                "`{}` is not a shipgate run marker; ignoring it",
                storage.url(&object.name)
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        lease: Duration::from_secs(90),
        beat: Duration::from_secs(15),
        hold: Duration::from_secs(60),
    };
    const TIMEOUT: Duration = Duration::from_secs(6 * 3600);
    const NOW: i64 = 1_000_000;

    fn marker(run: &str, started: &str, modified: i64, upload: Option<&str>) -> Marker {
        Marker {
            name: format!("backup-1.run-{run}"),
            body: MarkerBody {
                kind: KIND.into(),
                schema_version: 1,
                backup_id: "backup-1".into(),
                run: run.into(),
                state: RunState::Running,
                started_at: started.into(),
                renewed_at: started.into(),
                ended_at: None,
                upload_id: upload.map(str::to_string),
                lease_seconds: 90,
                by: String::new(),
                left: None,
            },
            modified: Some(modified),
        }
    }

    fn upload(id: &str, initiated: i64) -> PendingUpload {
        PendingUpload {
            id: id.into(),
            initiated: Some(initiated),
        }
    }

    fn mine() -> Marker {
        marker("b", "2026-01-01T00:00:10.000Z", NOW, None)
    }

    #[test]
    fn a_live_run_with_an_upload_is_never_touched() {
        let other = marker("a", "2026-01-01T00:00:00.000Z", NOW - 10, Some("u1"));
        let a = assess(
            &mine(),
            &[other],
            &[upload("u1", NOW - 20)],
            NOW,
            T,
            TIMEOUT,
        );
        assert_eq!(a.live.map(|m| m.body.run), Some("a".into()));
        assert_eq!(a.live_uploads, vec![upload("u1", NOW - 20)]);
        assert!(a.stale.is_empty() && a.unknown.is_empty() && a.leftovers.is_empty());
    }

    #[test]
    fn an_unrecorded_upload_may_belong_to_a_live_run() {
        // The live run started after this one (so it is not "ahead"), but has not recorded its
        // upload yet: the upload may be its own.
        let later = marker("c", "2026-01-01T00:00:20.000Z", NOW, None);
        let a = assess(&mine(), &[later], &[upload("u9", NOW)], NOW, T, TIMEOUT);
        assert!(a.live.is_some());
        assert!(a.stale.is_empty());
        // Without uploads, a run that started later is not in the way.
        let later = marker("c", "2026-01-01T00:00:20.000Z", NOW, None);
        assert!(
            assess(&mine(), &[later], &[], NOW, T, TIMEOUT)
                .live
                .is_none()
        );
        // One that started earlier is.
        let earlier = marker("a", "2026-01-01T00:00:00.000Z", NOW, None);
        assert!(
            assess(&mine(), &[earlier], &[], NOW, T, TIMEOUT)
                .live
                .is_some()
        );
    }

    #[test]
    fn uploads_of_dead_and_ended_runs_are_stale_with_the_reason() {
        let dead = marker("a", "2026-01-01T00:00:00.000Z", NOW - 91, Some("u1"));
        let mut ended = marker("c", "2026-01-01T00:00:00.000Z", NOW - 5, Some("u2"));
        ended.body.state = RunState::Ended;
        ended.body.ended_at = Some("2026-01-01T00:05:00.000Z".into());
        let killed_early = marker("d", "2026-01-01T00:00:00.000Z", NOW - 200, None);
        let a = assess(
            &mine(),
            &[dead, ended, killed_early],
            &[
                upload("u1", NOW - 300),
                upload("u2", NOW - 300),
                upload("u3", NOW - 300),
            ],
            NOW,
            T,
            TIMEOUT,
        );
        assert!(a.live.is_none());
        assert_eq!(a.stale.len(), 3, "{:?}", a.stale);
        assert!(a.stale[0].reason.contains("stopped renewing its marker"));
        assert!(a.stale[1].reason.contains("ended at 2026-01-01T00:05:00"));
        assert!(a.stale[2].reason.contains("stopped renewing its marker"));
        assert_eq!(a.leftovers.len(), 3);
    }

    #[test]
    fn unclaimed_uploads_wait_for_the_backup_timeout() {
        let young = upload("u1", NOW - 60);
        let old = upload("u2", NOW - 6 * 3600 - 1);
        let a = assess(&mine(), &[], &[young.clone(), old], NOW, T, TIMEOUT);
        assert_eq!(a.unknown, vec![young]);
        assert_eq!(a.stale.len(), 1);
        assert!(
            a.stale[0]
                .reason
                .contains("longer ago than the backup timeout (6h)")
        );
        let unknown_age = PendingUpload {
            id: "u3".into(),
            initiated: None,
        };
        let a = assess(&mine(), &[], &[unknown_age], NOW, T, TIMEOUT);
        assert_eq!(a.unknown.len(), 1);
    }

    #[test]
    fn marker_names() {
        assert!(is_marker_of("backup-1", "backup-1.run-0123456789abcdef"));
        assert!(!is_marker_of(
            "backup-1",
            "backup-1.run-0123456789abcdef.json"
        ));
        assert!(!is_marker_of("backup-1", "backup-1.run-x.sql.gz"));
        assert!(!is_marker_of("backup-1", "backup-12.run-0123456789abcdef"));
        assert_eq!(
            marker_stem("backup-1.run-0123456789abcdef"),
            Some("backup-1")
        );
        assert_eq!(marker_stem("backup-1.json"), None);
    }
}
