//! Blob loss, forward and backward, on burn's flex backend (CPU): `[2, 1, 64³]` logits with K
//! instances (cubes of 27 voxels) per element, K = 1, 10, 100, 1000; the blob loss and, as the
//! baseline, the same loss with `blob_weight = 0` (the global soft Dice alone, same engine).
//!
//! The loss family (`family_losses`): at K = 100, on a prediction that finds every cube shifted
//! by one voxel and adds K false-positive cubes, the blob loss and the CC loss (Voronoi cells),
//! each with Dice and with Dice + BCE, and the CC losses with the false-positive term; the cells
//! and the components are given, and their own cost is timed apart (`voronoi_cells`,
//! `false_positive_components_of_a_prediction`). On the same inputs, BiCC as published
//! (`bicc`: alpha 0.5, Dice + cross-entropy per cell, the ground truth's cells given, the
//! prediction labelled and its cells built in every call; `prediction_cells` times that part;
//! `bicc_cells_given`, its branches with both partitions given). `sums_pass`: the sums op alone,
//! forward, over one bin map and over two (BiCC's two partitions in one pass).
//!
//! ```text
//! cargo bench --bench loss
//! ```
//!
//! Each sample makes the input tensors, runs the forward and the backward pass and reads the
//! gradient back. The comparison with PyTorch and with burn's plain Dice is
//! `scripts/bench_loss.sh`; GPU backends, `examples/loss_bench.rs --backend wgpu|cuda`.

use blob_loss::components::voronoi_batch;
use blob_loss::loss::{
    Activation, BaseLossConfig, BiccLossConfig, BiccTargets, BlobLoss, BlobLossConfig, LossTargets, Partition,
    false_positive_components, prediction_cells,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use divan::Bencher;

#[path = "../examples/common/cubes.rs"]
mod cubes;
use ndarray::Array5;

fn main() {
    divan::main();
}

const SIZE: usize = 64;
const BATCH: usize = 2;

/// The logits (a fixed pseudo-random pattern in [-4, 4)) and K cubes of side 3 on a grid.
fn inputs(k: usize) -> (Vec<f32>, Vec<i32>) {
    let n = SIZE * SIZE * SIZE;
    let logits = (0..BATCH * n).map(|i| ((i * 2_654_435_761) % 1000) as f32 / 125.0 - 4.0).collect();
    (logits, cubes::cubes(BATCH, SIZE, k))
}

fn forward_backward(bencher: Bencher, loss: &BlobLoss, k: usize) {
    let device = Device::flex().autodiff();
    let (logits, ids) = inputs(k);
    let dims = vec![BATCH, 1, SIZE, SIZE, SIZE];
    bencher
        .counter(divan::counter::ItemsCount::new(logits.len()))
        .with_inputs(|| {
            let x = Tensor::<5>::from_data(TensorData::new(logits.clone(), dims.clone()), &device).require_grad();
            let y = Tensor::<5, Int>::from_data(TensorData::new(ids.clone(), dims.clone()), &device);
            (x, y)
        })
        .bench_local_values(|(x, y)| {
            let grads = loss.forward(x.clone(), y).backward();
            x.grad(&grads).expect("x requires its gradient").into_data()
        });
}

/// The default blob loss: global soft Dice x 2 + blob soft Dice.
#[divan::bench(args = [1, 10, 100, 1000])]
fn blob_loss(bencher: Bencher, k: usize) {
    forward_backward(bencher, &BlobLossConfig::new().init(), k);
}

/// The baseline: the global soft Dice alone, on the same engine.
#[divan::bench(args = [1, 10, 100, 1000])]
fn dice_only(bencher: Bencher, k: usize) {
    forward_backward(bencher, &BlobLossConfig::new().with_blob_weight(0.0).init(), k);
}

/// The inputs of the loss family at `k` cubes per element: logits below 0 except on every cube
/// shifted by one voxel and on `k` false-positive cubes half a grid step away; the instance map,
/// its Voronoi cells and the prediction's false-positive components.
struct Family {
    logits: Vec<f32>,
    ids: Vec<i32>,
    cells: Vec<i32>,
    false_positives: Vec<i32>,
}

fn family(k: usize) -> Family {
    let (pattern, ids) = inputs(k);
    let n = SIZE * SIZE * SIZE;
    let step = SIZE / (k as f64).cbrt().ceil() as usize;
    let mut logits: Vec<f32> = pattern.iter().map(|v| v * 0.5 - 3.0).collect();
    for row in 0..BATCH {
        for i in 0..k {
            let corner = cubes::corner(i, k, SIZE);
            for (shift, offset) in [(1, 0), (step / 2, 1)] {
                for d in 0..27 {
                    let at = [corner[0] + d / 9, corner[1] + d / 3 % 3, corner[2] + d % 3].map(|c| (c + shift) % SIZE);
                    let v = row * n + (at[0] * SIZE + at[1]) * SIZE + at[2];
                    logits[v] = 2.0 + offset as f32;
                }
            }
        }
    }
    let dims = (BATCH, 1, SIZE, SIZE, SIZE);
    let labels = Array5::from_shape_vec(dims, ids.iter().map(|&i| i as u32).collect()).expect("the batch's shape");
    let cells = voronoi_batch(labels.view(), &[1.0; 3]).expect("isotropic cells").iter().map(|&c| c as i32).collect();
    let false_positives = false_positive_components(
        Tensor::<5>::from_data(TensorData::new(logits.clone(), dims_vec()), &Device::flex()),
        Tensor::<5, Int>::from_data(TensorData::new(ids.clone(), dims_vec()), &Device::flex()),
        Activation::Sigmoid,
        0.5,
    )
    .expect("valid inputs")
    .into_data()
    .convert::<i32>()
    .try_to_vec()
    .expect("i32");
    Family { logits, ids, cells, false_positives }
}

fn dims_vec() -> Vec<usize> {
    vec![BATCH, 1, SIZE, SIZE, SIZE]
}

/// Forward and backward of one member of the family, with the cells and components given.
fn family_forward_backward(bencher: Bencher, config: BlobLossConfig) {
    let device = Device::flex().autodiff();
    let inputs = family(100);
    let loss = config.init();
    let int = |values: &[i32]| Tensor::<5, Int>::from_data(TensorData::new(values.to_vec(), dims_vec()), &device);
    bencher
        .counter(divan::counter::ItemsCount::new(inputs.logits.len()))
        .with_inputs(|| {
            let x = Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &device).require_grad();
            let mut targets = LossTargets::new(int(&inputs.ids));
            if loss.config.partition == Partition::Voronoi {
                targets = targets.with_cells(int(&inputs.cells));
            }
            if loss.config.false_positive_weight > 0.0 {
                targets = targets.with_false_positives(int(&inputs.false_positives));
            }
            (x, targets)
        })
        .bench_local_values(|(x, targets)| {
            let grads = loss.forward(x.clone(), targets).backward();
            x.grad(&grads).expect("x requires its gradient").into_data()
        });
}

/// The loss family at K = 100, each beside the blob loss with the same base loss: blob loss
/// (Dice; Dice + BCE), CC loss (Voronoi cells; Dice; Dice + BCE), each CC loss with the
/// false-positive term.
#[divan::bench(args = ["blob", "blob_bce", "cc_dice", "cc", "cc_dice_false_positives", "cc_false_positives"])]
fn family_losses(bencher: Bencher, member: &str) {
    let bce = BaseLossConfig::new().with_bce_weight(1.0);
    let cc = BlobLossConfig::new().with_partition(Partition::Voronoi);
    let config = match member {
        "blob" => BlobLossConfig::new(),
        "blob_bce" => BlobLossConfig::new().with_blob_loss(bce),
        "cc_dice" => cc,
        "cc" => cc.with_blob_loss(bce),
        "cc_dice_false_positives" => cc.with_false_positive_weight(0.5),
        _ => cc.with_blob_loss(bce).with_false_positive_weight(0.5),
    };
    family_forward_backward(bencher, config);
}

/// BiCC as published (alpha 0.5, Dice + cross-entropy) at K = 100 on the family's inputs: the
/// ground truth's cells given (the batcher makes them with the instance maps), the prediction's
/// components and cells found in every call.
#[divan::bench]
fn bicc(bencher: Bencher) {
    let device = Device::flex().autodiff();
    let inputs = family(100);
    let loss = BiccLossConfig::new().init();
    let int = |values: &[i32]| Tensor::<5, Int>::from_data(TensorData::new(values.to_vec(), dims_vec()), &device);
    bencher
        .counter(divan::counter::ItemsCount::new(inputs.logits.len()))
        .with_inputs(|| {
            let x = Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &device).require_grad();
            (x, BiccTargets::new(int(&inputs.ids).clamp_max(1)).with_cells(int(&inputs.cells)))
        })
        .bench_local_values(|(x, targets)| {
            let grads = loss.forward(x.clone(), targets).backward();
            x.grad(&grads).expect("x requires its gradient").into_data()
        });
}

/// BiCC's branches with their cells given (no labelling or Voronoi in the call): the
/// ground-truth branch alone (`cc_loss`), the prediction branch alone (alpha 1), both (alpha 0.5).
#[divan::bench(args = ["ground_truth", "prediction", "both"])]
fn bicc_cells_given(bencher: Bencher, branches: &str) {
    let device = Device::flex().autodiff();
    let inputs = family(100);
    let alpha = match branches {
        "ground_truth" => 0.0,
        "prediction" => 1.0,
        _ => 0.5,
    };
    let loss = BiccLossConfig::new().with_alpha(alpha).init();
    let x = Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &Device::flex());
    let predicted: Vec<i32> = prediction_cells(x, 0.5, &[1.0; 3])
        .expect("valid inputs")
        .into_data()
        .convert::<i32>()
        .try_to_vec()
        .expect("i32");
    let int = |values: &[i32]| Tensor::<5, Int>::from_data(TensorData::new(values.to_vec(), dims_vec()), &device);
    bencher
        .counter(divan::counter::ItemsCount::new(inputs.logits.len()))
        .with_inputs(|| {
            let x = Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &device).require_grad();
            let targets = BiccTargets::new(int(&inputs.ids).clamp_max(1))
                .with_cells(int(&inputs.cells))
                .with_prediction_cells(int(&predicted));
            (x, targets)
        })
        .bench_local_values(|(x, targets)| {
            let grads = loss.forward(x.clone(), targets).backward();
            x.grad(&grads).expect("x requires its gradient").into_data()
        });
}

/// The prediction's cells of `bicc` alone: threshold, labelling (26-connectivity), Voronoi.
#[divan::bench]
fn bicc_prediction_cells(bencher: Bencher) {
    let inputs = family(100);
    let device = Device::flex();
    bencher
        .with_inputs(|| Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &device))
        .bench_local_values(|x| prediction_cells(x, 0.5, &[1.0; 3]).expect("valid inputs"));
}

/// The Voronoi cells of the K = 100 instance maps (`voronoi_batch`, in the batcher).
#[divan::bench]
fn voronoi_cells(bencher: Bencher) {
    let (_, ids) = inputs(100);
    let labels = Array5::from_shape_vec((BATCH, 1, SIZE, SIZE, SIZE), ids.iter().map(|&i| i as u32).collect())
        .expect("the batch's shape");
    bencher.bench_local(|| voronoi_batch(labels.view(), &[1.0; 3]).expect("isotropic cells"));
}

/// The false-positive components of the family's prediction (host labelling, on flex).
#[divan::bench]
fn false_positive_components_of_a_prediction(bencher: Bencher) {
    let inputs = family(100);
    let device = Device::flex();
    bencher
        .with_inputs(|| {
            (
                Tensor::<5>::from_data(TensorData::new(inputs.logits.clone(), dims_vec()), &device),
                Tensor::<5, Int>::from_data(TensorData::new(inputs.ids.clone(), dims_vec()), &device),
            )
        })
        .bench_local_values(|(x, y)| false_positive_components(x, y, Activation::Sigmoid, 0.5).expect("valid inputs"));
}

/// The sums pass alone (forward, no autodiff) on the family's logits, with the statistics of
/// Dice + cross-entropy and the squares: one map (the blob loss's instance ids) or two (BiCC's
/// branches: the ground truth's cells and another partition into cells of the same layout).
#[divan::bench(args = ["one_map", "two_maps"])]
fn sums_pass(bencher: Bencher, maps: &str) {
    use blob_loss::loss::sums::{InstanceSumsSpec, SumInput, instance_sums};
    let inputs = family(100);
    let device = Device::flex();
    let n = SIZE * SIZE * SIZE;
    // Cells in the layout of BiCC's bins: instance k's voxels in bin k, its cell's other voxels
    // in bin K + 1 + k; the second map's cells those of the ground truth shifted along x.
    let k = 100;
    let bins: Vec<i32> =
        inputs.ids.iter().zip(&inputs.cells).map(|(&id, &c)| if id > 0 { id } else { k + 1 + c }).collect();
    let shifted: Vec<i32> = (0..bins.len())
        .map(|v| {
            let (row, x) = (v / SIZE, v % SIZE);
            let c = inputs.cells[row * SIZE + (x + 5) % SIZE];
            if inputs.ids[v] > 0 { c } else { k + 1 + c }
        })
        .collect();
    let (ids, count) = match maps {
        "one_map" => (bins, 1),
        _ => ([bins, shifted].concat(), 2),
    };
    let spec = InstanceSumsSpec::new(SumInput::Logits, 2 * k as usize + 2)
        .with_foreground_end(k as usize + 1)
        .with_squares(true)
        .with_cross_entropy(true)
        .with_maps(count);
    let x = Tensor::<2>::from_data(TensorData::new(inputs.logits.clone(), [BATCH, n]), &device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [count * BATCH, n]), &device);
    bencher.bench_local(|| instance_sums(x.clone(), ids.clone(), spec).expect("valid ids").into_data());
}
