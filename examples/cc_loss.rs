//! The CC loss (Voronoi partition) and the false-positive term on cases written by
//! `scripts/cc_loss_compare.py`, which checks them against PyTorch versions of the published
//! formulas.
//!
//! ```text
//! cargo run --release --example cc_loss -- DIR
//! ```
//!
//! For every `DIR/NAME.json` (`{"shape": [B, 1, spatial..], "loss": "cc" | "fp"}`) it reads
//! `NAME.logits.f32`, `NAME.instances.i32`, `NAME.cells.i32` and `NAME.fp.i32` (little-endian,
//! row-major) and writes the loss (`NAME.loss.f64`) and its gradient (`NAME.grad.f32`).

use std::path::Path;

use blob_loss::loss::{BaseLossConfig, BlobLossConfig, LossTargets, Partition};
use burn::tensor::{Device, Int, Tensor, TensorData};

fn read<T: Copy>(path: &Path, from: fn([u8; 4]) -> T) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.as_chunks::<4>().0.iter().map(|&b| from(b)).collect()
}

fn run<const D: usize>(dir: &Path, name: &str, shape: Vec<usize>, loss: &str) {
    let device = Device::flex().autodiff();
    let file = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    let int = |suffix: &str| {
        let values = read(&file(suffix), i32::from_le_bytes);
        Tensor::<D, Int>::from_data(TensorData::new(values, shape.clone()), &device)
    };
    let logits = read(&file("logits.f32"), f32::from_le_bytes);
    let x = Tensor::<D>::from_data(TensorData::new(logits, shape.clone()), &device).require_grad();
    // The terms alone (no global term), with the papers' base losses.
    let (config, targets) = match loss {
        "cc" => (
            BlobLossConfig::new()
                .with_global_weight(0.0)
                .with_partition(Partition::Voronoi)
                .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_smooth_nr(0.0).with_smooth_dr(1e-7)),
            LossTargets::new(int("instances.i32")).with_cells(int("cells.i32")),
        ),
        "fp" => (
            BlobLossConfig::new().with_global_weight(0.0).with_blob_weight(0.0).with_false_positive_weight(1.0),
            LossTargets::new(int("instances.i32")).with_false_positives(int("fp.i32")),
        ),
        other => panic!("unknown loss {other}"),
    };
    let total = config.init().forward(x.clone(), targets);
    let value = total.clone().into_scalar::<f64>();
    let grad: Vec<f32> =
        x.grad(&total.backward()).expect("gradient").into_data().convert::<f32>().try_to_vec().expect("f32");
    std::fs::write(file("loss.f64"), value.to_le_bytes()).expect("write the loss");
    std::fs::write(file("grad.f32"), grad.iter().flat_map(|g| g.to_le_bytes()).collect::<Vec<u8>>())
        .expect("write the gradient");
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: cc_loss DIR");
    let dir = Path::new(&dir);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read DIR")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("read the case");
        let case: serde_json::Value = serde_json::from_str(&text).expect("a JSON case");
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).expect("a shape");
        let loss = case["loss"].as_str().expect("a loss name");
        match shape.len() {
            4 => run::<4>(dir, &name, shape, loss),
            5 => run::<5>(dir, &name, shape, loss),
            n => panic!("{name}: rank {n}"),
        }
    }
}
