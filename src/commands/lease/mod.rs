//! `shipgate lease show|take|release|break`: the deployment lease of an environment for
//! operators (see [`crate::lease`]); [`hold`]: how the other commands take and release it.

pub(crate) mod hold;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::backup::{StoreArgs, destination, open_storage, s3_options};
use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::lease;
use crate::settings::Settings;
use crate::state::StateDir;
use crate::storage::Storage;
use crate::util::HumanDuration;
use hold::{Holding, LeaseArgs, Place};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to do; in the action (`command: lease`), from the input `lease-action`
    #[command(subcommand)]
    pub(crate) action: Option<Action>,
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

#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) lease: LeaseArgs,
}

#[derive(Debug, Default, clap::Args)]
pub(crate) struct TakeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Keep the lease renewed for this long before exiting (input `hold`) [default: 0s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) hold: Option<HumanDuration>,
}

#[derive(Debug, Default, clap::Args)]
pub(crate) struct BreakArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Why the lease is broken; logged with who broke it (input `reason`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
}

/// Releases the lease deployment `state` holds, if it holds one (`record`, and `pipeline` at its
/// end), reaching S3 with the `s3-*` inputs and the `backup:` settings.
pub(crate) async fn release_in(
    settings: &Settings,
    state: &StateDir,
) -> Option<crate::state::lease::LeaseFile> {
    match s3_options(&StoreArgs::default(), settings) {
        Ok(s3) => hold::release_held(&s3, state).await,
        Err(e) => {
            tracing::warn!("cannot release the deployment lease: {e}");
            None
        }
    }
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let from_input;
    let action = match &args.action {
        Some(action) => action,
        None => {
            let raw = crate::settings::input("lease-action").ok_or_else(|| {
                Error::usage(
                    "`shipgate lease` needs what to do: `show`, `take`, `release` or `break` (input `lease-action`)",
                )
            })?;
            from_input = match raw.trim() {
                "show" => Action::Show(CommonArgs::default()),
                "take" => Action::Take(TakeArgs::default()),
                "release" => Action::Release(CommonArgs::default()),
                "break" => Action::Break(BreakArgs::default()),
                other => {
                    return Err(Error::usage(format!(
                        "input `lease-action` has the value {}; use `show`, `take`, `release` or `break`",
                        actions::quote(other)
                    )));
                }
            };
            &from_input
        }
    };
    match action {
        Action::Show(common) => show(common, settings).await,
        Action::Take(take_args) => take_command(take_args, settings).await,
        Action::Release(common) => release_command(common, settings).await,
        Action::Break(break_args) => break_command(break_args, settings).await,
    }
}

/// The place, required: these commands are about the lease.
fn required_place(common: &CommonArgs, settings: &Settings) -> Result<Place> {
    hold::place(
        &common.lease,
        destination(&common.store, settings)?,
        settings,
    )?
    .ok_or_else(|| {
        Error::usage(
            "no lease destination: pass `--lease-destination` or `--destination` (`s3://bucket/prefix` or `file:///dir`; inputs `lease-destination`, `destination`), and do not set `lease: false`",
        )
    })
}

async fn open(place: &Place, common: &CommonArgs, settings: &Settings) -> Result<Storage> {
    open_storage(place.location(), &common.store, settings).await
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
    let hold = settings.duration("hold", args.hold, None, Duration::ZERO)?;
    let state = StateDir::open(settings)?;
    let s3 = s3_options(&args.common.store, settings)?;
    let holding = hold::take(Some(place), &s3, settings, &state, "lease")
        .await?
        .ok_or_else(|| Error::usage("no lease destination"))?;
    if !hold.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = lost(&holding) => {}
        }
    }
    let lost = holding.lost();
    let file = holding.file().clone();
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
    let s3 = s3_options(&common.store, settings)?;
    let file = hold::release_held(&s3, &state).await.ok_or_else(|| {
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
    let what = match &broken {
        Some(lease::Broken::Lease(c)) => {
            Some(format!("held by {}", crate::text::one_line(&c.describe())))
        }
        Some(lease::Broken::Unreadable(why)) => Some(format!(
            "which was not a readable lease ({})",
            crate::text::one_line(why)
        )),
        None => None,
    };
    match &what {
        Some(what) => actions::annotate(
            actions::Level::Warning,
            Some("deployment lease"),
            &format!(
                "`{actor}` broke the lease of `{}` ({url}), {what}: {}",
                settings.environment,
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
        match &what {
            Some(what) => format!("It was {what}."),
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
        "broken": match &broken {
            Some(lease::Broken::Lease(c)) => json!({
                "holder": c.body.holder,
                "taken_at": c.body.taken_at,
                "renewed_at": c.body.renewed_at,
                "expired": c.expired(),
            }),
            Some(lease::Broken::Unreadable(why)) => json!({ "unreadable": why }),
            None => Value::Null,
        },
    })))
}
