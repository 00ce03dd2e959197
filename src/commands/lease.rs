//! `shipgate lease show|take|release|break`: the deployment lease of an environment (see
//! [`crate::lease`]), and the helpers through which `backup` and `rollout` take it and
//! `record` and `pipeline` release it.

use std::time::{Duration, Instant};

use serde_json::json;

use super::backup::{StoreArgs, destination, open_storage};
use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::lease::{self, Held, Released, Taken};
use crate::settings::Settings;
use crate::state::lease::{Holder, LeaseFile, LeaseStatus};
use crate::state::{Header, StateDir};
use crate::storage::{Location, Storage};

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
    pub(crate) lease_ttl: Option<String>,
    /// How long to wait for another deployment's lease before refusing (input `lease-wait`)
    /// [default: 0s, refuse at once]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lease_wait: Option<String>,
    /// `false`: take no deployment lease (input `lease`) [default: true]
    #[arg(long, value_name = "BOOL")]
    pub(crate) lease: Option<bool>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// Show who holds the environment's deployment lease
    Show(CommonArgs),
    /// Take the lease for this deployment, as `backup` and `rollout` do (`--hold`: keep
    /// renewing it for a while, around a step that is not shipgate's)
    Take(TakeArgs),
    /// Release this deployment's lease, as `record` does
    Release(CommonArgs),
    /// Delete the environment's lease whoever holds it (a dead holder), saying why
    Break(BreakArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) lease: LeaseArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TakeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Keep the lease renewed for this long before exiting (input `hold`) [default: 0s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) hold: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BreakArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Why the lease is broken; logged with who broke it (input `reason`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
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

/// The lease's place and timing: `lease-destination` > the backup destination; `None` (said
/// once) when the lease is turned off or there is no destination.
pub(crate) fn place(
    args: &LeaseArgs,
    store: &StoreArgs,
    settings: &Settings,
) -> Result<Option<Place>> {
    let file = file_config(settings);
    let enabled = settings
        .value("lease", args.lease, file.enabled)?
        .unwrap_or(true);
    let ttl = settings.duration(
        "lease-ttl",
        args.lease_ttl.clone(),
        file.ttl.as_ref(),
        DEFAULT_TTL,
    )?;
    if ttl < Duration::from_secs(1) {
        return Err(Error::usage(format!(
            "`lease-ttl` `{}` is too short; use at least 1s (S3 times have a resolution of one second)",
            crate::util::format_duration(ttl)
        )));
    }
    let wait = settings.duration(
        "lease-wait",
        args.lease_wait.clone(),
        file.wait.as_ref(),
        Duration::ZERO,
    )?;
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
        None => destination(store, settings)?,
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    Holder {
        run_url: crate::record::model::log_url(),
        deployment_id: deployment_id.to_string(),
        actor: crate::inputs::actor(),
        process: format!("process {} on `{host}`", std::process::id()),
    }
}

/// A lease this command holds, renewed in the background until [`Holding::finish`].
pub(crate) struct Holding {
    held: Held,
    file: LeaseFile,
}

/// Takes the deployment lease for `command` (`backup`, `rollout`) when there is a place for it:
/// refused (exit 1, nothing written) while another deployment holds it; `lease.json` written
/// once taken, and the lease renewed while the command runs.
pub(crate) async fn take(
    place: Option<Place>,
    store: &StoreArgs,
    settings: &Settings,
    state: &StateDir,
    command: &str,
) -> Result<Option<Holding>> {
    let Some(place) = place else {
        return Ok(None);
    };
    let storage = open_storage(&place.location, store, settings).await?;
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
        crate::util::format_duration(place.ttl)
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
    Ok(Some(Holding { held, file }))
}

impl Holding {
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
pub(crate) async fn release_held(
    store: &StoreArgs,
    settings: &Settings,
    state: &StateDir,
) -> Option<LeaseFile> {
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
        let storage = open_storage(&location, store, settings).await?;
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
                crate::util::format_duration(Duration::from_secs(file.ttl_seconds))
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

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    match &args.action {
        Action::Show(common) => show(common, settings).await,
        Action::Take(take_args) => take_command(take_args, settings).await,
        Action::Release(common) => release_command(common, settings).await,
        Action::Break(break_args) => break_command(break_args, settings).await,
    }
}

/// The place, required: these commands are about the lease.
fn required_place(common: &CommonArgs, settings: &Settings) -> Result<Place> {
    place(&common.lease, &common.store, settings)?.ok_or_else(|| {
        Error::usage(
            "no lease destination: pass `--lease-destination` or `--destination` (`s3://bucket/prefix` or `file:///dir`; inputs `lease-destination`, `destination`), and do not set `lease: false`",
        )
    })
}

async fn open(place: &Place, common: &CommonArgs, settings: &Settings) -> Result<Storage> {
    open_storage(&place.location, &common.store, settings).await
}

async fn show(common: &CommonArgs, settings: &Settings) -> Result<Outcome> {
    let place = required_place(common, settings)?;
    let storage = open(&place, common, settings).await?;
    let name = lease::key(&settings.environment);
    let current = lease::read(&storage, &settings.environment).await?;
    let (state, holder) = match &current {
        None => {
            tracing::info!("nobody holds the lease of `{}`", settings.environment);
            ("free", String::new())
        }
        Some(c) => {
            tracing::info!(
                "the lease of `{}`: {}",
                settings.environment,
                crate::text::one_line(&c.describe())
            );
            (
                if c.expired() { "expired" } else { "held" },
                c.body.holder.describe(),
            )
        }
    };
    set_outputs(&[
        ("result", "pass".to_string()),
        ("lease-state", state.to_string()),
        ("lease-holder", holder.clone()),
    ])?;
    let mut summary = format!("### Deployment lease of `{}`\n\n", settings.environment);
    match &current {
        None => summary.push_str("Nobody holds it.\n"),
        Some(c) => summary.push_str(&format!(
            "{} ({state}).\n",
            crate::text::one_line(&c.describe())
        )),
    }
    actions::append_summary(&summary)?;
    Ok(Outcome::success(json!({
        "schema_version": 1,
        "command": "lease-show",
        "result": "pass",
        "environment": settings.environment,
        "location": storage.url(&name),
        "state": state,
        "lease": current.as_ref().map(|c| json!({
            "holder": c.body.holder,
            "taken_by": c.body.taken_by,
            "taken_at": c.body.taken_at,
            "renewed_at": c.body.renewed_at,
            "expires_at": c.body.expires_at,
            "ttl_seconds": c.body.ttl_seconds,
            "seconds_left": c.left,
            "takeover_of": c.body.takeover_of,
        })),
    })))
}

async fn take_command(args: &TakeArgs, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let place = required_place(&args.common, settings)?;
    let hold = settings.duration("hold", args.hold.clone(), None, Duration::ZERO)?;
    let state = StateDir::open(settings)?;
    let holding = take(Some(place), &args.common.store, settings, &state, "lease")
        .await?
        .ok_or_else(|| Error::usage("no lease destination"))?;
    if !hold.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = lost(&holding) => {}
        }
    }
    let lost = holding.lost();
    let file = holding.file.clone();
    holding.finish(&state).await;
    if let Some(why) = lost {
        return Err(Error::gate(why));
    }
    set_outputs(&[
        ("result", "pass".to_string()),
        ("lease-holder", file.holder.describe()),
    ])?;
    let mut json = serde_json::to_value(&file).unwrap_or_else(|_| json!({}));
    json["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    Ok(Outcome::success(json))
}

/// Resolves once the lease was lost.
async fn lost(holding: &Holding) {
    loop {
        if holding.lost().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn release_command(common: &CommonArgs, settings: &Settings) -> Result<Outcome> {
    // The lease's place comes from `lease.json`; only how to reach S3 from the options.
    let state = StateDir::existing(settings)?;
    let file = release_held(&common.store, settings, &state)
        .await
        .ok_or_else(|| {
            Error::usage(format!(
                "deployment `{}` took no deployment lease (no `lease.json` in `{}`)",
                state.id(),
                state.dir().display()
            ))
        })?;
    set_outputs(&[("result", "pass".to_string())])?;
    Ok(Outcome::success(
        serde_json::to_value(&file).unwrap_or_else(|_| json!({})),
    ))
}

async fn break_command(args: &BreakArgs, settings: &Settings) -> Result<Outcome> {
    let reason = settings
        .text("reason", args.reason.clone(), None)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::usage(
                "`lease break` needs `--reason \"…\"` (input `reason`): it is logged with who broke the lease",
            )
        })?;
    let place = required_place(&args.common, settings)?;
    let storage = open(&place, &args.common, settings).await?;
    let actor = crate::inputs::actor();
    let broken = lease::force_break(&storage, &settings.environment).await?;
    let url = storage.url(&lease::key(&settings.environment));
    match &broken {
        Some(c) => actions::annotate(
            actions::Level::Warning,
            Some("deployment lease"),
            &format!(
                "`{actor}` broke the lease of `{}` ({}), held by {}: {}",
                settings.environment,
                url,
                crate::text::one_line(&c.describe()),
                crate::text::one_line(&reason)
            ),
        ),
        None => tracing::info!(
            "nobody holds the lease of `{}` (`{url}`): nothing to break",
            settings.environment
        ),
    }
    set_outputs(&[
        ("result", "pass".to_string()),
        ("lease-state", "free".to_string()),
    ])?;
    actions::append_summary(&format!(
        "### Deployment lease of `{}` broken\n\nBy `{actor}`: {}\n\n{}\n",
        settings.environment,
        crate::text::one_line(&reason),
        match &broken {
            Some(c) => format!("It was held by {}.", crate::text::one_line(&c.describe())),
            None => "Nobody held it.".to_string(),
        }
    ))?;
    Ok(Outcome::success(json!({
        "schema_version": 1,
        "command": "lease-break",
        "result": "pass",
        "environment": settings.environment,
        "location": url,
        "broken_by": actor,
        "reason": crate::text::one_line(&reason),
        "broken": broken.as_ref().map(|c| json!({
            "holder": c.body.holder,
            "taken_at": c.body.taken_at,
            "renewed_at": c.body.renewed_at,
            "expired": c.expired(),
        })),
    })))
}
