//! Instance metrics on a 256^3 volume with about 800 instances on each side, against labelling
//! both volumes alone.
//!
//! ```text
//! cargo run --release --example metrics_bench [-- --runs N --threads 1,2]
//! ```
//!
//! The ground truth draws 900 lesion-like ellipsoids; the prediction is the same volume shifted
//! by one voxel along x, with 100 more ellipsoids of another seed. For each rayon pool size it
//! prints the minimum over `--runs` runs of labelling both volumes (`label` twice) and of
//! `evaluate_masks` (both labellings included) for each matching, and their ratio.

#[path = "common/lesions.rs"]
mod lesions;
#[path = "common/rng.rs"]
mod rng;
#[path = "common/timing.rs"]
mod timing;

use blob_loss::components::{Connectivity, label};
use blob_loss::metrics::{MatchScore, Matching, MetricsConfig, evaluate_masks};
use lesions::lesions;
use ndarray::s;
use timing::{arg, min_time as tmin};

fn main() {
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let threads: Vec<usize> = arg("--threads", "1,2").split(',').map(|t| t.parse().unwrap()).collect();
    let gt = lesions(256, 900, 7);
    let mut pred = ndarray::Array3::<u8>::zeros(gt.raw_dim());
    pred.slice_mut(s![.., .., 1..]).assign(&gt.slice(s![.., .., ..255]));
    let extra = lesions(256, 100, 8);
    pred.zip_mut_with(&extra, |p, &e| *p |= e);
    let c = Connectivity::TwentySix;
    let n_gt = label(gt.view(), c).unwrap().count;
    let n_pred = label(pred.view(), c).unwrap().count;
    println!("256^3, 26-connectivity: {n_gt} ground-truth and {n_pred} predicted instances");
    println!("| threads | label both ms | matching | metrics ms (labelling included) | metrics / label both | F1 |");
    println!("|---|---|---|---|---|---|");
    for t in threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        pool.install(|| {
            let t_label = tmin(runs, || {
                std::hint::black_box((label(gt.view(), c).unwrap(), label(pred.view(), c).unwrap()));
            });
            for (name, matching) in [
                ("any overlap", Matching::AnyOverlap),
                ("greedy IoU 0.5", Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 }),
                ("optimal Dice 0.1", Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 }),
            ] {
                let config = MetricsConfig { matching, ..MetricsConfig::default() };
                let mut f1 = 0.0;
                let t_metrics = tmin(runs, || f1 = evaluate_masks(pred.view(), gt.view(), &config).unwrap().f1);
                println!(
                    "| {t} | {:.1} | {name} | {:.1} | {:.2} | {f1:.3} |",
                    t_label * 1e3,
                    t_metrics * 1e3,
                    t_metrics / t_label
                );
            }
        });
    }
}
