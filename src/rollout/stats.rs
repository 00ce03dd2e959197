//! The statistics behind the canary judge (`judge`), pure and dependency-free:
//!
//! - [`mann_whitney`]: the one-sided Mann-Whitney U test (is the canary stochastically
//!   *greater* — slower, more errors per step — than the baseline?), normal approximation with
//!   average ranks for ties, the tie correction of the variance and a continuity correction;
//!   with it Cliff's delta, the effect size that is a linear transform of U
//!   (`δ = 2U / (n₁n₂) − 1` = P(canary > baseline) − P(canary < baseline), from −1 to 1).
//! - [`spread`]: the same test on each sample's absolute deviations from its own median — a
//!   rank form of the Brown-Forsythe test — so a canary with the same median but a wider spread
//!   (Kayenta's blind spot, spinnaker/kayenta#780) is seen.
//! - [`fisher_greater`]: Fisher's exact test, one-sided, on error counts: exact for any counts,
//!   so 2 errors in 10 against 0 in 1000 is judged on what it is, not on a normal approximation
//!   that sparse counts break (kayenta#426).

/// Cliff's delta and the one-sided p-value of "canary > baseline", with each sample's median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shift {
    pub(crate) canary_n: usize,
    pub(crate) baseline_n: usize,
    /// Median of the canary's values (for [`spread`]: its median absolute deviation).
    pub(crate) canary_median: f64,
    pub(crate) baseline_median: f64,
    /// Cliff's delta, from −1 (canary always lower) to 1 (canary always higher).
    pub(crate) effect: f64,
    /// One-sided p-value of the canary being greater.
    pub(crate) p_value: f64,
}

/// The median of `values` (`NaN` when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A quantile by nearest rank (`q` from 0 to 1; `NaN` when empty), as the probe gates compute
/// their p95.
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The one-sided Mann-Whitney U test of `canary` being greater than `baseline`. With either
/// side empty, or every value equal, there is no evidence: `p_value` 1 and `effect` 0.
pub(crate) fn mann_whitney(canary: &[f64], baseline: &[f64]) -> Shift {
    let (n1, n2) = (canary.len(), baseline.len());
    let mut shift = Shift {
        canary_n: n1,
        baseline_n: n2,
        canary_median: median(canary),
        baseline_median: median(baseline),
        effect: 0.0,
        p_value: 1.0,
    };
    if n1 == 0 || n2 == 0 {
        return shift;
    }
    // Rank the pooled values, ties sharing their average rank.
    let mut pooled: Vec<(f64, bool)> = canary
        .iter()
        .map(|v| (*v, true))
        .chain(baseline.iter().map(|v| (*v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut canary_ranks = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let rank = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        ties += t * t * t - t;
        canary_ranks += rank * pooled[i..j].iter().filter(|(_, c)| *c).count() as f64;
        i = j;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = canary_ranks - n1f * (n1f + 1.0) / 2.0;
    shift.effect = 2.0 * u / (n1f * n2f) - 1.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if variance > 0.0 {
        let z = (u - mean - 0.5) / variance.sqrt();
        shift.p_value = upper_normal_tail(z);
    }
    shift
}

/// The Mann-Whitney test on absolute deviations from each sample's own median: is the canary's
/// spread greater? The medians reported are the median absolute deviations.
pub(crate) fn spread(canary: &[f64], baseline: &[f64]) -> Shift {
    let deviations = |values: &[f64]| {
        let m = median(values);
        values.iter().map(|v| (v - m).abs()).collect::<Vec<_>>()
    };
    mann_whitney(&deviations(canary), &deviations(baseline))
}

/// Fisher's exact test, one-sided: the probability of the canary having at least
/// `canary_errors` of all the errors seen if errors were as likely on either side.
pub(crate) fn fisher_greater(
    canary_errors: u64,
    canary_total: u64,
    baseline_errors: u64,
    baseline_total: u64,
) -> f64 {
    let errors = canary_errors + baseline_errors;
    let total = canary_total + baseline_total;
    if canary_errors == 0 || errors == 0 || total == 0 {
        return 1.0;
    }
    let denominator = ln_choose(total, errors);
    let most = errors.min(canary_total);
    let mut p = 0.0;
    for x in canary_errors..=most {
        if errors - x > baseline_total {
            continue;
        }
        p += (ln_choose(canary_total, x) + ln_choose(baseline_total, errors - x) - denominator)
            .exp();
    }
    p.clamp(0.0, 1.0)
}

/// P(Z > z) for a standard normal Z.
pub(crate) fn upper_normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    let (n, k) = (n as f64, k as f64);
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-300)
    }

    #[test]
    fn mann_whitney_matches_the_textbook_values() {
        // scipy.stats.mannwhitneyu(y, x, alternative="greater", method="asymptotic") = 0.006092
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [6.0, 7.0, 8.0, 9.0, 10.0];
        let s = mann_whitney(&y, &x);
        assert!(close(s.p_value, 0.006_092, 1e-3), "{s:?}");
        assert_eq!(s.effect, 1.0);
        assert_eq!((s.canary_median, s.baseline_median), (8.0, 3.0));
        let s = mann_whitney(&x, &y);
        assert!(
            s.p_value > 0.99,
            "the other direction is not evidence: {s:?}"
        );
        assert_eq!(s.effect, -1.0);
        // Ties: U = 31, tie-corrected variance 33.18, continuity-corrected z = 2.0601.
        let s = mann_whitney(
            &[2.0, 3.0, 3.0, 4.0, 4.0, 5.0],
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
        );
        assert!(close(s.p_value, 0.019_697, 1e-3), "{s:?}");
        // Everything equal: no evidence either way.
        let s = mann_whitney(&[1.0; 30], &[1.0; 30]);
        assert_eq!((s.p_value, s.effect), (1.0, 0.0));
        assert_eq!(mann_whitney(&[], &[1.0]).p_value, 1.0);
    }

    #[test]
    fn fisher_is_exact() {
        // 2 of 10 against 0 of 1000: C(10,2) / C(1010,2).
        assert!(close(
            fisher_greater(2, 10, 0, 1000),
            45.0 / 509_545.0,
            1e-6
        ));
        // 3 of 10 against 1 of 10: (C(10,3)·C(10,1) + C(10,4)) / C(20,4).
        assert!(close(fisher_greater(3, 10, 1, 10), 1410.0 / 4845.0, 1e-6));
        assert_eq!(fisher_greater(0, 10, 5, 10), 1.0);
        // Fewer canary errors than expected: far from significant.
        assert!(fisher_greater(1, 100, 10, 100) > 0.99);
    }

    #[test]
    fn normal_tail_and_gamma() {
        assert!(close(upper_normal_tail(1.959_964), 0.025, 1e-5));
        assert!(close(upper_normal_tail(0.0), 0.5, 1e-7));
        assert!(close(upper_normal_tail(-3.0), 0.998_650_1, 1e-6));
        assert!(close(ln_gamma(11.0), 3_628_800f64.ln(), 1e-12));
        assert!(close(ln_choose(1010, 2), 509_545f64.ln(), 1e-12));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        #[test]
        fn mann_whitney_is_antisymmetric_bounded_and_monotone(
            a in proptest::collection::vec(0.0f64..1000.0, 1..40),
            b in proptest::collection::vec(0.0f64..1000.0, 1..40),
        ) {
            let ab = mann_whitney(&a, &b);
            let ba = mann_whitney(&b, &a);
            proptest::prop_assert!((ab.effect + ba.effect).abs() < 1e-9);
            proptest::prop_assert!((-1.0..=1.0).contains(&ab.effect));
            proptest::prop_assert!((0.0..=1.0).contains(&ab.p_value));
            // A slower canary is never judged less slow.
            let slower: Vec<f64> = a.iter().map(|v| v + 10.0).collect();
            let worse = mann_whitney(&slower, &b);
            proptest::prop_assert!(worse.effect >= ab.effect - 1e-12);
            proptest::prop_assert!(worse.p_value <= ab.p_value + 1e-12);
            proptest::prop_assert!((0.0..=1.0).contains(&spread(&a, &b).p_value));
        }

        #[test]
        fn fisher_is_a_probability(
            canary_errors in 0u64..30,
            canary_ok in 0u64..60,
            baseline_errors in 0u64..30,
            baseline_ok in 0u64..300,
        ) {
            let p = fisher_greater(
                canary_errors,
                canary_errors + canary_ok,
                baseline_errors,
                baseline_errors + baseline_ok,
            );
            proptest::prop_assert!((0.0..=1.0).contains(&p));
            if canary_errors == 0 {
                proptest::prop_assert_eq!(p, 1.0);
            }
        }
    }

    #[test]
    fn medians_quantiles_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&hundred, 0.95), 95.0);
        assert_eq!(quantile(&[10.0, 20.0, 300.0], 0.95), 300.0);
        // Same median, ten times the spread.
        let narrow: Vec<f64> = (0..21).map(|i| 100.0 + f64::from(i - 10)).collect();
        let wide: Vec<f64> = (0..21).map(|i| 100.0 + 10.0 * f64::from(i - 10)).collect();
        let s = spread(&wide, &narrow);
        assert_eq!((s.canary_median, s.baseline_median), (50.0, 5.0));
        assert!(s.p_value < 0.001 && s.effect > 0.5, "{s:?}");
        assert_eq!(mann_whitney(&wide, &narrow).effect, 0.0, "same median");
    }
}
