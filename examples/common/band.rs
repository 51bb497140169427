//! Mean and spread over seeds, for the examples' tables and charts.

/// Per x: the mean and the sample standard deviation (0 for one value) of its values; x values
/// without values are left out.
pub fn mean_and_spread(points: impl IntoIterator<Item = (f64, Vec<f64>)>) -> Vec<(f64, f64, f64)> {
    points
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(x, values)| (x, mean(&values), standard_deviation(&values)))
        .collect()
}

/// The arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample standard deviation (0 for fewer than two values).
pub fn standard_deviation(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
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
