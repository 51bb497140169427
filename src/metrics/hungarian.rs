//! Minimum-cost assignment (Kuhn-Munkres with potentials), for optimal one-to-one matching.

/// Assigns every row of the `n x m` cost matrix (`n <= m`, row-major) to a distinct column at
/// minimum total cost; returns the column of every row. O(n^2 m).
pub(crate) fn assign(cost: &[f64], n: usize, m: usize) -> Vec<usize> {
    debug_assert!(n <= m && cost.len() == n * m);
    // 1-based potentials and matching, as in the classic formulation; column 0 is virtual.
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_v = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let c = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                    if c < min_v[j] {
                        min_v[j] = c;
                        way[j] = j0;
                    }
                    if min_v[j] < delta {
                        delta = min_v[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_v[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of = vec![0usize; n];
    for j in 1..=m {
        if row_of[j] != 0 {
            col_of[row_of[j] - 1] = j - 1;
        }
    }
    col_of
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against brute force over all permutations on small random matrices.
    #[test]
    fn finds_the_minimum_cost() {
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for n in 1..=5 {
            for m in n..=6 {
                let cost: Vec<f64> = (0..n * m).map(|_| (next() * 10.0).floor()).collect();
                let got = assign(&cost, n, m);
                let total = |cols: &[usize]| cols.iter().enumerate().map(|(i, &j)| cost[i * m + j]).sum::<f64>();
                let mut best = f64::INFINITY;
                let mut cols: Vec<usize> = Vec::new();
                fn search(
                    i: usize,
                    n: usize,
                    m: usize,
                    cols: &mut Vec<usize>,
                    best: &mut f64,
                    total: &dyn Fn(&[usize]) -> f64,
                ) {
                    if i == n {
                        *best = best.min(total(cols));
                        return;
                    }
                    for j in 0..m {
                        if !cols.contains(&j) {
                            cols.push(j);
                            search(i + 1, n, m, cols, best, total);
                            cols.pop();
                        }
                    }
                }
                search(0, n, m, &mut cols, &mut best, &total);
                let mut distinct = got.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), n);
                assert_eq!(total(&got), best, "{n}x{m}");
            }
        }
    }
}
