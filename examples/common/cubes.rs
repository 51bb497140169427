//! Instance maps of cubes on a grid: the inputs of the loss benchmarks (`examples/loss_bench.rs`,
//! `benches/loss.rs`).

/// The corner of cube `i` of `k` on a `size`³ grid (`ceil(cbrt k)` cubes per axis).
pub fn corner(i: usize, k: usize, size: usize) -> [usize; 3] {
    let per_axis = (k as f64).cbrt().ceil() as usize;
    let step = size / per_axis;
    assert!(step >= 4, "too many instances for the volume");
    [i / (per_axis * per_axis), i / per_axis % per_axis, i % per_axis].map(|c| c * step)
}

/// `rows` instance maps of `size`³ voxels, row after row, each with `k` cubes of side 3 (ids
/// `1..=k`) on a grid.
pub fn cubes(rows: usize, size: usize, k: usize) -> Vec<i32> {
    let n = size * size * size;
    let mut ids = vec![0i32; rows * n];
    for row in 0..rows {
        for i in 0..k {
            let [z, y, x] = corner(i, k, size);
            for d in 0..27 {
                ids[row * n + ((z + d / 9) * size + y + d / 3 % 3) * size + x + d % 3] = i as i32 + 1;
            }
        }
    }
    ids
}
