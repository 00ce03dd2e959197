//! The deployment lease: one deployment per environment at a time, across runners and
//! workflows.
//!
//! The lease is one small JSON object, `lease-<environment>.json`, in the backup destination
//! (or `lease-destination`). It is taken with a conditional create (S3 `If-None-Match: *`; a
//! hard link locally), renewed and released with a compare-and-swap on the version read
//! (S3 `If-Match` on the ETag; locally the content's SHA-256 under an exclusive lock), so two
//! takers can never both believe they hold it. It carries its holder (run URL, deployment id,
//! actor), when it was taken and renewed, and its time to live.
//!
//! A lease not renewed for `ttl_seconds` has expired (judged on the destination's clock: the
//! object's last-modified time against the time the destination answered, as the backup's run
//! markers in [`crate::storage::lease`] do) and may be taken over; the takeover names the
//! expired holder. Another deployment's live lease is refused at once, or waited for.
//!
//! Values come in as parameters: nothing here reads settings or flags.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

pub(crate) mod config;

use crate::error::{Error, Result};
use crate::state::lease::Holder;
use crate::storage::{Expect, Storage, StorageError, Versioned};

const KIND: &str = "shipgate-deployment-lease";
/// Leases are small; anything bigger is not one.
const LIMIT: usize = 64 * 1024;
/// How long [`Held::stop`] waits for a renewal in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a waiting taker looks again, at most (scaled by `SHIPGATE_RETRY_SCALE`).
const POLL: Duration = Duration::from_secs(5);

/// The object's name for `environment`.
pub(crate) fn key(environment: &str) -> String {
    format!("lease-{environment}.json")
}

/// The lease object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) kind: String,
    pub(crate) schema_version: u32,
    pub(crate) environment: String,
    /// The holder's random token: a holder recognises its own lease by it.
    pub(crate) token: String,
    pub(crate) holder: Holder,
    /// The command that took it.
    pub(crate) taken_by: String,
    /// The holder's clock, RFC 3339 (for people; expiry is judged on the destination's).
    pub(crate) taken_at: String,
    pub(crate) renewed_at: String,
    pub(crate) expires_at: String,
    pub(crate) ttl_seconds: u64,
    #[serde(default)]
    pub(crate) takeover_of: Option<Holder>,
}

/// A lease as found in the destination.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) body: Body,
    tag: String,
    /// Seconds left until it expires (negative: expired that long ago), on the destination's
    /// clock.
    pub(crate) left: i64,
}

impl Current {
    pub(crate) fn expired(&self) -> bool {
        self.left <= 0
    }

    /// The holder and the lease's times, for messages.
    pub(crate) fn describe(&self) -> String {
        let state = if self.expired() {
            format!("expired {}s ago", -self.left)
        } else {
            format!("expires in {}s unless renewed", self.left)
        };
        format!(
            "{}, taken at {} by `{}`, last renewed at {}, {state}",
            self.body.holder.describe(),
            self.body.taken_at,
            self.body.taken_by,
            self.body.renewed_at
        )
    }
}

/// How to take a lease.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) environment: String,
    pub(crate) holder: Holder,
    /// The command taking it (`backup`, `rollout`, `lease`).
    pub(crate) command: String,
    /// The lease lapses this long after its last renewal.
    pub(crate) ttl: Duration,
    /// How long to wait for another deployment's lease; zero refuses at once.
    pub(crate) wait: Duration,
}

/// The lease of `environment`, or `None` when nobody holds it.
pub(crate) async fn read(storage: &Storage, environment: &str) -> Result<Option<Current>> {
    let name = key(environment);
    let Some(found) = storage.read_versioned(&name, LIMIT).await? else {
        return Ok(None);
    };
    parse(storage, &name, found).map(Some)
}

fn parse(storage: &Storage, name: &str, found: Versioned) -> Result<Current> {
    let body: Body = serde_json::from_slice(&found.body)
        .ok()
        .filter(|b: &Body| b.kind == KIND)
        .ok_or_else(|| {
            Error::dependency(format!(
                "`{}` is not a shipgate deployment lease; move it away (or `shipgate lease break --reason …`) so deployments can take the lease",
                storage.url(name)
            ))
        })?;
    let now = found
        .now
        .unwrap_or_else(|| jiff::Timestamp::now().as_second());
    let left = match found.modified {
        Some(modified) => modified + body.ttl_seconds as i64 - now,
        None => body
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second() - jiff::Timestamp::now().as_second())
            .unwrap_or(0),
    };
    Ok(Current {
        body,
        tag: found.tag,
        left,
    })
}

fn serialize(body: &Body) -> Vec<u8> {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    crate::secret::redact(&text).into_bytes()
}

fn stamp(body: &mut Body, ttl: Duration) {
    let now = jiff::Timestamp::now();
    body.renewed_at = crate::util::now_rfc3339();
    body.expires_at = now
        .checked_add(jiff::SignedDuration::from_secs(ttl.as_secs() as i64))
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default();
}

/// Who holds it, when the lease is refused.
fn refused(storage: &Storage, name: &str, current: &Current, waited: Duration) -> Error {
    let waited = if waited.is_zero() {
        "; pass `--lease-wait DURATION` (input `lease-wait`) to wait for it".to_string()
    } else {
        format!(" after waiting {}", crate::ui::format_duration(waited))
    };
    Error::gate(format!(
        "another deployment holds the environment `{}`: {} (lease `{}`){waited}; nothing was changed. Let it finish, or if it is dead and you cannot wait for its lease to expire, `shipgate lease break --reason \"…\"`",
        current.body.environment,
        current.describe(),
        storage.url(name)
    ))
}

/// How a lease was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nobody held it.
    Fresh,
    /// This deployment held it already (an earlier step, or a re-run): renewed.
    Kept,
    /// Its holder let it expire: taken over.
    Expired(Holder),
}

/// Takes the lease of `options.environment`: creates it when nobody holds it, keeps it when
/// this deployment already does, takes it over when it expired; otherwise waits up to
/// `options.wait` for it, then refuses (a gate: nothing was changed) naming the holder.
pub(crate) async fn acquire(storage: &Storage, options: &Options) -> Result<(Held, Taken)> {
    let name = key(&options.environment);
    let started = Instant::now();
    let mut said_waiting = false;
    loop {
        let current = read(storage, &options.environment).await?;
        let mut body = Body {
            kind: KIND.into(),
            schema_version: 1,
            environment: options.environment.clone(),
            token: crate::util::random_hex(8),
            holder: options.holder.clone(),
            taken_by: options.command.clone(),
            taken_at: crate::util::now_rfc3339(),
            renewed_at: String::new(),
            expires_at: String::new(),
            ttl_seconds: options.ttl.as_secs().max(1),
            takeover_of: None,
        };
        stamp(&mut body, options.ttl);
        let (expect, taken) = match &current {
            None => (Expect::Absent, Taken::Fresh),
            Some(c) if c.body.holder.deployment_id == options.holder.deployment_id => {
                // Ours already: keep its token and times, so every step sees one lease.
                body.token = c.body.token.clone();
                body.taken_at = c.body.taken_at.clone();
                body.taken_by = c.body.taken_by.clone();
                body.takeover_of = c.body.takeover_of.clone();
                (Expect::Tag(&c.tag), Taken::Kept)
            }
            Some(c) if c.expired() => {
                body.takeover_of = Some(c.body.holder.clone());
                (Expect::Tag(&c.tag), Taken::Expired(c.body.holder.clone()))
            }
            Some(c) => {
                let waited = started.elapsed();
                if waited >= options.wait {
                    return Err(refused(storage, &name, c, waited.min(options.wait)));
                }
                if !said_waiting {
                    said_waiting = true;
                    tracing::warn!(
                        "waiting up to {} for the lease of `{}`: {}",
                        crate::ui::format_duration(options.wait),
                        options.environment,
                        crate::text::one_line(&c.describe())
                    );
                }
                let pause = crate::util::retry_delay(POLL)
                    .min(options.ttl / 3)
                    .min(options.wait.saturating_sub(waited))
                    .max(Duration::from_millis(100));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        match storage
            .put_if(&name, serialize(&body), "application/json", expect)
            .await
        {
            Ok(tag) => {
                if let (Taken::Expired(_), Some(old)) = (&taken, &current) {
                    crate::actions::annotate(
                        crate::actions::Level::Warning,
                        Some("deployment lease"),
                        &format!(
                            "took over the expired lease of `{}` from {}",
                            options.environment,
                            crate::text::one_line(&old.describe())
                        ),
                    );
                }
                let held = Held::new(storage, name, body, tag, options.ttl);
                return Ok((held, taken));
            }
            // Someone else got there first: look again.
            Err(StorageError::Exists { .. } | StorageError::Changed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What became of a lease at its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Released {
    /// Deleted.
    Deleted,
    /// It was gone already (expired and nobody took it, or broken).
    Gone,
    /// Someone else holds it now (it expired and was taken over, or was broken and taken).
    Lost(Holder),
}

/// Releases the lease of `environment` if it is still the one of `token`.
pub(crate) async fn release(storage: &Storage, environment: &str, token: &str) -> Result<Released> {
    let name = key(environment);
    loop {
        let Some(current) = read(storage, environment).await? else {
            return Ok(Released::Gone);
        };
        if current.body.token != token {
            return Ok(Released::Lost(current.body.holder));
        }
        match storage.delete_if(&name, &current.tag).await {
            Ok(()) => return Ok(Released::Deleted),
            Err(StorageError::Changed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What [`force_break`] deleted.
#[derive(Debug, Clone)]
pub(crate) enum Broken {
    Lease(Box<Current>),
    /// Something at the lease's name that is not a lease (it blocked every taker).
    Unreadable(String),
}

/// Deletes the lease of `environment`, whoever holds it (or whatever blocks its name); what
/// it deleted, if anything.
pub(crate) async fn force_break(storage: &Storage, environment: &str) -> Result<Option<Broken>> {
    let name = key(environment);
    loop {
        let Some(found) = storage.read_versioned(&name, LIMIT).await? else {
            return Ok(None);
        };
        let tag = found.tag.clone();
        let broken = match parse(storage, &name, found) {
            Ok(current) => Broken::Lease(Box::new(current)),
            Err(e) => Broken::Unreadable(e.to_string()),
        };
        match storage.delete_if(&name, &tag).await {
            Ok(()) => return Ok(Some(broken)),
            Err(StorageError::Changed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The lease `token` holds, to keep it renewed from another process of the same deployment
/// (`pipeline`, between and around its stages); `None` when it is no longer that token's.
pub(crate) async fn resume(
    storage: &Storage,
    environment: &str,
    token: &str,
) -> Result<Option<Held>> {
    let Some(current) = read(storage, environment).await? else {
        return Ok(None);
    };
    if current.body.token != token {
        return Ok(None);
    }
    let ttl = Duration::from_secs(current.body.ttl_seconds.max(1));
    Ok(Some(Held::new(
        storage,
        key(environment),
        current.body,
        current.tag,
        ttl,
    )))
}

/// A lease this process holds; [`Held::start`] renews it in the background every third of its
/// time to live until [`Held::stop`].
pub(crate) struct Held {
    storage: Storage,
    name: String,
    body: Arc<Mutex<Body>>,
    tag: Arc<Mutex<String>>,
    ttl: Duration,
    stop: Arc<Notify>,
    lost: watch::Receiver<Option<String>>,
    lost_tx: Option<watch::Sender<Option<String>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    fn new(storage: &Storage, name: String, body: Body, tag: String, ttl: Duration) -> Held {
        let (lost_tx, lost) = watch::channel(None);
        Held {
            storage: storage.clone(),
            name,
            body: Arc::new(Mutex::new(body)),
            tag: Arc::new(Mutex::new(tag)),
            ttl,
            stop: Arc::new(Notify::new()),
            lost,
            lost_tx: Some(lost_tx),
            task: None,
        }
    }

    /// The lease object's URL.
    pub(crate) fn url(&self) -> String {
        self.storage.url(&self.name)
    }

    /// The lease as last written.
    pub(crate) fn body(&self) -> Body {
        self.body.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the lease was lost (someone else holds it now), once it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Renews the lease every third of its time to live. A renewal that fails is tried again
    /// at the next beat (the lease survives transient errors for up to two beats); one that
    /// finds another holder's lease stops renewing and reports it through [`Held::lost`].
    pub(crate) fn start(&mut self) {
        let Some(lost_tx) = self.lost_tx.take() else {
            return;
        };
        let storage = self.storage.clone();
        let name = self.name.clone();
        let body = self.body.clone();
        let tag = self.tag.clone();
        let ttl = self.ttl;
        let stop = self.stop.clone();
        let url = self.url();
        let beat = (ttl / 3).max(Duration::from_millis(300));
        self.task = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(beat) => {}
                    _ = stop.notified() => return,
                }
                let renewal = tokio::time::timeout(beat, renew(&storage, &name, &body, &tag, ttl))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Renewal::Failed(Error::dependency(format!(
                            "`{url}` did not answer within {}",
                            crate::ui::format_duration(beat)
                        ))))
                    });
                match renewal {
                    Ok(()) => tracing::debug!("renewed the deployment lease `{url}`"),
                    Err(Renewal::Lost(why)) => {
                        tracing::error!("{why}");
                        let _ = lost_tx.send(Some(why));
                        return;
                    }
                    Err(Renewal::Failed(e)) => tracing::warn!(
                        "cannot renew the deployment lease ({e}); trying again in {}",
                        crate::ui::format_duration(beat)
                    ),
                }
            }
        }));
    }

    /// Stops renewing (the lease stays taken until it is released or expires). A renewal in
    /// flight gets a moment to finish; one that lands later is harmless (it renews this
    /// deployment's own lease, and a release compares the version it reads itself).
    pub(crate) async fn stop(mut self) -> Body {
        self.stop.notify_one();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(STOP_GRACE.min(self.ttl), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        self.body()
    }
}

enum Renewal {
    Lost(String),
    Failed(Error),
}

async fn renew(
    storage: &Storage,
    name: &str,
    body: &Mutex<Body>,
    tag: &Mutex<String>,
    ttl: Duration,
) -> std::result::Result<(), Renewal> {
    let (bytes, token) = {
        let mut body = body.lock().unwrap_or_else(|p| p.into_inner());
        stamp(&mut body, ttl);
        (serialize(&body), body.token.clone())
    };
    let expected = tag.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match storage
        .put_if(name, bytes, "application/json", Expect::Tag(&expected))
        .await
    {
        Ok(new) => {
            *tag.lock().unwrap_or_else(|p| p.into_inner()) = new;
            Ok(())
        }
        Err(StorageError::Changed { .. }) => {
            // Perhaps an earlier renewal landed but its answer was lost: still ours?
            let environment = name
                .strip_prefix("lease-")
                .and_then(|n| n.strip_suffix(".json"))
                .unwrap_or(name);
            match read(storage, environment).await {
                Ok(Some(current)) if current.body.token == token => {
                    // Still ours: renewed by another process of this deployment (the pipeline
                    // and its stage), or by a renewal whose answer was lost.
                    *tag.lock().unwrap_or_else(|p| p.into_inner()) = current.tag;
                    Ok(())
                }
                Ok(Some(current)) => Err(Renewal::Lost(format!(
                    "lost the deployment lease `{}`: it is now held by {}",
                    storage.url(name),
                    current.body.holder.describe()
                ))),
                Ok(None) => Err(Renewal::Lost(format!(
                    "lost the deployment lease `{}`: it was broken or expired and removed",
                    storage.url(name)
                ))),
                Err(e) => Err(Renewal::Failed(e)),
            }
        }
        Err(e) => Err(Renewal::Failed(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str) -> Holder {
        Holder {
            run_url: None,
            deployment_id: id.into(),
            actor: "ana".into(),
            process: "process 1 on `h`".into(),
        }
    }

    fn options(id: &str, ttl: u64) -> Options {
        Options {
            environment: "production".into(),
            holder: holder(id),
            command: "backup".into(),
            ttl: Duration::from_secs(ttl),
            wait: Duration::ZERO,
        }
    }

    fn dir_storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path());
        (dir, storage)
    }

    #[tokio::test]
    async fn one_taker_wins_the_other_is_refused_naming_the_holder() {
        let (_dir, storage) = dir_storage();
        let (held, taken) = acquire(&storage, &options("d1", 600)).await.expect("free");
        assert_eq!(taken, Taken::Fresh);
        let error = acquire(&storage, &options("d2", 600))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), crate::error::Kind::Gate);
        let text = error.to_string();
        assert!(text.contains("deployment `d1` by `ana`"), "{text}");
        // The same deployment keeps its lease (a later step, a re-run).
        let (again, taken) = acquire(&storage, &options("d1", 600)).await.expect("ours");
        assert_eq!(taken, Taken::Kept);
        assert_eq!(again.body().token, held.body().token);
        let token = again.body().token;
        assert_eq!(
            release(&storage, "production", "someone-else").await.ok(),
            Some(Released::Lost(holder("d1")))
        );
        assert_eq!(
            release(&storage, "production", &token).await.ok(),
            Some(Released::Deleted)
        );
        assert!(read(&storage, "production").await.expect("read").is_none());
        assert_eq!(
            release(&storage, "production", &token).await.ok(),
            Some(Released::Gone)
        );
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_named() {
        let (_dir, storage) = dir_storage();
        let mut first = options("d1", 1);
        first.ttl = Duration::from_secs(1);
        let (old, _) = acquire(&storage, &first).await.expect("free");
        // Expiry is judged on the file's modification time: make it old.
        let path = storage.local_path(&key("production")).expect("local");
        let past = std::time::SystemTime::now() - Duration::from_secs(120);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(past).expect("set mtime");
        let (new, taken) = acquire(&storage, &options("d2", 600))
            .await
            .expect("expired");
        assert_eq!(taken, Taken::Expired(holder("d1")));
        assert_eq!(new.body().takeover_of, Some(holder("d1")));
        assert_eq!(
            release(&storage, "production", &old.body().token)
                .await
                .ok(),
            Some(Released::Lost(holder("d2")))
        );
    }

    #[tokio::test]
    async fn something_else_at_the_name_blocks_takers_until_broken() {
        let (dir, storage) = dir_storage();
        std::fs::write(dir.path().join(key("production")), b"not json").expect("write");
        let error = acquire(&storage, &options("d1", 600))
            .await
            .err()
            .expect("refused");
        assert_eq!(error.kind(), crate::error::Kind::Dependency);
        assert!(error.to_string().contains("lease break"), "{error}");
        let broken = force_break(&storage, "production").await.expect("break");
        assert!(matches!(broken, Some(Broken::Unreadable(_))), "{broken:?}");
        assert!(
            force_break(&storage, "production")
                .await
                .expect("again")
                .is_none()
        );
        let (_, taken) = acquire(&storage, &options("d1", 600)).await.expect("free");
        assert_eq!(taken, Taken::Fresh);
    }
}
