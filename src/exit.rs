//! Exit codes: one table, documented in the README and in `shipgate --help`. Values not listed
//! are reserved. A panic exits with 101 (Rust's default) and is always a bug.

/// Everything passed.
pub(crate) const SUCCESS: u8 = 0;
/// A gate said no: invalid tag, downgrade, failed or missing check, unhealthy canary (rolled
/// back), failed smoke test, unverifiable backup.
pub(crate) const GATE_FAILED: u8 = 1;
/// Usage or configuration error: a bad flag, input or config file; nothing was changed.
pub(crate) const USAGE: u8 = 2;
/// A dependency (GitHub, S3, PostgreSQL, a hook) was unreachable or failed after retries.
pub(crate) const DEPENDENCY: u8 = 3;
/// A deadline passed (`--timeout`); what was still pending is reported.
pub(crate) const TIMEOUT: u8 = 4;
/// The automatic rollback itself failed: production may be half rolled out; act now.
pub(crate) const ROLLBACK_FAILED: u8 = 5;

/// The table as printed at the end of `shipgate --help`.
pub(crate) const TABLE: &str = "\
Exit codes:
  0  success
  1  a gate said no (invalid tag, downgrade, failed check, unhealthy canary rolled back, ...)
  2  usage or configuration error (nothing was changed)
  3  a dependency (GitHub, S3, PostgreSQL, a hook) failed or was unreachable after retries
  4  timeout: a deadline passed; what was pending is reported
  5  the automatic rollback itself failed: manual action required";
