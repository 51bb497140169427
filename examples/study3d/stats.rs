//! Paired statistics over seeds: the mean difference, its confidence intervals (Student's t and
//! percentile bootstrap), the paired t-test, the Wilcoxon signed-rank test, the sign-flip
//! permutation test, Holm's adjustment of a declared family of p-values, and TOST equivalence.

use crate::band::mean;
use crate::rng::Rng;

/// A paired comparison of two losses on one figure, over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Comparison {
    /// Seeds compared (pairs where both figures are defined).
    pub pairs: usize,
    /// The mean difference (this loss minus the baseline).
    pub mean: f64,
    /// The 95% percentile-bootstrap confidence interval of the mean difference.
    pub interval: (f64, f64),
    /// The two-sided Wilcoxon signed-rank p-value.
    pub p_value: f64,
    /// The two-sided paired t-test p-value.
    pub t_p_value: f64,
    /// The 95% Student-t confidence interval of the mean difference.
    pub t_interval: (f64, f64),
    /// The two-sided sign-flip permutation p-value.
    pub permutation_p_value: f64,
}

/// Compares `values` with `baseline`, pair by pair (NaN pairs are left out).
pub fn compare(values: &[f64], baseline: &[f64], resamples: usize, seed: u64) -> Comparison {
    let differences: Vec<f64> = values.iter().zip(baseline).map(|(a, b)| a - b).filter(|d| d.is_finite()).collect();
    let (t_p_value, t_interval) = paired_t(&differences);
    Comparison {
        pairs: differences.len(),
        mean: mean(&differences),
        interval: bootstrap_interval(&differences, 0.95, resamples, seed),
        p_value: wilcoxon_signed_rank(&differences),
        t_p_value,
        t_interval,
        permutation_p_value: sign_flip_p(&differences, seed),
    }
}

/// The mean and standard error of `values` (NaN standard error below 2 values).
fn mean_and_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let m = mean(values);
    let variance = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, (variance / n).sqrt())
}

/// The two-sided p-value of the paired t-test that `differences` are centred on zero, and the
/// 95% Student-t confidence interval of their mean (`scipy.stats.ttest_1samp`). NaNs below 2
/// values; with no spread, p is 1 for a zero mean and 0 otherwise.
pub fn paired_t(differences: &[f64]) -> (f64, (f64, f64)) {
    let n = differences.len();
    if n < 2 {
        return (f64::NAN, (f64::NAN, f64::NAN));
    }
    let (m, error) = mean_and_error(differences);
    let df = (n - 1) as f64;
    if error == 0.0 {
        return (if m == 0.0 { 1.0 } else { 0.0 }, (m, m));
    }
    let q = t_quantile(0.975, df);
    (2.0 * t_survival((m / error).abs(), df), (m - q * error, m + q * error))
}

/// The p-value of the two one-sided t-tests (TOST) that the mean of `differences` lies within
/// `(-margin, margin)`: below 0.05, the two are equivalent within the margin at the 5% level.
pub fn tost(differences: &[f64], margin: f64) -> f64 {
    if differences.len() < 2 {
        return f64::NAN;
    }
    let (m, error) = mean_and_error(differences);
    let df = (differences.len() - 1) as f64;
    if error == 0.0 {
        return if m.abs() < margin { 0.0 } else { 1.0 };
    }
    let below = t_survival((m + margin) / error, df); // H0: mean <= -margin
    let above = t_survival((margin - m) / error, df); // H0: mean >= margin
    below.max(above)
}

/// The two-sided p-value of the sign-flip permutation test of the paired `differences`: the
/// share of the `2^n` sign patterns whose sum is at least as far from 0 as the observed one
/// (exact up to 24 pairs, walked in Gray-code order; beyond, 200,000 random patterns from
/// `seed`). NaN without values.
pub fn sign_flip_p(differences: &[f64], seed: u64) -> f64 {
    let n = differences.len();
    if n == 0 {
        return f64::NAN;
    }
    let observed: f64 = differences.iter().sum::<f64>().abs();
    let tolerance = 1e-12 * differences.iter().map(|d| d.abs()).sum::<f64>().max(1e-300);
    let extreme = |sum: f64| sum.abs() >= observed - tolerance;
    if n <= 24 {
        // Pattern `g` (Gray code) flips the differences whose bits are set.
        let mut sum: f64 = differences.iter().sum();
        let mut count = u64::from(extreme(sum));
        let mut flipped = vec![false; n];
        for step in 1..(1u64 << n) {
            let bit = step.trailing_zeros() as usize;
            sum += if flipped[bit] { 2.0 } else { -2.0 } * differences[bit];
            flipped[bit] = !flipped[bit];
            count += u64::from(extreme(sum));
        }
        return count as f64 / (1u64 << n) as f64;
    }
    let mut rng = Rng(seed ^ 0x51F7);
    let draws = 200_000;
    let count = (0..draws)
        .filter(|_| extreme(differences.iter().map(|&d| if rng.below(2) == 1 { -d } else { d }).sum()))
        .count();
    (count + 1) as f64 / (draws + 1) as f64
}

/// Holm's step-down adjustment of a family of p-values (each at most 1; NaNs stay NaN and are
/// not counted in the family).
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p_values.len()).filter(|&i| p_values[i].is_finite()).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let m = order.len();
    let mut adjusted = vec![f64::NAN; p_values.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// `P(T > t)` for Student's t with `df` degrees of freedom (`t >= 0`).
fn t_survival(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// The `q` quantile of Student's t (`q` above 0.5), by bisection on the survival function.
fn t_quantile(q: f64, df: f64) -> f64 {
    let (mut low, mut high) = (0.0, 1e3);
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if t_survival(mid, df) > 1.0 - q { low = mid } else { high = mid }
    }
    0.5 * (low + high)
}

/// The regularised incomplete beta function `I_x(a, b)` (Numerical Recipes' continued fraction).
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = if d.abs() < tiny { tiny } else { d };
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error near 1e-15).
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
    let t = x + 7.5;
    let series: f64 = G[0] + G[1..].iter().enumerate().map(|(i, g)| g / (x + i as f64 + 1.0)).sum::<f64>();
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// The percentile bootstrap confidence interval of the mean at `level` (e.g. 0.95), from
/// `resamples` resamples with replacement drawn from `seed`. NaNs for no values.
pub fn bootstrap_interval(values: &[f64], level: f64, resamples: usize, seed: u64) -> (f64, f64) {
    if values.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng(seed);
    let n = values.len();
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| values[rng.below(n as u64) as usize]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (quantile(&means, tail), quantile(&means, 1.0 - tail))
}

/// The `q` quantile of sorted values, linearly interpolated (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64)
}

/// The two-sided p-value of the Wilcoxon signed-rank test that paired `differences` are centred
/// on zero, as `scipy.stats.wilcoxon(differences)` (scipy 1.17) computes it: zero differences are
/// dropped (Wilcoxon's rule) and tied magnitudes get their mean rank; with at most 50 pairs the
/// p-value is exact (every sign pattern of the ranks, ties included), beyond that it comes from the
/// normal approximation with the tie correction (no continuity correction). 1 when no difference
/// is non-zero.
pub fn wilcoxon_signed_rank(differences: &[f64]) -> f64 {
    let mut magnitudes: Vec<(f64, bool)> =
        differences.iter().filter(|d| **d != 0.0).map(|&d| (d.abs(), d > 0.0)).collect();
    let n = magnitudes.len();
    if n == 0 {
        return 1.0;
    }
    magnitudes.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Twice the mean rank of every magnitude (an integer), and the sizes of the tie groups.
    let (mut doubled_ranks, mut ties) = (Vec::with_capacity(n), Vec::new());
    let mut start = 0;
    while start < n {
        let end = (start..n).find(|&i| magnitudes[i].0 != magnitudes[start].0).unwrap_or(n);
        doubled_ranks.extend(std::iter::repeat_n(start + end + 1, end - start));
        if end - start > 1 {
            ties.push((end - start) as f64);
        }
        start = end;
    }
    let doubled_total: usize = doubled_ranks.iter().sum();
    let doubled_positive: usize = doubled_ranks.iter().zip(&magnitudes).filter(|(_, m)| m.1).map(|(r, _)| r).sum();
    let statistic = doubled_positive.min(doubled_total - doubled_positive);
    if n <= 50 {
        // Exact: the number of sign patterns per (doubled) rank sum, by dynamic programming.
        let mut ways = vec![0f64; doubled_total + 1];
        ways[0] = 1.0;
        for &rank in &doubled_ranks {
            for sum in (rank..=doubled_total).rev() {
                ways[sum] += ways[sum - rank];
            }
        }
        let below: f64 = ways[..=statistic].iter().sum();
        return (2.0 * below / 2f64.powi(n as i32)).min(1.0);
    }
    let nf = n as f64;
    let variance = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - ties.iter().map(|t| t * t * t - t).sum::<f64>() / 48.0;
    let z = (statistic as f64 / 2.0 - doubled_total as f64 / 4.0) / variance.sqrt();
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::{bootstrap_interval, compare, erfc, holm, paired_t, sign_flip_p, tost, wilcoxon_signed_rank};
    use crate::band::{mean, standard_deviation};

    /// p-values printed by `scipy.stats.wilcoxon(d).pvalue` (scipy 1.17.1).
    #[test]
    fn wilcoxon_matches_scipy() {
        let ramp = |shift: i64| -> Vec<f64> { (0..60).map(|i| ((i * 37) % 23 - shift) as f64 / 10.0).collect() };
        let cases: [(Vec<f64>, f64); 8] = [
            (vec![0.021, -0.004, 0.013, 0.030, 0.008, -0.011, 0.017, 0.025, 0.002, 0.019], 0.02734375),
            ((1..=10).map(f64::from).collect(), 0.001953125),
            (vec![-1.5, 2.5, -3.5], 0.75),
            (vec![0.1, 0.2, 0.3], 0.25),
            // Ties and a zero: still exact below 51 pairs.
            (vec![0.02, 0.02, -0.01, 0.0, 0.03, 0.01, 0.02, -0.02, 0.04, 0.01], 0.09375),
            (vec![1.0; 6], 0.03125),
            // 58 and 60 non-zero pairs with ties: the normal approximation.
            (ramp(9), 0.04353205576279501),
            (ramp(7), 0.0001444164201454818),
        ];
        for (differences, expected) in cases {
            let p = wilcoxon_signed_rank(&differences);
            assert!((p - expected).abs() < 1e-6 * expected.max(1e-3), "{differences:?}: {p} vs scipy {expected}");
        }
        assert_eq!(wilcoxon_signed_rank(&[0.0, 0.0]), 1.0);
        assert_eq!(wilcoxon_signed_rank(&[]), 1.0);
    }

    #[test]
    fn erfc_is_accurate() {
        // erfc(0.5), erfc(1), erfc(2) and erfc(-1) to 15 digits.
        for (x, expected) in [
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047266),
            (-1.0, 1.8427007929497148),
        ] {
            assert!(((erfc(x) - expected) / expected).abs() < 2e-7, "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn the_bootstrap_interval_holds_the_mean_and_shrinks_like_the_standard_error() {
        assert_eq!(bootstrap_interval(&[0.25; 7], 0.95, 1000, 1), (0.25, 0.25));
        assert!(bootstrap_interval(&[], 0.95, 1000, 1).0.is_nan());
        // Many draws of a known spread: the interval is about mean +- 1.96 standard errors.
        let mut rng = crate::rng::Rng(3);
        let values: Vec<f64> = (0..400).map(|_| rng.unit()).collect();
        let (lo, hi) = bootstrap_interval(&values, 0.95, 4000, 9);
        let (m, se) = (mean(&values), standard_deviation(&values) / 20.0);
        assert!(lo < m && m < hi);
        assert!(((hi - lo) / (2.0 * 1.96 * se) - 1.0).abs() < 0.1, "width {} vs {}", hi - lo, 2.0 * 1.96 * se);
        assert_eq!(bootstrap_interval(&values, 0.95, 500, 4), bootstrap_interval(&values, 0.95, 500, 4), "seeded");
    }

    #[test]
    fn comparisons_pair_by_seed_and_skip_undefined_figures() {
        let c = compare(&[0.5, 0.6, f64::NAN, 0.9], &[0.4, 0.4, 0.4, 0.6], 2000, 1);
        assert_eq!(c.pairs, 3);
        assert!((c.mean - 0.2).abs() < 1e-12);
        assert!(c.interval.0 >= 0.1 - 1e-12 && c.interval.1 <= 0.3 + 1e-12);
        assert!((c.p_value - 0.25).abs() < 1e-12, "3 positive pairs: exact p = 2/8");
    }

    /// Reference values from scipy 1.17.1 (`ttest_1samp`, its confidence interval, `t.sf`), the
    /// exact sign-flip enumeration in numpy, and TOST by hand from `t.sf` / `t.cdf`.
    #[test]
    fn t_test_permutation_and_tost_match_scipy() {
        let d = [0.05, -0.02, 0.11, 0.03, 0.07, -0.01, 0.04, 0.09, 0.0, 0.06];
        let (p, (low, high)) = paired_t(&d);
        assert!((p - 0.012_799_041_082_730_141).abs() < 1e-10, "{p}");
        assert!((low - 0.011_314_607_296_424_285).abs() < 1e-9 && (high - 0.072_685_392_703_575_71).abs() < 1e-9);
        assert!((sign_flip_p(&d, 0) - 0.019_531_25).abs() < 1e-15);
        assert!((tost(&d, 0.05) - 0.284_927_118_684_935_2).abs() < 1e-10);
        assert!((paired_t(&[0.3, -0.1, 0.2]).0 - 0.382_786_600_151_632_35).abs() < 1e-10);
        assert!((2.0 * super::t_survival(2.5, 5.0) - 0.054_490_099_342_376_26).abs() < 1e-12);
        assert!((super::t_quantile(0.975, 23.0) - 2.068_657_610_419_048_6).abs() < 1e-9);
        assert!(paired_t(&[1.0]).0.is_nan());
        assert_eq!(paired_t(&[0.5, 0.5]).0, 0.0);
    }

    #[test]
    fn holm_adjusts_step_down_and_keeps_order() {
        let adjusted = holm(&[0.01, 0.04, 0.03, f64::NAN, 0.5]);
        // Sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 0.04, 0.09, max(0.09, 0.08) = 0.09, 0.5.
        let want = [0.04, 0.09, 0.09, f64::NAN, 0.5];
        for (a, w) in adjusted.iter().zip(want) {
            assert!((a.is_nan() && w.is_nan()) || (a - w).abs() < 1e-12, "{adjusted:?}");
        }
    }
}
