//! Blob loss, forward and backward, on burn's flex backend (CPU): `[2, 1, 64³]` logits with K
//! instances (cubes of 27 voxels) per element, K = 1, 10, 100, 1000; the blob loss and, as the
//! baseline, the same loss with `blob_weight = 0` (the global soft Dice alone, same engine).
//!
//! ```text
//! cargo bench --bench loss
//! ```
//!
//! Each sample makes the input tensors, runs the forward and the backward pass and reads the
//! gradient back. The comparison with PyTorch and with burn's plain Dice is
//! `scripts/bench_loss.sh`; GPU backends, `examples/loss_bench.rs --backend wgpu|cuda`.

use blob_loss::loss::{BlobLoss, BlobLossConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use divan::Bencher;

fn main() {
    divan::main();
}

const SIZE: usize = 64;
const BATCH: usize = 2;

/// The logits (a fixed pseudo-random pattern in [-4, 4)) and K cubes of side 3 on a grid.
fn inputs(k: usize) -> (Vec<f32>, Vec<i32>) {
    let n = SIZE * SIZE * SIZE;
    let logits = (0..BATCH * n).map(|i| ((i * 2_654_435_761) % 1000) as f32 / 125.0 - 4.0).collect();
    let mut ids = vec![0i32; BATCH * n];
    let per_axis = (k as f64).cbrt().ceil() as usize;
    let step = SIZE / per_axis;
    for row in 0..BATCH {
        for i in 0..k {
            let corner = [i / (per_axis * per_axis), i / per_axis % per_axis, i % per_axis].map(|c| c * step);
            for d in 0..27 {
                let [z, y, x] = [corner[0] + d / 9, corner[1] + d / 3 % 3, corner[2] + d % 3];
                ids[row * n + (z * SIZE + y) * SIZE + x] = i as i32 + 1;
            }
        }
    }
    (logits, ids)
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
