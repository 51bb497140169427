//! Forward + backward time of the blob loss on burn's flex backend (CPU).
//!
//! ```text
//! cargo run --release --example loss_bench [-- --runs N --sizes 64,128 --instances 1,10,100,1000 --naive-max 100]
//! ```
//!
//! For `[2, 1, S, S, S]` logits and K instances per element (cubes placed on a grid), it times
//! (minimum over `--runs` runs after a warm-up, each a fresh forward and backward):
//! - `dice`: the global soft Dice alone, written with plain burn ops (sigmoid, sums),
//! - `blob`: the blob loss (global + blob, default configuration),
//! - `naive`: a per-instance loop with explicit masks (as the reference code computes it), for
//!   K up to `--naive-max` (it is slow).

#[path = "common/timing.rs"]
mod timing;

use blob_loss::loss::BlobLossConfig;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use timing::{arg, list, min_time as time};

/// K cubes of side 3 spread over an S^3 grid, in both batch elements.
fn instances(size: usize, k: usize) -> Vec<i32> {
    let n = size * size * size;
    let mut ids = vec![0i32; 2 * n];
    let per_axis = (k as f64).cbrt().ceil() as usize;
    let step = size / per_axis;
    assert!(step >= 4, "too many instances for the volume");
    for b in 0..2 {
        for i in 0..k {
            let (z, y, x) = (i / (per_axis * per_axis) * step, i / per_axis % per_axis * step, i % per_axis * step);
            for dz in 0..3 {
                for dy in 0..3 {
                    for dx in 0..3 {
                        ids[b * n + ((z + dz) * size + y + dy) * size + x + dx] = i as i32 + 1;
                    }
                }
            }
        }
    }
    ids
}

/// The plain global soft Dice (per element, averaged): the baseline.
fn global_dice(logits: Tensor<5>, target: Tensor<5, Int>) -> Tensor<1> {
    let p = sigmoid(logits).flatten::<2>(1, 4);
    let t = target.greater_elem(0).float().flatten::<2>(1, 4);
    let tp = (p.clone() * t.clone()).sum_dim(1);
    ((tp * 2.0 + 1e-5) / (p.sum_dim(1) + t.sum_dim(1) + 1e-5)).neg().add_scalar(1.0).mean()
}

/// The reference-style loop: one full-volume masked Dice per instance.
fn naive(logits: Tensor<5>, ids: &[i32], k: usize, device: &Device) -> Tensor<1> {
    let dims = logits.dims();
    let n = dims[2] * dims[3] * dims[4];
    let p = sigmoid(logits).reshape([2, n]);
    let global_t = Tensor::<2>::from_data(
        TensorData::new(ids.iter().map(|&i| f32::from(u8::from(i > 0))).collect::<Vec<_>>(), vec![2, n]),
        device,
    );
    let dice = |p: Tensor<2>, t: Tensor<2>| {
        let tp = (p.clone() * t.clone()).sum_dim(1);
        ((tp * 2.0 + 1e-5) / (p.sum_dim(1) + t.sum_dim(1) + 1e-5)).neg() + 1.0
    };
    let global = dice(p.clone(), global_t).mean();
    let mut blob = Vec::new();
    for b in 0..2 {
        let row = &ids[b * n..(b + 1) * n];
        let pb = p.clone().slice([b..b + 1, 0..n]);
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

fn main() {
    let runs: usize = arg("--runs", "5").parse().unwrap();
    let naive_max: usize = arg("--naive-max", "100").parse().unwrap();
    let device = Device::flex().autodiff();
    let blob = BlobLossConfig::new().init();
    println!("| shape | K | global Dice ms | blob loss ms | blob / Dice | naive loop ms | naive / blob |");
    println!("|---|---|---|---|---|---|---|");
    for size in list("--sizes", "64,128") {
        let n = 2 * size * size * size;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 2654435761usize) % 1000) as f32 / 125.0 - 4.0).collect();
        for k in list("--instances", "1,10,100,1000") {
            let ids = instances(size, k);
            let shape = vec![2, 1, size, size, size];
            let x = || Tensor::<5>::from_data(TensorData::new(logits.clone(), shape.clone()), &device).require_grad();
            let y = || Tensor::<5, Int>::from_data(TensorData::new(ids.clone(), shape.clone()), &device);
            let step = |loss: &dyn Fn(Tensor<5>, Tensor<5, Int>) -> Tensor<1>| {
                let x = x();
                let grads = loss(x.clone(), y()).backward();
                std::hint::black_box(x.grad(&grads).unwrap().into_data());
            };
            let t_dice = time(runs, || step(&global_dice));
            let t_blob = time(runs, || step(&|x, y| blob.forward(x, y)));
            let naive_cell = if k <= naive_max {
                let t = time(runs.min(2), || {
                    let x = x();
                    let grads = naive(x.clone(), &ids, k, &device).backward();
                    std::hint::black_box(x.grad(&grads).unwrap().into_data());
                });
                format!("{:.1} | {:.1}", t * 1e3, t / t_blob)
            } else {
                "- | -".to_owned()
            };
            println!(
                "| [2, 1, {size}, {size}, {size}] | {k} | {:.1} | {:.1} | {:.2} | {naive_cell} |",
                t_dice * 1e3,
                t_blob * 1e3,
                t_blob / t_dice
            );
        }
    }
}
