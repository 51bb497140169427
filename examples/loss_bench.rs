//! Forward + backward time of the blob loss, on burn's flex backend (CPU) or a GPU backend.
//!
//! ```text
//! cargo run --release --example loss_bench [-- --runs N --shapes 2x1x64,2x1x128 --instances 1,10,100,1000
//!     --naive-max 100 --backend flex|wgpu|cuda]
//! ```
//!
//! For `[B, C, S, S, S]` logits (`--shapes BxCxS,...`) and K instances per element and channel
//! (cubes of 27 voxels placed on a grid), it times (minimum over `--runs` runs after a warm-up,
//! each a fresh forward and backward with the gradient read back to the host):
//! - `burn Dice`: the plain global soft Dice written with burn ops (sigmoid, sums),
//! - `Dice only`: the crate's loss with `blob_weight = 0` (the global soft Dice on the same
//!   engine: the honest baseline),
//! - `blob`: the blob loss (global + blob, default configuration, the fused engine),
//! - `scatter`: the same loss on burn's generic tensor operations (`Engine::Scatter`),
//! - `naive`: a per-instance loop with explicit masks (as the reference code computes it), for
//!   K up to `--naive-max` (it is slow).
//!
//! `wgpu` and `cuda` need the crate feature of that name; on them the first line says whether
//! the device adds floats atomically (which kernel path runs).

#[path = "common/timing.rs"]
mod timing;

use blob_loss::loss::{BlobLossConfig, Engine};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use timing::{arg, list, min_time as time};

#[path = "common/cubes.rs"]
mod cubes;

/// K cubes of side 3 spread over an S^3 grid, in every element and channel.
fn instances([b, c, size]: [usize; 3], k: usize) -> Vec<i32> {
    cubes::cubes(b * c, size, k)
}

/// The plain global soft Dice (per element and channel, averaged): the baseline.
fn global_dice(logits: Tensor<5>, target: Tensor<5, Int>) -> Tensor<1> {
    let p = sigmoid(logits).flatten::<4>(0, 1).flatten::<2>(1, 3);
    let t = target.greater_elem(0).float().flatten::<4>(0, 1).flatten::<2>(1, 3);
    let tp = (p.clone() * t.clone()).sum_dim(1);
    ((tp * 2.0 + 1e-5) / (p.sum_dim(1) + t.sum_dim(1) + 1e-5)).neg().add_scalar(1.0).mean()
}

/// The reference-style loop: one full-volume masked Dice per instance (one channel).
fn naive(logits: Tensor<5>, ids: &[i32], k: usize, device: &Device) -> Tensor<1> {
    let dims = logits.dims();
    let (b, n) = (dims[0], dims[2] * dims[3] * dims[4]);
    let p = sigmoid(logits).reshape([b, n]);
    let global_t = Tensor::<2>::from_data(
        TensorData::new(ids.iter().map(|&i| f32::from(u8::from(i > 0))).collect::<Vec<_>>(), vec![b, n]),
        device,
    );
    let dice = |p: Tensor<2>, t: Tensor<2>| {
        let tp = (p.clone() * t.clone()).sum_dim(1);
        ((tp * 2.0 + 1e-5) / (p.sum_dim(1) + t.sum_dim(1) + 1e-5)).neg() + 1.0
    };
    let global = dice(p.clone(), global_t).mean();
    let mut blob = Vec::new();
    for e in 0..b {
        let row = &ids[e * n..(e + 1) * n];
        let pb = p.clone().slice([e..e + 1, 0..n]);
        for id in 1..=k as i32 {
            let mask: Vec<f32> = row.iter().map(|&i| f32::from(u8::from(i == 0 || i == id))).collect();
            let target: Vec<f32> = row.iter().map(|&i| f32::from(u8::from(i == id))).collect();
            let mask = Tensor::<2>::from_data(TensorData::new(mask, vec![1, n]), device);
            let target = Tensor::<2>::from_data(TensorData::new(target, vec![1, n]), device);
            blob.push(dice(pb.clone() * mask, target).reshape([1]));
        }
    }
    global * 2.0 + Tensor::cat(blob, 0).mean()
}

fn device(name: &str) -> Device {
    match name {
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(Default::default()),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        other => panic!(
            "unknown or not compiled in backend {other} (flex, wgpu with --features wgpu, cuda with --features cuda)"
        ),
    }
}

fn shapes() -> Vec<[usize; 3]> {
    arg("--shapes", "2x1x64,2x1x128")
        .split(',')
        .map(|s| {
            let v: Vec<usize> = s.split('x').map(|v| v.parse().expect("shapes as BxCxS")).collect();
            [v[0], v[1], v[2]]
        })
        .collect()
}

fn main() {
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let naive_max: usize = arg("--naive-max", "100").parse().unwrap();
    let backend = arg("--backend", "flex");
    let device = device(&backend).autodiff();
    match blob_loss::loss::sums::native_float_atomics(&device) {
        Some(native) => println!(
            "{backend}: the cube kernel adds instance runs with {}",
            if native { "native f32 atomics" } else { "a compare-and-swap loop (no f32 atomic add)" }
        ),
        None => println!("{backend}: host passes"),
    }
    let blob = BlobLossConfig::new().init();
    let dice_only = BlobLossConfig::new().with_blob_weight(0.0).init();
    let scatter = BlobLossConfig::new().with_engine(Engine::Scatter).init();
    println!(
        "| shape | K | burn Dice ms | Dice only ms | blob loss ms | blob / Dice only | blob / burn Dice | scatter ms | scatter / blob | naive loop ms | naive / blob |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for shape @ [b, c, size] in shapes() {
        let n = b * c * size * size * size;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 2654435761usize) % 1000) as f32 / 125.0 - 4.0).collect();
        for k in list("--instances", "1,10,100,1000") {
            let ids = instances(shape, k);
            let dims = vec![b, c, size, size, size];
            let x = || Tensor::<5>::from_data(TensorData::new(logits.clone(), dims.clone()), &device).require_grad();
            let y = || Tensor::<5, Int>::from_data(TensorData::new(ids.clone(), dims.clone()), &device);
            let step = |loss: &dyn Fn(Tensor<5>, Tensor<5, Int>) -> Tensor<1>| {
                let x = x();
                let grads = loss(x.clone(), y()).backward();
                std::hint::black_box(x.grad(&grads).unwrap().into_data());
            };
            let t_dice = time(runs, || step(&global_dice));
            let t_ours = time(runs, || step(&|x, y| dice_only.forward(x, y)));
            let t_blob = time(runs, || step(&|x, y| blob.forward(x, y)));
            let t_scatter = time(runs.min(3), || step(&|x, y| scatter.forward(x, y)));
            let naive_cell = if k <= naive_max && c == 1 {
                let t = time(runs.min(2), || {
                    let x = x();
                    let grads = naive(x.clone(), &ids, k, &device).backward();
                    std::hint::black_box(x.grad(&grads).unwrap().into_data());
                });
                format!("{:.2} | {:.1}", t * 1e3, t / t_blob)
            } else {
                "- | -".to_owned()
            };
            println!(
                "| [{b}, {c}, {size}, {size}, {size}] | {k} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {naive_cell} |",
                t_dice * 1e3,
                t_ours * 1e3,
                t_blob * 1e3,
                t_blob / t_ours,
                t_blob / t_dice,
                t_scatter * 1e3,
                t_scatter / t_blob
            );
        }
    }
}
