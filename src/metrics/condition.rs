//! Conditions on a metric's value: `< 0.03`, `<= 1000`, `>= 0.98`, `> x`, `== x`, and a ratio
//! against a baseline query's value, `<= 2 * baseline`. A leading `value`, `result` or `canary`
//! is allowed (`canary <= 2 * baseline`).

use std::fmt;

/// How the value compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
        }
    }
}

/// What the value is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    Number(f64),
    /// `factor * baseline`: the baseline query's value times `factor`.
    Baseline(f64),
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) op: Op,
    pub(crate) bound: Bound,
}

const EXAMPLES: &str = "`< 0.03`, `>= 0.98` or `<= 2 * baseline`";

fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    // Only plain decimal numbers (`1e3` too): `inf`/`nan` are not thresholds.
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

impl std::str::FromStr for Condition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{}` is not a condition; write an operator (`<`, `<=`, `>`, `>=`, `==`) and a number or `N * baseline`, such as {EXAMPLES}",
                text.trim()
            )
        };
        let mut rest = text.trim();
        for word in ["value", "result", "canary"] {
            if let Some(after) = rest.strip_prefix(word) {
                rest = after.trim_start();
                break;
            }
        }
        let (op, rest) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|r| (*op, r.trim())))
        .ok_or_else(bad)?;
        let bound = if let Some(n) = number(rest) {
            Bound::Number(n)
        } else if rest == "baseline" {
            Bound::Baseline(1.0)
        } else if let Some((left, right)) = rest.split_once('*') {
            let (left, right) = (left.trim(), right.trim());
            let factor = match (left, right) {
                (n, "baseline") | ("baseline", n) => number(n).ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            if factor < 0.0 {
                return Err(bad());
            }
            Bound::Baseline(factor)
        } else {
            return Err(bad());
        };
        Ok(Condition { op, bound })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            Bound::Number(n) => write!(f, "{} {}", self.op.symbol(), number_text(n)),
            Bound::Baseline(1.0) => write!(f, "{} baseline", self.op.symbol()),
            Bound::Baseline(factor) => {
                write!(f, "{} {} * baseline", self.op.symbol(), number_text(factor))
            }
        }
    }
}

/// A number as people read it: at most six significant decimals, no trailing zeros.
pub(crate) fn number_text(n: f64) -> String {
    if n.is_nan() {
        return "NaN".to_string();
    }
    if n.is_infinite() {
        return if n > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if n != 0.0 && (n.abs() >= 1e9 || n.abs() < 1e-4) {
        return format!("{n:e}");
    }
    let text = format!("{n:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Condition {
    /// Whether a baseline query's value is needed.
    pub(crate) fn needs_baseline(&self) -> bool {
        matches!(self.bound, Bound::Baseline(_))
    }

    /// The number the value is compared with (`None` when the baseline is needed but missing).
    pub(crate) fn bound(&self, baseline: Option<f64>) -> Option<f64> {
        match self.bound {
            Bound::Number(n) => Some(n),
            Bound::Baseline(factor) => baseline.map(|b| factor * b),
        }
    }

    /// Whether `value` meets the condition (`None` when the baseline is needed but missing).
    pub(crate) fn holds(&self, value: f64, baseline: Option<f64>) -> Option<bool> {
        self.bound(baseline)
            .map(|bound| self.op.holds(value, bound))
    }

    /// The condition with the baseline's value filled in: `<= 2 * baseline (0.04)`.
    pub(crate) fn describe(&self, baseline: Option<f64>) -> String {
        match (self.bound, baseline) {
            (Bound::Baseline(factor), Some(b)) => format!(
                "{self} (baseline {}, bound {})",
                number_text(b),
                number_text(factor * b)
            ),
            _ => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Condition {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn thresholds_parse_and_hold() {
        let c = parse("< 0.03");
        assert_eq!(c.holds(0.02, None), Some(true));
        assert_eq!(c.holds(0.03, None), Some(false));
        assert_eq!(parse("<=1000").holds(1000.0, None), Some(true));
        assert_eq!(parse(">= 0.98").holds(0.97, None), Some(false));
        assert_eq!(parse("> 5").holds(6.0, None), Some(true));
        assert_eq!(parse("== 0").holds(0.0, None), Some(true));
        assert_eq!(parse("value < 1e3").bound(None), Some(1000.0));
        assert_eq!(parse("< 0.03").to_string(), "< 0.03");
        assert_eq!(parse(">=   0.980").to_string(), ">= 0.98");
    }

    #[test]
    fn baseline_ratios() {
        for text in ["<= 2 * baseline", "canary <= 2*baseline", "<= baseline * 2"] {
            let c = parse(text);
            assert!(c.needs_baseline(), "{text}");
            assert_eq!(c.holds(0.04, Some(0.02)), Some(true));
            assert_eq!(c.holds(0.05, Some(0.02)), Some(false));
            assert_eq!(c.holds(0.05, None), None);
            assert_eq!(c.to_string(), "<= 2 * baseline");
        }
        assert_eq!(parse("< baseline").to_string(), "< baseline");
        assert_eq!(
            parse("<= 2 * baseline").describe(Some(0.01)),
            "<= 2 * baseline (baseline 0.01, bound 0.02)"
        );
    }

    #[test]
    fn bad_syntax_names_the_value_and_shows_an_example() {
        for text in [
            "",
            "0.03",
            "less than 3",
            "< ",
            "< abc",
            "=< 1",
            "< nan",
            "< inf",
            "<= 2 * canary",
            "<= -2 * baseline",
            "~ 1",
        ] {
            let error = text.parse::<Condition>().expect_err(text);
            assert!(error.contains(&format!("`{}`", text.trim())), "{error}");
            assert!(error.contains("`< 0.03`"), "{error}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number_text(0.25), "0.25");
        assert_eq!(number_text(1000.0), "1000");
        assert_eq!(number_text(f64::NAN), "NaN");
        assert_eq!(number_text(0.000_01), "1e-5");
    }
}
