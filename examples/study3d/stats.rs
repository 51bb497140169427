//! Paired statistics over seeds: the mean difference, its bootstrap confidence interval, and the
//! Wilcoxon signed-rank test.

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
}

/// Compares `values` with `baseline`, pair by pair (NaN pairs are left out).
pub fn compare(values: &[f64], baseline: &[f64], resamples: usize, seed: u64) -> Comparison {
    let differences: Vec<f64> = values.iter().zip(baseline).map(|(a, b)| a - b).filter(|d| d.is_finite()).collect();
    Comparison {
        pairs: differences.len(),
        mean: mean(&differences),
        interval: bootstrap_interval(&differences, 0.95, resamples, seed),
        p_value: wilcoxon_signed_rank(&differences),
    }
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
    use super::{bootstrap_interval, compare, erfc, wilcoxon_signed_rank};
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
}
