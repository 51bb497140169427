//! The CC family against the figures of the published code.
//!
//! The cases are those of `scripts/cc_parity.py` (built the same way, value by value); the
//! expected figures were printed by TIO-IKIM/BiCC-Loss at 80c52b11 (`VectorizedBiCCLoss`,
//! `VectorizedCCLoss`, scipy path) and ossner/Learning-to-Look-Closer at 2b12225d (`CCMetrics`
//! with `_component_dice_ce_loss`, CUDA asserts lifted, scipy Voronoi), PyTorch 2.15 on the CPU,
//! `f32`. The parity script reruns that code; these keep the figures in CI without it. Built with
//! `--features wgpu`, the same suite runs on wgpu (CI: lavapipe).

use blob_loss::Error;
use blob_loss::loss::{BiccLossConfig, BiccTargets, CellTerms, EmptyCellLoss, Engine, prediction_cells};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The backend under test: flex, or wgpu when built with `--features wgpu`.
fn device() -> Device {
    #[cfg(feature = "wgpu")]
    return Device::wgpu(Default::default());
    #[cfg(not(feature = "wgpu"))]
    return Device::flex();
}

/// Logits `[B, 2, spatial..]` (channel 0 the base, channel 1 base + margin) and a mask.
struct Case {
    shape: Vec<usize>,
    logits: Vec<f32>,
    mask: Vec<i32>,
}

fn background_margin(i: usize, j: usize, level: f64) -> f64 {
    level + 0.1 * (((i + 2 * j) % 7) as f64 - 3.0)
}

/// One 16x16 element of the 2D cases: `[l0 | l1]` and the mask.
fn element_2d(margin: impl Fn(usize, usize) -> f64, truth: impl Fn(usize, usize) -> bool) -> (Vec<f32>, Vec<i32>) {
    let (mut l0, mut l1, mut mask) = (vec![], vec![], vec![]);
    for i in 0..16 {
        for j in 0..16 {
            let base = (0.25 * ((3 * i + 5 * j) % 4) as f64 - 0.25) as f32;
            l0.push(base);
            l1.push(base + margin(i, j) as f32);
            mask.push(i32::from(truth(i, j)));
        }
    }
    l0.extend(l1);
    (l0, mask)
}

fn batch_2d(elements: Vec<(Vec<f32>, Vec<i32>)>) -> Case {
    let shape = vec![elements.len(), 2, 16, 16];
    let (logits, mask) = elements.into_iter().fold((vec![], vec![]), |(mut l, mut m), (el, em)| {
        l.extend(el);
        m.extend(em);
        (l, m)
    });
    Case { shape, logits, mask }
}

fn truth_0(i: usize, j: usize) -> bool {
    ((2..=4).contains(&i) && (2..=4).contains(&j)) || ((3..=4).contains(&i) && (11..=13).contains(&j))
}

/// Element 0: two lesions (one voxel of the first missed, half of the second), a far false
/// positive, a voxel of margin exactly 0. Element 1: no ground truth, a false positive and a
/// diagonal pair.
fn main_case() -> Case {
    let margin_0 = |i: usize, j: usize| match (i, j) {
        (4, 4) => -1.0,
        _ if (2..=4).contains(&i) && (2..=4).contains(&j) => 2.0,
        (3, 11..=13) => 0.5,
        (4, 11..=13) => -0.5,
        (12..=13, 12..=14) => 1.5,
        (14, 12) => 0.0,
        _ => background_margin(i, j, -3.0),
    };
    let margin_1 = |i: usize, j: usize| match (i, j) {
        (6..=8, 6..=7) => 1.0,
        (1, 13) | (2, 14) => 0.2,
        _ => background_margin(i, j, -2.5),
    };
    batch_2d(vec![element_2d(margin_0, truth_0), element_2d(margin_1, |_, _| false)])
}

fn nothing_predicted() -> Case {
    let margin = |i: usize, j: usize| background_margin(i, j, -4.0);
    batch_2d(vec![element_2d(margin, truth_0), element_2d(margin, |_, _| false)])
}

/// `[1, 2, 4, 6, 6]`: a lesion of two blobs touching at a corner, a voxel apart, a prediction
/// shifted by one voxel and a false positive.
fn case_3d() -> Case {
    let (d, h, w) = (4, 6, 6);
    let (mut l0, mut l1, mut mask) = (vec![], vec![], vec![]);
    for a in 0..d {
        for b in 0..h {
            for c in 0..w {
                let base = (0.125 * ((a + 2 * b + 3 * c) % 5) as f64 - 0.25) as f32;
                let margin: f32 = if a < 2 && b < 2 && (1..3).contains(&c) {
                    1.25
                } else if a == 0 && (4..6).contains(&b) && c == 0 {
                    0.75
                } else {
                    -2.0
                };
                l0.push(base);
                l1.push(base + margin);
                let truth = (a < 2 && b < 2 && c < 2) || (a, b, c) == (2, 2, 2) || (a, b, c) == (3, 5, 5);
                mask.push(i32::from(truth));
            }
        }
    }
    l0.extend(l1);
    Case { shape: vec![1, 2, d, h, w], logits: l0, mask }
}

/// `[1, 2, 4, 4]`: confidently wrong voxels (margin 20, beyond CC-DiceCE's clamp at 1e-7).
fn clamp_case() -> Case {
    let mut margin = vec![-20.0f32; 16];
    margin[2 * 4 + 2] = 3.0;
    margin[3] = 20.0;
    let mut mask = vec![0; 16];
    mask[4 + 1] = 1;
    mask[2 * 4 + 2] = 1;
    let mut logits = vec![0.0f32; 16];
    logits.extend(margin);
    Case { shape: vec![1, 2, 4, 4], logits, mask }
}

fn value<const D: usize>(config: &BiccLossConfig, case: &Case) -> f64 {
    let device = device();
    let logits = Tensor::<D>::from_data(TensorData::new(case.logits.clone(), case.shape.clone()), &device);
    let mut mask_shape = case.shape.clone();
    mask_shape[1] = 1;
    let mask = Tensor::<D, Int>::from_data(TensorData::new(case.mask.clone(), mask_shape), &device);
    config.init().forward(logits, mask).into_scalar::<f64>()
}

/// The configurations of the table: BiCC's default, its branches, its SmoothedDice ablation,
/// and CC-DiceCE.
fn configurations() -> [(&'static str, BiccLossConfig); 5] {
    [
        ("BiCC", BiccLossConfig::new()),
        ("CC (alpha 0)", BiccLossConfig::cc_loss()),
        ("prediction branch (alpha 1)", BiccLossConfig::new().with_alpha(1.0)),
        (
            "SmoothedDice",
            BiccLossConfig::new().with_empty_cell_loss(EmptyCellLoss::Dice).with_prediction_dice_smooth(Some(1e-5)),
        ),
        ("CC-DiceCE", BiccLossConfig::cc_dice_ce()),
    ]
}

fn check<const D: usize>(
    case: &Case,
    expected: [Option<f64>; 5],
    configure: impl Fn(BiccLossConfig) -> BiccLossConfig,
) {
    for ((name, config), expected) in configurations().into_iter().zip(expected) {
        let Some(expected) = expected else { continue };
        let got = value::<D>(&configure(config), case);
        assert!((got - expected).abs() <= 1e-5 * expected.abs(), "{name}: {got} vs published {expected}");
    }
}

#[test]
fn main_case_equals_the_published_figures() {
    check::<4>(
        &main_case(),
        [Some(0.650547504), Some(0.872930408), Some(0.428164661), Some(0.892660797), Some(0.872930408)],
        |c| c,
    );
    // The generic engine (burn's scatter) gives the same figure.
    let scatter = value::<4>(&BiccLossConfig::new().with_engine(Engine::Scatter), &main_case());
    assert!((scatter - 0.650547504).abs() < 1e-5 * 0.65, "scatter engine: {scatter}");
    let dice = value::<4>(&BiccLossConfig::new().with_terms(CellTerms::Dice), &main_case());
    assert!((dice - 0.536429942).abs() < 1e-5 * 0.54, "mode dice: {dice}");
    let ce = value::<4>(&BiccLossConfig::new().with_terms(CellTerms::CrossEntropy), &main_case());
    assert!((ce - 0.114117563).abs() < 1e-5 * 0.11, "mode ce: {ce}");
}

#[test]
fn nothing_predicted_falls_back_to_the_whole_volume() {
    check::<4>(
        &nothing_predicted(),
        [Some(1.122289062), Some(1.122326493), Some(1.122251630), Some(1.122288465), Some(1.122326493)],
        |c| c,
    );
}

#[test]
fn case_3d_equals_the_published_figures() {
    check::<5>(
        &case_3d(),
        [Some(0.906200051), Some(1.085995913), Some(0.726404130), Some(1.093435287), Some(1.085995913)],
        |c| c,
    );
    // Anisotropic spacing (2, 1, 1) for a patch (8, 6, 6): this half-resolution output takes (4, 1, 1).
    check::<5>(&case_3d(), [Some(0.970530152), Some(1.089521646), Some(0.851538718), Some(1.119495869), None], |c| {
        c.with_spacing(Some(vec![2.0, 1.0, 1.0])).with_patch_size(Some(vec![8, 6, 6]))
    });
}

#[test]
fn clamps_follow_each_paper() {
    check::<4>(
        &clamp_case(),
        [Some(3.516883850), Some(3.021034718), Some(4.012732983), Some(3.516880989), Some(2.535796642)],
        |c| c,
    );
}

#[test]
fn one_channel_is_the_margin_against_zero() {
    let case = main_case();
    let voxels = 256;
    // [l0 | l1] per element -> l1 - l0.
    let margins: Vec<f32> = case
        .logits
        .chunks(2 * voxels)
        .flat_map(|element| {
            element[voxels..].iter().zip(&element[..voxels]).map(|(l1, l0)| l1 - l0).collect::<Vec<_>>()
        })
        .collect();
    let one = Case { shape: vec![2, 1, 16, 16], logits: margins, mask: case.mask.clone() };
    let (a, b) = (value::<4>(&BiccLossConfig::new(), &case), value::<4>(&BiccLossConfig::new(), &one));
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

#[test]
fn gradients_flow_to_both_logits() {
    let device = device().autodiff();
    let case = main_case();
    let logits =
        Tensor::<4>::from_data(TensorData::new(case.logits.clone(), case.shape.clone()), &device).require_grad();
    let mask = Tensor::<4, Int>::from_data(TensorData::new(case.mask.clone(), vec![2, 1, 16, 16]), &device);
    let grads = BiccLossConfig::new().init().forward(logits.clone(), mask).backward();
    let g: Vec<f32> = logits.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    // The published gradient: per voxel, the two channels' entries sum to 0; sum |g| = 0.4465.
    let total: f64 = g.iter().map(|v| f64::from(v.abs())).sum();
    assert!((total - 0.446516037).abs() < 1e-5, "sum |g| = {total}");
    for element in g.chunks(512) {
        for (a, b) in element[..256].iter().zip(&element[256..]) {
            assert!((a + b).abs() < 1e-7);
        }
    }
}

#[test]
fn given_cells_are_used() {
    let device = device();
    let case = main_case();
    let logits = Tensor::<4>::from_data(TensorData::new(case.logits.clone(), case.shape.clone()), &device);
    let mask = Tensor::<4, Int>::from_data(TensorData::new(case.mask.clone(), vec![2, 1, 16, 16]), &device);
    let loss = BiccLossConfig::new().init();
    let own: f64 = loss.forward(logits.clone(), mask.clone()).into_scalar();
    let cells = prediction_cells(logits.clone(), 0.5, &[1.0, 1.0]).unwrap();
    let given: f64 =
        loss.forward(logits.clone(), BiccTargets::new(mask.clone()).with_prediction_cells(cells)).into_scalar();
    assert_eq!(own, given);
    // One cell over everything changes the prediction branch.
    let one = Tensor::<4, Int>::ones([2, 1, 16, 16], &device);
    let other: f64 = loss.forward(logits, BiccTargets::new(mask).with_prediction_cells(one)).into_scalar();
    assert!((other - own).abs() > 1e-3);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let device = device();
    let loss = BiccLossConfig::new().init();
    let mask = Tensor::<4, Int>::zeros([1, 1, 4, 4], &device);
    let three = loss.try_forward(Tensor::<4>::zeros([1, 3, 4, 4], &device), mask.clone()).unwrap_err();
    assert!(three.to_string().contains("2 channels"), "{three}");
    let shape = loss.try_forward(Tensor::<4>::zeros([1, 2, 4, 5], &device), mask.clone()).unwrap_err();
    assert!(matches!(shape, Error::ShapeMismatch { what: "mask", .. }), "{shape}");
    let negative = Tensor::<4, Int>::from_ints([[[[0, -1, 0, 0]]]], &device);
    let err = loss.try_forward(Tensor::<4>::zeros([1, 2, 1, 4], &device), negative).unwrap_err();
    assert_eq!(err, Error::NegativeInstanceId { value: -1 });
    let rank = loss.try_forward(Tensor::<3>::zeros([1, 2, 4], &device), Tensor::<3, Int>::zeros([1, 1, 4], &device));
    assert!(matches!(rank.unwrap_err(), Error::UnsupportedRank { .. }));
    let spacing = BiccLossConfig::new().with_spacing(Some(vec![1.0; 3])).init();
    let err = spacing.try_forward(Tensor::<4>::zeros([1, 2, 4, 4], &device), mask.clone()).unwrap_err();
    assert!(err.to_string().contains("spacing has 3 values for 2 spatial axes"), "{err}");
    // NaN logits: an error where reading the value costs nothing (flex).
    #[cfg(not(feature = "wgpu"))]
    {
        let nan = loss.try_forward(Tensor::<4>::full([1, 2, 4, 4], f32::NAN, &device), mask).unwrap_err();
        assert!(matches!(nan, Error::NonFiniteLoss { .. }), "{nan}");
    }
    #[cfg(feature = "wgpu")]
    drop(mask);
    for (config, field) in [
        (BiccLossConfig::new().with_alpha(1.5), "alpha"),
        (BiccLossConfig::new().with_dice_smooth(-1.0), "dice_smooth"),
        (BiccLossConfig::new().with_threshold(1.0), "threshold"),
        (BiccLossConfig::new().with_dice_floor(0.0), "dice_floor"),
        (BiccLossConfig::new().with_probability_floor(Some(0.0)), "probability_floor"),
        (BiccLossConfig::new().with_patch_size(Some(vec![8, 8])), "patch_size"),
        (BiccLossConfig::new().with_spacing(Some(vec![0.0, 1.0])), "spacing"),
    ] {
        let err = config.try_init().unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[test]
fn sparse_cell_ids_are_renumbered_and_too_many_cells_are_an_error() {
    let device = device();
    let logits = Tensor::<4>::zeros([1, 2, 1, 4], &device);
    let mask = Tensor::<4, Int>::from_ints([[[[1, 0, 0, 1]]]], &device);
    let loss = BiccLossConfig::cc_loss().init();
    let dense: f64 = loss
        .forward(
            logits.clone(),
            BiccTargets::new(mask.clone()).with_cells(Tensor::from_ints([[[[1, 1, 2, 2]]]], &device)),
        )
        .into_scalar();
    // The same partition with ids far above the voxel count (fuzzing found them exhausting memory).
    let sparse = Tensor::<4, Int>::from_ints([[[[14_417_723, 14_417_723, 9, 9]]]], &device);
    let value: f64 = loss.forward(logits.clone(), BiccTargets::new(mask.clone()).with_cells(sparse)).into_scalar();
    assert!((dense - value).abs() < 1e-6, "{dense} vs {value}");
    let small = BiccLossConfig::cc_loss().with_max_bins(5).init();
    let err =
        small.try_forward(logits, BiccTargets::new(mask).with_cells(Tensor::from_ints([[[[1, 1, 2, 2]]]], &device)));
    assert!(matches!(err.unwrap_err(), Error::TooManyInstances { bins: 6, .. }));
}
