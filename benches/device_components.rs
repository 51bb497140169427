//! Labelling, Voronoi cells and the BiCC step on the device (`label_tensor`, `voronoi_tensor`,
//! `BiccLoss` with device-side partitions) against the host code on the same machine, on
//! volumes made here (no downloads). Needs the `wgpu` feature:
//!
//! ```text
//! cargo bench --features wgpu --bench device_components
//! ```
//!
//! Without a GPU, wgpu runs on Mesa's lavapipe (a CPU): the figures are ratios of code paths,
//! not GPU speeds; `scripts/gpu_bench.sh` runs the same binary on a lent GPU, beside CuPy's
//! `label` and `distance_transform_edt` on the same volumes (`scripts/cupy_components_bench.py`
//! makes them with the same generators). `STEP_SIZE=128` runs the loss steps on `128³` volumes.

#[path = "../examples/common/lesions.rs"]
mod lesions;
#[path = "../examples/common/rng.rs"]
mod rng;

use blob_loss::components::{Connectivity, label_batch, label_tensor, voronoi_batch, voronoi_tensor};
use blob_loss::loss::{BaseLossConfig, BiccLossConfig, BiccTargets, BlobLossConfig, LossTargets};
use burn::tensor::{Device, Int, Tensor, TensorData};
use divan::Bencher;
use ndarray::{Array3, Array5};
use rng::Rng;

fn main() {
    // The volumes' sizes, to set beside scripts/cupy_components_bench.py's (same generators).
    let volumes = VOLUMES.iter().map(|&name| (name, volume(name))).chain([("lesions 64³", volume_64())]);
    for (name, volume) in volumes {
        let components = label_batch(volume.view(), Connectivity::TwentySix).expect("valid").counts[[0, 0]];
        let voxels = volume.iter().filter(|&&v| v > 0).count();
        eprintln!("{name}: {voxels} voxels, {components} components (26-connected)");
    }
    divan::main();
}

fn wgpu() -> Device {
    Device::wgpu(Default::default())
}

/// i.i.d. coin flips: the most components and merges a volume can have.
fn noise(size: usize, seed: u64) -> Array3<u8> {
    let mut rng = Rng(seed);
    Array3::from_shape_simple_fn((size, size, size), || (rng.next_u64() & 1) as u8)
}

const VOLUMES: &[&str] = &["lesions 256³", "noise 128³"];

fn volume(name: &str) -> Array5<u8> {
    let volume = match name {
        "lesions 256³" => lesions::lesions(256, 1200, 1),
        _ => noise(128, 2),
    };
    let (d, h, w) = volume.dim();
    volume.into_shape_with_order((1, 1, d, h, w)).expect("one slice")
}

fn tensor(volume: &Array5<u8>, device: &Device) -> Tensor<5, Int> {
    let values: Vec<i32> = volume.iter().map(|&v| i32::from(v)).collect();
    Tensor::from_data(TensorData::new(values, volume.shape().to_vec()), device)
}

/// The host labeller on the volume in host memory.
#[divan::bench(args = VOLUMES)]
fn label_host(bencher: Bencher, name: &str) {
    let volume = volume(name);
    bencher.bench_local(|| label_batch(volume.view(), Connectivity::TwentySix).expect("valid"));
}

/// `label_tensor` on wgpu, the volume already on the device, waited for with `Device::sync`.
#[divan::bench(args = VOLUMES)]
fn label_device(bencher: Bencher, name: &str) {
    let device = wgpu();
    let masks = tensor(&volume(name), &device);
    device.sync().expect("the upload ran");
    bencher.bench_local(|| {
        let labelled = label_tensor(masks.clone(), Connectivity::TwentySix).expect("valid");
        device.sync().expect("the labelling ran");
        labelled
    });
}

/// The Voronoi cells of the 26-connected lesions of a 64³ volume, host and device.
fn lesion_labels() -> Array5<u32> {
    label_batch(volume_64().view(), Connectivity::TwentySix).expect("valid").labels
}

fn volume_64() -> Array5<u8> {
    lesions::lesions(64, 100, 3).into_shape_with_order((1, 1, 64, 64, 64)).expect("one slice")
}

#[divan::bench]
fn voronoi_host(bencher: Bencher) {
    let labels = lesion_labels();
    bencher.bench_local(|| voronoi_batch(labels.view(), &[1.0; 3]).expect("valid"));
}

#[divan::bench]
fn voronoi_device(bencher: Bencher) {
    let labels = lesion_labels();
    let values: Vec<i32> = labels.iter().map(|&v| v as i32).collect();
    let device = wgpu();
    let labels = Tensor::<5, Int>::from_data(TensorData::new(values, labels.shape().to_vec()), &device);
    device.sync().expect("the upload ran");
    bencher.bench_local(|| {
        let cells = voronoi_tensor(labels.clone(), &[1.0; 3]).expect("valid");
        device.sync().expect("the cells ran");
        cells
    });
}

/// The side of the loss steps' volumes: 64, or `STEP_SIZE` from the environment (a lent GPU
/// runs `scripts/gpu_bench.sh` with 128, the size of the issue's target).
fn step_size() -> usize {
    std::env::var("STEP_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(64)
}

/// Logits `[2, 2, size³]` that predict 100 lesions shifted by two voxels and a few false
/// positives, and the masks (`size` from [`step_size`]).
fn step_inputs(device: &Device) -> (Tensor<5>, Tensor<5, Int>) {
    let size = step_size();
    let truth = lesions::lesions(size, 100, 3);
    let n = truth.len();
    let mut rng = Rng(9);
    let mut logits = vec![0.0f32; 2 * 2 * n];
    let mut mask = vec![0i32; 2 * n];
    for b in 0..2 {
        for (i, &t) in truth.iter().enumerate() {
            let shifted = truth.as_slice().expect("standard")[(i + 2 + size * b) % n];
            let noise = (rng.unit() as f32 - 0.5) * 0.5;
            logits[(2 * b + 1) * n + i] = if shifted > 0 || rng.below(4000) == 0 { 2.0 } else { -2.0 } + noise;
            mask[b * n + i] = i32::from(t);
        }
    }
    let logits = Tensor::from_data(TensorData::new(logits, [2, 2, size, size, size]), device).require_grad();
    (logits, Tensor::from_data(TensorData::new(mask, [2, 1, size, size, size]), device))
}

/// BiCC (alpha 0.5, Dice + CE) forward and backward, every partition made by the loss: on
/// wgpu (device-side labelling and cells) and on flex (the host path).
#[divan::bench(args = ["wgpu", "flex"])]
fn bicc_step(bencher: Bencher, backend: &str) {
    let device = if backend == "wgpu" { wgpu().autodiff() } else { Device::flex().autodiff() };
    let loss = BiccLossConfig::new().init();
    bencher.with_inputs(|| step_inputs(&device)).bench_local_values(|(x, mask)| {
        let grads = loss.forward(x.clone(), BiccTargets::new(mask)).backward();
        x.grad(&grads).expect("x requires its gradient").into_data()
    });
}

/// The blob loss with Dice + BCE on the same inputs (instances labelled ahead, as a batcher
/// does), the reference of the BiCC step's cost.
#[divan::bench(args = ["wgpu", "flex"])]
fn blob_step(bencher: Bencher, backend: &str) {
    let device = if backend == "wgpu" { wgpu().autodiff() } else { Device::flex().autodiff() };
    let loss = BlobLossConfig::new().with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)).init();
    bencher
        .with_inputs(|| {
            let (x, mask) = step_inputs(&device);
            let instances = label_tensor(mask.clone(), Connectivity::TwentySix).expect("valid").labels;
            (x.narrow(1, 1, 1).detach().require_grad(), instances)
        })
        .bench_local_values(|(x, instances)| {
            let grads = loss.forward(x.clone(), LossTargets::new(instances)).backward();
            x.grad(&grads).expect("x requires its gradient").into_data()
        });
}
