//! How `backup` and `rollout` take the deployment lease, keep it renewed while they run, and
//! how `record` and `pipeline` release it (see [`crate::lease`]). Below `commands::backup`:
//! the backup destination and the S3 options come in as values.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::lease::{self, Held, Released, Taken};
use crate::settings::Settings;
use crate::state::lease::{Holder, LeaseFile, LeaseStatus};
use crate::state::{Header, StateDir};
use crate::storage::{Location, S3Options};
use crate::util::HumanDuration;

/// How long a lease lives after its last renewal unless told otherwise: long enough to cover
/// the gap between two steps of a deployment workflow (a build between `backup` and
/// `rollout`), short enough that a dead runner does not block the environment for long.
const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// The lease options every command that takes the lease shares.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct LeaseArgs {
    /// Where the deployment lease `lease-<environment>.json` lives: `s3://bucket/prefix` or
    /// `file:///dir` (input `lease-destination`) [default: the backup destination]
    #[arg(long, value_name = "URL")]
    pub(crate) lease_destination: Option<String>,
    /// The lease lapses this long after its last renewal; holders renew it every third of it
    /// (input `lease-ttl`) [default: 15m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lease_ttl: Option<HumanDuration>,
    /// How long to wait for another deployment's lease before refusing (input `lease-wait`)
    /// [default: 0s, refuse at once]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lease_wait: Option<HumanDuration>,
    /// `false`: take no deployment lease (input `lease`) [default: true]
    #[arg(long, value_name = "BOOL")]
    pub(crate) lease: Option<bool>,
}

fn file_config(settings: &Settings) -> &lease::config::FileConfig {
    static EMPTY: std::sync::OnceLock<lease::config::FileConfig> = std::sync::OnceLock::new();
    settings
        .file
        .lease
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

/// Where the lease lives, resolved before anything is written.
pub(crate) struct Place {
    location: Location,
    ttl: Duration,
    wait: Duration,
}

impl Place {
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }
}

/// The lease's place and timing: `lease-destination` > the backup destination (`backup`,
/// resolved by `commands::backup::destination`); `None` (said once) when the lease is turned
/// off or there is no destination.
pub(crate) fn place(
    args: &LeaseArgs,
    backup: Option<Location>,
    settings: &Settings,
) -> Result<Option<Place>> {
    let file = file_config(settings);
    let enabled = settings
        .value("lease", args.lease, file.enabled)?
        .unwrap_or(true);
    let ttl = settings.duration("lease-ttl", args.lease_ttl, file.ttl, DEFAULT_TTL)?;
    if ttl < Duration::from_secs(1) {
        return Err(Error::usage(
            "`lease-ttl` is too short; use at least 1s (S3 times have a resolution of one second)",
        ));
    }
    let wait = settings.duration("lease-wait", args.lease_wait, file.wait, Duration::ZERO)?;
    let given = settings
        .text(
            "lease-destination",
            args.lease_destination.clone(),
            file.destination.as_ref(),
        )
        .map(|text| Location::parse(&text).map_err(Error::from))
        .transpose()?;
    let location = match given {
        Some(location) => Some(location),
        None => backup,
    };
    if !enabled {
        return Ok(None);
    }
    let Some(location) = location else {
        tracing::info!(
            "no deployment lease: there is no backup destination or `lease-destination` to keep it in, so nothing stops another deployment of `{}` running at the same time",
            settings.environment
        );
        return Ok(None);
    };
    Ok(Some(Place {
        location,
        ttl,
        wait,
    }))
}

/// This process, for other runs' messages.
fn holder(deployment_id: &str) -> Holder {
    Holder {
        run_url: crate::actions::run_url(),
        deployment_id: deployment_id.to_string(),
        actor: crate::inputs::actor(),
        process: crate::storage::lease::this_process(),
    }
}

/// A lease this command holds, renewed in the background until [`Holding::finish`].
pub(crate) struct Holding {
    held: Held,
    file: LeaseFile,
    /// The command holding it now.
    command: String,
}

/// Takes the deployment lease for `command` (`backup`, `rollout`) when there is a place for it:
/// refused (exit 1, nothing written) while another deployment holds it; `lease.json` written
/// once taken, and the lease renewed while the command runs.
pub(crate) async fn take(
    place: Option<Place>,
    s3: &S3Options,
    settings: &Settings,
    state: &StateDir,
    command: &str,
) -> Result<Option<Holding>> {
    let Some(place) = place else {
        return Ok(None);
    };
    let storage = crate::backup::storage::open_storage(&place.location, s3).await;
    let options = lease::Options {
        environment: settings.environment.clone(),
        holder: holder(state.id()),
        command: command.to_string(),
        ttl: place.ttl,
        wait: place.wait,
    };
    let (mut held, taken) = lease::acquire(&storage, &options).await?;
    let body = held.body();
    let verb = match &taken {
        Taken::Fresh => "took".to_string(),
        Taken::Kept => "holds".to_string(),
        Taken::Expired(old) => format!("took over (from the expired {})", old.describe()),
    };
    tracing::info!(
        "deployment `{}` {verb} the deployment lease of `{}` (`{}`, expires {} after its last renewal)",
        state.id(),
        settings.environment,
        held.url(),
        crate::ui::format_duration(place.ttl)
    );
    let file = LeaseFile {
        header: Header::now::<LeaseFile>("pass"),
        environment: settings.environment.clone(),
        location: held.url(),
        token: body.token.clone(),
        holder: body.holder.clone(),
        taken_by: body.taken_by.clone(),
        taken_at: body.taken_at.clone(),
        renewed_at: body.renewed_at.clone(),
        ttl_seconds: body.ttl_seconds,
        takeover_of: body.takeover_of.clone(),
        status: LeaseStatus::Held,
        released_at: None,
        note: None,
    };
    if let Err(e) = state.save(&file) {
        // Nothing of this deployment's state says it holds the lease: give it back.
        let _ = lease::release(&storage, &settings.environment, &body.token).await;
        return Err(e);
    }
    held.start();
    Ok(Some(Holding {
        held,
        file,
        command: command.to_string(),
    }))
}

impl Holding {
    /// `lease.json` as written when the lease was taken.
    pub(crate) fn file(&self) -> &LeaseFile {
        &self.file
    }

    /// Why the lease was lost while held, once it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.held.lost()
    }

    /// Stops renewing (the lease stays until `record` releases it or it expires) and notes the
    /// last renewal, or the loss, in `lease.json`.
    pub(crate) async fn finish(self, state: &StateDir) {
        let lost = self.held.lost();
        let body = self.held.stop().await;
        let mut file = self.file;
        file.header = Header::now::<LeaseFile>(if lost.is_some() { "fail" } else { "pass" });
        file.renewed_at = body.renewed_at;
        if let Some(why) = lost {
            crate::actions::annotate(
                crate::actions::Level::Error,
                Some("deployment lease"),
                &format!(
                    "{why}: another deployment may have changed `{}` while `{}` ran; check the environment",
                    file.environment, self.command
                ),
            );
            file.status = LeaseStatus::Lost;
            file.note = Some(why);
        }
        if let Err(e) = state.save(&file) {
            tracing::warn!("cannot update `lease.json`: {e}");
        }
    }
}

/// Releases the lease this deployment holds, if `lease.json` says it does (at `record`, and at
/// the end of `pipeline`); updates `lease.json`. A lease that cannot be released is left to
/// expire, with a warning: the deployment itself is done.
pub(crate) async fn release_held(s3: &S3Options, state: &StateDir) -> Option<LeaseFile> {
    let mut file = match state.load::<LeaseFile>() {
        Ok(Some(file)) => file,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("cannot read `lease.json` to release the deployment lease: {e}");
            return None;
        }
    };
    if file.status != LeaseStatus::Held {
        return Some(file);
    }
    let released = async {
        let (location, _) = Location::split_object(&file.location)?;
        let storage = crate::backup::storage::open_storage(&location, s3).await;
        lease::release(&storage, &file.environment, &file.token).await
    }
    .await;
    match released {
        Ok(Released::Deleted) => {
            tracing::info!(
                "released the deployment lease of `{}` (`{}`)",
                file.environment,
                file.location
            );
            file.status = LeaseStatus::Released;
            file.released_at = Some(crate::util::now_rfc3339());
        }
        Ok(Released::Gone) => {
            file.status = LeaseStatus::Released;
            file.released_at = Some(crate::util::now_rfc3339());
            file.note = Some("it was gone already (expired, or broken)".into());
        }
        Ok(Released::Lost(now)) => {
            let why = format!(
                "the lease had expired and is now held by {}",
                now.describe()
            );
            tracing::warn!(
                "cannot release the deployment lease `{}`: {why}",
                file.location
            );
            file.status = LeaseStatus::Lost;
            file.note = Some(why);
        }
        Err(e) => {
            let why = format!(
                "cannot release it ({e}); it expires by itself {} after its last renewal",
                crate::ui::format_duration(Duration::from_secs(file.ttl_seconds))
            );
            tracing::warn!("deployment lease `{}`: {why}", file.location);
            file.note = Some(why);
        }
    }
    file.header = Header::now::<LeaseFile>("pass");
    if let Err(e) = state.save(&file) {
        tracing::warn!("cannot update `lease.json`: {e}");
    }
    Some(file)
}

/// Keeps renewing the lease `lease.json` says this deployment holds (`pipeline` does, so the
/// lease does not lapse during long stages that do not renew it, such as `migrate`); `None`
/// when it holds none.
pub(crate) async fn keep_held(s3: &S3Options, state: &StateDir) -> Option<Held> {
    let file = state.load::<LeaseFile>().ok().flatten()?;
    if file.status != LeaseStatus::Held {
        return None;
    }
    let resumed = async {
        let (location, _) = Location::split_object(&file.location)?;
        let storage = crate::backup::storage::open_storage(&location, s3).await;
        lease::resume(&storage, &file.environment, &file.token).await
    }
    .await;
    match resumed {
        Ok(Some(mut held)) => {
            held.start();
            Some(held)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("cannot renew the deployment lease `{}`: {e}", file.location);
            None
        }
    }
}
