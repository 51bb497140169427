//! Mean and spread over seeds, for the examples' charts.

/// Per x: the mean and the sample standard deviation (0 for one value) of its values; x values
/// without values are left out.
pub fn mean_and_spread(points: impl IntoIterator<Item = (f64, Vec<f64>)>) -> Vec<(f64, f64, f64)> {
    points
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(x, values)| {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (x, mean, variance.sqrt())
        })
        .collect()
}

/// The outline of the band mean +- spread, clipped to `[0, 1]`: along the top, back along the
/// bottom.
pub fn band(stats: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    stats
        .iter()
        .map(|&(x, m, s)| (x, (m + s).min(1.0)))
        .chain(stats.iter().rev().map(|&(x, m, s)| (x, (m - s).max(0.0))))
        .collect()
}
