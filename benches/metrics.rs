//! Instance metrics on a 128³ volume with about 300 lesion-like instances on each side: the
//! ground truth, and a prediction shifted by one voxel with 40 extra false positives. Labelling
//! both masks is included, as in a validation loop.
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! The comparison with panoptica is `scripts/panoptica_compare.py`.

#[path = "../examples/common/lesions.rs"]
mod lesions;
#[path = "../examples/common/rng.rs"]
mod rng;

use blob_loss::metrics::{MatchScore, Matching, MetricsConfig, evaluate_masks};
use divan::Bencher;
use ndarray::{Array3, s};

fn main() {
    divan::main();
}

fn masks() -> (Array3<u8>, Array3<u8>) {
    let truth = lesions::lesions(128, 300, 7);
    let mut prediction = Array3::<u8>::zeros(truth.raw_dim());
    prediction.slice_mut(s![.., .., 1..]).assign(&truth.slice(s![.., .., ..127]));
    prediction.zip_mut_with(&lesions::lesions(128, 40, 8), |p, &e| *p |= e);
    (truth, prediction)
}

const MATCHINGS: [&str; 3] = ["any overlap", "greedy IoU 0.5", "optimal Dice 0.1"];

fn matching(name: &str) -> Matching {
    match name {
        "any overlap" => Matching::AnyOverlap,
        "greedy IoU 0.5" => Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 },
        "optimal Dice 0.1" => Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 },
        other => unreachable!("{other}"),
    }
}

/// `evaluate_masks`: both labellings, the overlap table, the matching and the figures.
#[divan::bench(args = MATCHINGS)]
fn evaluate_masks_128(bencher: Bencher, name: &str) {
    let (truth, prediction) = masks();
    let config = MetricsConfig { matching: matching(name), ..MetricsConfig::default() };
    bencher.bench(|| evaluate_masks(prediction.view(), truth.view(), &config).unwrap());
}
