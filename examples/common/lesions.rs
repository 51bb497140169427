//! A deterministic lesion-like volume generator shared by the examples.

use ndarray::Array3;

use crate::rng::Rng;

/// `count` random axis-aligned ellipsoids of radius 1 to 8 voxels in a `size`^3 volume, as 1s.
pub fn lesions(size: usize, count: usize, seed: u64) -> Array3<u8> {
    let mut rng = Rng(seed);
    let mut volume = Array3::<u8>::zeros((size, size, size));
    for _ in 0..count {
        let center: [f64; 3] = std::array::from_fn(|_| rng.unit() * size as f64);
        let radii: [f64; 3] = std::array::from_fn(|_| 1.0 + rng.unit().powi(2) * 7.0);
        let lo = |d: usize| (center[d] - radii[d]).floor().max(0.0) as usize;
        let hi = |d: usize| ((center[d] + radii[d]).ceil() as usize + 1).min(size);
        for z in lo(0)..hi(0) {
            for y in lo(1)..hi(1) {
                for x in lo(2)..hi(2) {
                    let q: f64 =
                        [z, y, x].iter().enumerate().map(|(d, &p)| ((p as f64 - center[d]) / radii[d]).powi(2)).sum();
                    if q <= 1.0 {
                        volume[[z, y, x]] = 1;
                    }
                }
            }
        }
    }
    volume
}
