//! `evaluate_instances` and `evaluate_masks` on arbitrary pairs of maps (ids up to `u32::MAX`,
//! empty maps, zero-sized axes) with every matching: no panic, and the counts add up.
#![no_main]

use arbitrary::Arbitrary;
use blob_loss::metrics::{MatchScore, Matching, MetricsConfig, evaluate_instances, evaluate_masks};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, IxDyn};

#[derive(Arbitrary, Debug)]
struct Input {
    three_d: bool,
    sides: [u8; 3],
    huge_ids: bool,
    threshold: u8,
    pred: Vec<u8>,
    gt: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let ndim = if input.three_d { 3 } else { 2 };
    let shape: Vec<usize> = input.sides[..ndim].iter().map(|&s| usize::from(s % 24)).collect();
    if shape.iter().product::<usize>() > 4096 {
        return;
    }
    let id = |v: u8| {
        let v = u32::from(v % 8);
        if v == 0 || !input.huge_ids { v } else { u32::MAX - 13 * (8 - v) }
    };
    let map = |bytes: &[u8]| {
        let mut values = bytes.iter().cycle();
        ArrayD::from_shape_fn(IxDyn(&shape), |_| values.next().map_or(0, |&v| id(v)))
    };
    let (pred, gt) = (map(&input.pred), map(&input.gt));
    let threshold = f64::from(input.threshold) / 255.0;
    for matching in [
        Matching::AnyOverlap,
        Matching::Greedy { score: MatchScore::IoU, threshold },
        Matching::Greedy { score: MatchScore::Dice, threshold },
        Matching::Optimal { score: MatchScore::IoU, threshold },
        Matching::Optimal { score: MatchScore::Dice, threshold },
    ] {
        let config = MetricsConfig { matching, ..MetricsConfig::default() };
        let m = evaluate_instances(pred.view(), gt.view(), &config).expect("valid maps and threshold");
        assert_eq!(m.true_positives + m.false_negatives, m.num_gt, "{matching:?}");
        if matching != Matching::AnyOverlap {
            assert_eq!(m.true_positives + m.false_positives, m.num_pred, "{matching:?}");
        }
        for value in [m.precision, m.recall, m.f1, m.pq, m.dice] {
            assert!(value.is_nan() || (0.0..=1.0 + 1e-12).contains(&value), "{value} for {matching:?}");
        }
        let masks =
            evaluate_masks(pred.mapv(|v| v % 3).view(), gt.mapv(|v| v % 3).view(), &config).expect("2D or 3D masks");
        assert_eq!(masks.true_positives + masks.false_negatives, masks.num_gt);
    }
});
