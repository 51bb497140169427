//! `metrics`: hand-made cases for every rule, invariants on random cases, bad input.

mod common;

use blob_loss::Error;
use blob_loss::metrics::{
    CaseMetrics, EmptyCase, MatchScore, Matching, MetricsConfig, OverlapTable, Summary, evaluate_instances,
    evaluate_masks, evaluate_probabilities,
};
use common::Rng;
use ndarray::{Array1, Array2, Array3, s};

const GREEDY_IOU_05: Matching = Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 };

fn config(matching: Matching) -> MetricsConfig {
    MetricsConfig { matching, ..MetricsConfig::default() }
}

fn counts(m: &CaseMetrics) -> (usize, usize, usize) {
    (m.true_positives, m.false_positives, m.false_negatives)
}

#[test]
fn one_big_and_several_tiny_instances() {
    // A 10x10 lesion found exactly, three 1-voxel lesions: one found, two missed; one false blob.
    let mut gt = Array2::<u8>::zeros((30, 30));
    gt.slice_mut(s![2..12, 2..12]).fill(1);
    for p in [[20, 20], [25, 5], [5, 25]] {
        gt[p] = 1;
    }
    let mut pred = Array2::<u8>::zeros((30, 30));
    pred.slice_mut(s![2..12, 2..12]).fill(1);
    pred[[20, 20]] = 1;
    pred[[28, 28]] = 1;
    for matching in [Matching::AnyOverlap, GREEDY_IOU_05, Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 }]
    {
        let m = evaluate_masks(pred.view(), gt.view(), &config(matching)).unwrap();
        assert_eq!(counts(&m), (2, 1, 2), "{matching:?}");
        assert_eq!((m.num_pred, m.num_gt), (3, 4));
        assert_eq!(m.precision, 2.0 / 3.0);
        assert_eq!(m.recall, 0.5);
        assert_eq!(m.f1, 2.0 / (2.0 + 1.5));
        assert_eq!(m.sq_iou, 1.0);
        assert_eq!(m.pq, m.f1);
        assert_eq!(m.dice, 2.0 * 101.0 / (102.0 + 103.0));
        let sizes: Vec<u64> = m.instances.iter().map(|i| i.size).collect();
        assert_eq!(sizes, vec![100, 1, 1, 1]);
        let matched: Vec<bool> = m.instances.iter().map(|i| i.matched.is_some()).collect();
        assert_eq!(matched, vec![true, false, true, false]); // ids by first voxel: (2,2), (5,25), (20,20), (25,5)
        assert_eq!(m.instances[0].dice, 1.0);
        // Lesion-wise Dice: 1 + 0 + 1 + 0 over 4 lesions and 1 false positive.
        assert_eq!(m.lesion_wise_dice, 2.0 / 5.0);
    }
}

#[test]
fn lesion_wise_dice_takes_the_union_of_touching_predictions() {
    // Ground truth 1 (voxels 0..6) touched by two predictions (0..3 and 4..8), ground truth 2
    // (voxels 10..12) missed, prediction 3 (voxel 14) a false positive.
    let gt = Array1::from_iter((0..16).map(|v| match v {
        0..6 => 1u32,
        10..12 => 2,
        _ => 0,
    }));
    let pred = Array1::from_iter((0..16).map(|v| match v {
        0..=2 => 1u32,
        4..=7 => 2,
        14 => 3,
        _ => 0,
    }));
    for matching in [Matching::AnyOverlap, GREEDY_IOU_05] {
        let m = evaluate_instances(pred.view(), gt.view(), &config(matching)).unwrap();
        // Lesion 1: intersection 3 + 2 = 5, sizes 6 + (3 + 4) = 13.
        assert_eq!(m.lesion_wise_dice, (2.0 * 5.0 / 13.0 + 0.0) / 3.0, "{matching:?}");
    }
    let empty = Array1::<u32>::zeros(4);
    let m = evaluate_instances(empty.view(), empty.view(), &MetricsConfig::default()).unwrap();
    assert!(m.lesion_wise_dice.is_nan());
    let one = MetricsConfig { empty: EmptyCase::One, ..MetricsConfig::default() };
    assert_eq!(evaluate_instances(empty.view(), empty.view(), &one).unwrap().lesion_wise_dice, 1.0);
}

#[test]
fn split_prediction() {
    // One ground truth of 10 voxels, predicted as two pieces of 6 and 4.
    let gt = Array1::from_vec(vec![1u32; 10]);
    let pred = Array1::from_iter((0..10).map(|i| if i < 6 { 1u32 } else { 2 }));
    let any = evaluate_instances(pred.view(), gt.view(), &config(Matching::AnyOverlap)).unwrap();
    assert_eq!(counts(&any), (1, 0, 0)); // both pieces touch it: no false positive
    assert_eq!(any.instances[0].matched, Some(1)); // the piece of best IoU
    let greedy = evaluate_instances(pred.view(), gt.view(), &config(GREEDY_IOU_05)).unwrap();
    assert_eq!(counts(&greedy), (1, 1, 0)); // IoU 0.6 matches, the 0.4 piece is a false positive
    assert_eq!(greedy.sq_iou, 0.6);
    let strict = Matching::Greedy { score: MatchScore::IoU, threshold: 0.7 };
    assert_eq!(counts(&evaluate_instances(pred.view(), gt.view(), &config(strict)).unwrap()), (0, 2, 1));
}

#[test]
fn merged_prediction() {
    // Two ground truths of 4 voxels (touching ids 1 and 2), one prediction covering both.
    let gt = Array1::from_iter((0..8).map(|i| if i < 4 { 1u32 } else { 2 }));
    let pred = Array1::from_vec(vec![7u32; 8]);
    let any = evaluate_instances(pred.view(), gt.view(), &config(Matching::AnyOverlap)).unwrap();
    assert_eq!(counts(&any), (2, 0, 0)); // many-to-one: both detected
    let greedy = evaluate_instances(pred.view(), gt.view(), &config(GREEDY_IOU_05)).unwrap();
    assert_eq!(counts(&greedy), (1, 0, 1)); // IoU 0.5 each: the lower id is taken
    assert_eq!(greedy.instances[0].matched, Some(7));
    let dice01 = Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 };
    assert_eq!(counts(&evaluate_instances(pred.view(), gt.view(), &config(dice01)).unwrap()), (1, 0, 1));
}

#[test]
fn touching_ground_truth_masks_merge_but_instance_maps_do_not() {
    let gt_map = Array2::from_shape_fn((1, 6), |(_, x)| if x < 3 { 1u32 } else { 2 });
    let pred_map = gt_map.clone();
    let m = evaluate_instances(pred_map.view(), gt_map.view(), &config(GREEDY_IOU_05)).unwrap();
    assert_eq!(counts(&m), (2, 0, 0));
    // As masks, the two touching regions are one component.
    let mask = gt_map.mapv(|v| u8::from(v > 0));
    let m = evaluate_masks(mask.view(), mask.view(), &config(GREEDY_IOU_05)).unwrap();
    assert_eq!(counts(&m), (1, 0, 0));
}

#[test]
fn optimal_finds_more_matches_than_greedy() {
    // pred 1 (20 voxels) overlaps gt 1 (12) by 10 and gt 2 (10) by 8; pred 2 (10) overlaps gt 1 by 2.
    let table = OverlapTable {
        pred_sizes: vec![(1, 20), (2, 10)],
        gt_sizes: vec![(1, 12), (2, 10)],
        pairs: vec![(1, 1, 10), (1, 2, 8), (2, 1, 2)],
        intersection_voxels: 20,
    };
    let greedy =
        CaseMetrics::from_table(&table, &config(Matching::Greedy { score: MatchScore::IoU, threshold: 0.1 })).unwrap();
    assert_eq!(counts(&greedy), (1, 1, 1));
    let optimal =
        CaseMetrics::from_table(&table, &config(Matching::Optimal { score: MatchScore::IoU, threshold: 0.1 })).unwrap();
    assert_eq!(counts(&optimal), (2, 0, 0));
    assert_eq!(optimal.instances[0].matched, Some(2));
    assert_eq!(optimal.instances[1].matched, Some(1));
    // With equal counts, the larger total score wins.
    let table = OverlapTable {
        pred_sizes: vec![(1, 10)],
        gt_sizes: vec![(1, 10), (2, 10)],
        pairs: vec![(1, 1, 4), (1, 2, 6)],
        intersection_voxels: 10,
    };
    let optimal =
        CaseMetrics::from_table(&table, &config(Matching::Optimal { score: MatchScore::Dice, threshold: 0.0 }))
            .unwrap();
    assert_eq!(optimal.instances[1].matched, Some(1));
}

#[test]
fn empty_cases() {
    let empty = Array2::<u32>::zeros((4, 4));
    let mut some = Array2::<u32>::zeros((4, 4));
    some[[1, 1]] = 1;
    some[[3, 3]] = 2;
    for matching in [Matching::AnyOverlap, GREEDY_IOU_05] {
        // Empty prediction: everything missed.
        let m = evaluate_instances(empty.view(), some.view(), &config(matching)).unwrap();
        assert_eq!(counts(&m), (0, 0, 2));
        assert!(m.precision.is_nan());
        assert_eq!((m.recall, m.f1, m.sq_iou, m.pq, m.dice), (0.0, 0.0, 0.0, 0.0, 0.0));
        // Empty ground truth: everything false.
        let m = evaluate_instances(some.view(), empty.view(), &config(matching)).unwrap();
        assert_eq!(counts(&m), (0, 2, 0));
        assert!(m.recall.is_nan());
        assert_eq!((m.precision, m.f1, m.pq, m.dice), (0.0, 0.0, 0.0, 0.0));
        // Both empty: NaN by default, 1.0 on request.
        let m = evaluate_instances(empty.view(), empty.view(), &config(matching)).unwrap();
        assert!([m.precision, m.recall, m.f1, m.sq_iou, m.pq, m.dice].iter().all(|v| v.is_nan()));
        let one = MetricsConfig { matching, empty: EmptyCase::One, ..MetricsConfig::default() };
        let m = evaluate_instances(empty.view(), empty.view(), &one).unwrap();
        assert_eq!([m.precision, m.recall, m.f1, m.sq_iou, m.pq, m.dice], [1.0; 6]);
    }
}

#[test]
fn probabilities_are_thresholded_then_labelled() {
    let gt = Array3::from_shape_fn((3, 4, 4), |(z, y, x)| u32::from(z == 1 && y == 1 && x < 2));
    let p = Array3::from_shape_fn((3, 4, 4), |(z, y, x)| if z == 1 && y == 1 && x < 2 { 0.8f32 } else { 0.3 });
    let m = evaluate_probabilities(p.view(), 0.5, gt.view(), &MetricsConfig::default()).unwrap();
    assert_eq!(counts(&m), (1, 0, 0));
    let m = evaluate_probabilities(p.view(), 0.2, gt.view(), &MetricsConfig::default()).unwrap();
    assert_eq!(m.num_pred, 1); // everything above 0.2: one big component
    assert!(m.sq_iou < 0.1);
}

/// Invariants on random instance maps, for every matching.
#[test]
fn random_cases_keep_the_invariants() {
    let mut rng = Rng(9);
    for _ in 0..40 {
        let gt = common::random_mask(&mut rng, &[12, 13], 0.4, 1);
        let pred = common::random_mask(&mut rng, &[12, 13], 0.4, 1);
        let mut found = Vec::new();
        for matching in [
            Matching::AnyOverlap,
            Matching::Greedy { score: MatchScore::IoU, threshold: 0.3 },
            Matching::Optimal { score: MatchScore::IoU, threshold: 0.3 },
            Matching::Greedy { score: MatchScore::Dice, threshold: 0.0 },
            Matching::Optimal { score: MatchScore::Dice, threshold: 0.0 },
        ] {
            let m = evaluate_masks(pred.view(), gt.view(), &config(matching)).unwrap();
            assert_eq!(m.true_positives + m.false_negatives, m.num_gt);
            if matching != Matching::AnyOverlap {
                assert_eq!(m.true_positives + m.false_positives, m.num_pred, "{matching:?}");
                let mut preds: Vec<u32> = m.instances.iter().filter_map(|i| i.matched).collect();
                preds.sort();
                preds.dedup();
                assert_eq!(preds.len(), m.true_positives, "one-to-one");
            }
            for v in [m.precision, m.recall, m.f1, m.sq_iou, m.pq, m.dice] {
                assert!(v.is_nan() || (0.0..=1.0).contains(&v));
            }
            found.push(m.true_positives);
        }
        assert!(found[2] >= found[1] && found[4] >= found[3], "optimal finds at least what greedy finds");
        assert!(found[0] >= found[4], "any overlap detects at least every overlapping match");
    }
}

#[test]
fn summary_means_and_pools() {
    let cfg = MetricsConfig::default();
    let a = evaluate_instances(
        ndarray::array![[1u32, 0, 2, 0, 3]].view(),
        ndarray::array![[1u32, 0, 2, 0, 3]].view(),
        &cfg,
    )
    .unwrap();
    let b = evaluate_instances(
        ndarray::array![[0u32, 0, 0, 0, 4]].view(),
        ndarray::array![[1u32, 0, 0, 0, 0]].view(),
        &cfg,
    )
    .unwrap();
    let empty = evaluate_instances(ndarray::array![[0u32]].view(), ndarray::array![[0u32]].view(), &cfg).unwrap();
    let s = Summary::new(&[a, b, empty]);
    assert_eq!(s.cases, 3);
    assert_eq!((s.true_positives, s.false_positives, s.false_negatives), (3, 1, 1));
    assert_eq!(s.mean_recall, 0.5); // NaN case left out
    assert_eq!(s.pooled_recall, 0.75);
    assert_eq!(s.pooled_precision, 0.75);
    assert_eq!(s.mean_f1, 0.5);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let a = Array2::<u32>::zeros((3, 3));
    let b = Array2::<u32>::zeros((3, 4));
    assert!(matches!(
        evaluate_instances(a.view(), b.view(), &MetricsConfig::default()),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(evaluate_masks(a.view(), b.view(), &MetricsConfig::default()), Err(Error::ShapeMismatch { .. })));
    for threshold in [-0.1, 1.1, f64::NAN] {
        let bad = config(Matching::Optimal { score: MatchScore::IoU, threshold });
        let err = evaluate_instances(a.view(), a.view(), &bad).unwrap_err();
        assert!(err.to_string().contains("outside [0, 1]"), "{err}");
    }
    let p = Array2::<f32>::from_elem((3, 3), f32::NAN);
    let err = evaluate_probabilities(p.view(), 0.5, a.view(), &MetricsConfig::default()).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    let p = Array2::<f32>::zeros((3, 3));
    assert!(evaluate_probabilities(p.view(), -1.0, a.view(), &MetricsConfig::default()).is_err());
    // A 1D mask cannot be labelled.
    let m1 = Array1::<u8>::zeros(4);
    assert!(matches!(
        evaluate_masks(m1.view(), m1.view(), &MetricsConfig::default()),
        Err(Error::UnsupportedRank { .. })
    ));
}

/// Ids up to `u32::MAX` with few distinct values: the same table and metrics as the same maps
/// numbered 1..=K (the ids renumbered, never a table sized by the ids' values).
#[test]
fn huge_sparse_ids_equal_compact_ids() {
    let mut rng = Rng(5);
    let shape = (40, 50);
    let draw = |rng: &mut Rng, k: u64| Array2::from_shape_simple_fn(shape, || rng.below(k + 1) as u32);
    let (pred, gt) = (draw(&mut rng, 6), draw(&mut rng, 4));
    // Increasing renamings into the top of the u32 range, and one that keeps 1..=K.
    let huge = |v: u32| if v == 0 { 0 } else { u32::MAX - 10 * (7 - v) };
    let (pred_huge, gt_huge) = (pred.mapv(huge), gt.mapv(huge));
    let small = OverlapTable::new(pred.view(), gt.view()).unwrap();
    let large = OverlapTable::new(pred_huge.view(), gt_huge.view()).unwrap();
    let rename = |pairs: &[(u32, u64)]| pairs.iter().map(|&(id, n)| (huge(id), n)).collect::<Vec<_>>();
    assert_eq!(large.pred_sizes, rename(&small.pred_sizes));
    assert_eq!(large.gt_sizes, rename(&small.gt_sizes));
    assert_eq!(large.pairs, small.pairs.iter().map(|&(p, g, n)| (huge(p), huge(g), n)).collect::<Vec<_>>());
    assert_eq!(large.intersection_voxels, small.intersection_voxels);
    for matching in [
        Matching::AnyOverlap,
        Matching::Greedy { score: MatchScore::IoU, threshold: 0.1 },
        Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 },
    ] {
        let config = config(matching);
        let (a, b) = (
            evaluate_instances(pred.view(), gt.view(), &config).unwrap(),
            evaluate_instances(pred_huge.view(), gt_huge.view(), &config).unwrap(),
        );
        assert_eq!(
            (a.true_positives, a.false_positives, a.false_negatives),
            (b.true_positives, b.false_positives, b.false_negatives)
        );
        assert_eq!(a.f1, b.f1);
        assert_eq!(a.pq, b.pq);
    }
}
