//! `drill`'s domain, the recurring restore drill (seed 001 D6, seed 002 "weekly restore drill"):
//! `run` (which backup, a scratch database, fetch + restore timed as the RTO, the backup's age
//! as the RPO, dropping the scratch database whatever happens), `checks` (the parity checks
//! after the restore and their verdicts) and `report` (the Markdown report and summary). Values
//! come in as parameters (`run::Options`): nothing here reads `settings` or a clap struct.

pub(crate) mod checks;
pub(crate) mod report;
pub(crate) mod run;
