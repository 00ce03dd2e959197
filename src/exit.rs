//! Exit statuses: one enum, chosen in one place per command ([`Status`]), whose table is printed
//! by `shipgate --help` and checked against `docs/conventions.md` by a test. Codes not listed
//! are reserved.
//! A panic exits with 101 (Rust's default) and is always a bug.

/// How a run ended, as the process exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Everything passed.
    Success,
    /// A gate said no: invalid tag, downgrade, failed or missing check, unhealthy canary (rolled
    /// back), failed smoke test, unverifiable backup.
    GateFailed,
    /// Usage or configuration error: a bad flag, input or config file; nothing was changed.
    Usage,
    /// A dependency (GitHub, S3, PostgreSQL, a hook) was unreachable or failed after retries.
    Dependency,
    /// A deadline passed (`--timeout`); what was still pending is reported.
    Timeout,
    /// The automatic rollback itself failed: production may be half rolled out; act now.
    RollbackFailed,
}

impl Status {
    /// Every status, in code order.
    pub(crate) const ALL: [Status; 6] = [
        Status::Success,
        Status::GateFailed,
        Status::Usage,
        Status::Dependency,
        Status::Timeout,
        Status::RollbackFailed,
    ];

    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::GateFailed => 1,
            Status::Usage => 2,
            Status::Dependency => 3,
            Status::Timeout => 4,
            Status::RollbackFailed => 5,
        }
    }

    /// The status a child shipgate process reported by its exit code (`None`: not one of ours,
    /// e.g. a panic or a signal).
    pub(crate) fn from_code(code: i32) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| i32::from(s.code()) == code)
    }

    /// One line for the table.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::GateFailed => {
                "a gate said no: invalid tag, downgrade, failed or missing check, unhealthy canary (rolled back), another deployment holds the environment's lease"
            }
            Status::Usage => "usage or configuration error; nothing was changed",
            Status::Dependency => {
                "a dependency (GitHub, S3, PostgreSQL, a hook) failed or was unreachable after retries"
            }
            Status::Timeout => "timeout: a deadline passed; what was pending is reported",
            Status::RollbackFailed => {
                "the automatic rollback itself failed: manual action required"
            }
        }
    }
}

/// The table printed at the end of `shipgate --help`.
pub(crate) fn table() -> String {
    let mut out = String::from("Exit codes:");
    for status in Status::ALL {
        out.push_str(&format!("\n  {}  {}", status.code(), status.meaning()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "Exit codes" table in `docs/conventions.md` says exactly what the enum says.
    #[test]
    fn the_conventions_table_matches_the_enum() {
        let conventions = include_str!("../docs/conventions.md");
        for status in Status::ALL {
            let row = format!("| {} | {} |", status.code(), status.meaning());
            assert!(
                conventions.contains(&row),
                "docs/conventions.md lacks the row `{row}`"
            );
        }
        assert_eq!(Status::from_code(5), Some(Status::RollbackFailed));
        assert_eq!(Status::from_code(101), None);
    }
}
