//! The CC family ([`BiccLoss`]) on the cases `scripts/cc_parity.py` writes, which compares the
//! results with the published code (TIO-IKIM/BiCC-Loss, ossner/Learning-to-Look-Closer).
//!
//! ```text
//! cargo run --release --example cc_parity -- DIR            # every case of DIR/cases.json
//! cargo run --release --example cc_parity -- --bench N K R  # timing, see below
//! ```
//!
//! For every case `NAME` it reads `NAME.logits.f32` (`[B, 2, spatial..]`), `NAME.mask.i32`,
//! and the published code's cells `NAME.cells.i32` and `NAME.pred_cells.i32` (`[B, 1,
//! spatial..]`, little-endian, row-major), and for every configuration `i` of the case writes
//! the loss and its gradient computed twice: with the published cells
//! (`NAME.i.given.{loss.f64,grad.f32}`) and with its own (`NAME.i.own.{loss.f64,grad.f32}`);
//! its own cells go to `NAME.own_cells.i32` and `NAME.own_pred_cells.i32`.
//!
//! `--bench N K R`: BiCC (alpha 0.5, Dice + cross-entropy) and the blob loss with Dice + BCE,
//! forward and backward on flex, on the same `[2, 1, N³]` logits with K lesions per element
//! (the ground truth's cells given, as the batcher makes them; the prediction's labelled and
//! its cells built in every call), fastest of R runs each (interleaved); prints one JSON line.

use std::path::Path;
use std::time::Instant;

use blob_loss::components::{Connectivity, label_batch};
use blob_loss::loss::{
    BaseLossConfig, BiccLoss, BiccLossConfig, BiccTargets, BlobLossConfig, CellTerms, EmptyCellLoss,
    instances_to_tensor, prediction_cells,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::Array5;

fn read<T: Copy>(path: &Path, from: fn([u8; 4]) -> T) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.as_chunks::<4>().0.iter().map(|&b| from(b)).collect()
}

fn write_ints(path: &Path, values: &[i64]) {
    std::fs::write(path, values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect::<Vec<u8>>())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A configuration as the script names it.
fn config(spec: &serde_json::Value) -> BiccLossConfig {
    let base = if spec["cc_dice_ce"].as_bool().unwrap_or(false) {
        BiccLossConfig::cc_dice_ce()
    } else {
        BiccLossConfig::new()
    };
    let number = |key: &str| spec[key].as_f64();
    let mut config = base;
    if let Some(alpha) = number("alpha") {
        config = config.with_alpha(alpha);
    }
    if let Some(smooth) = number("dice_smooth") {
        config = config.with_dice_smooth(smooth);
    }
    config = config.with_prediction_dice_smooth(number("prediction_dice_smooth"));
    if spec["empty_cell_loss"].as_str() == Some("dice") {
        config = config.with_empty_cell_loss(EmptyCellLoss::Dice);
    }
    config = config.with_terms(match spec["mode"].as_str() {
        Some("dice") => CellTerms::Dice,
        Some("ce") => CellTerms::CrossEntropy,
        _ => CellTerms::DiceCrossEntropy,
    });
    config
        .with_spacing(serde_json::from_value(spec["spacing"].clone()).unwrap_or(None))
        .with_patch_size(serde_json::from_value(spec["patch_size"].clone()).unwrap_or(None))
}

fn run_case<const D: usize>(dir: &Path, name: &str, shape: Vec<usize>, configs: &[serde_json::Value]) {
    let device = Device::flex().autodiff();
    let file = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    let mut map_shape = shape.clone();
    map_shape[1] = 1;
    let int = |suffix: &str| {
        let values = read(&file(suffix), i32::from_le_bytes);
        Tensor::<D, Int>::from_data(TensorData::new(values, map_shape.clone()), &device)
    };
    let logits = read(&file("logits.f32"), f32::from_le_bytes);
    let (mask, cells, pred_cells) = (int("mask.i32"), int("cells.i32"), int("pred_cells.i32"));
    for (i, spec) in configs.iter().enumerate() {
        let config = config(spec);
        let loss: BiccLoss = config.init();
        for (how, targets) in [
            (
                "given",
                BiccTargets::new(mask.clone()).with_cells(cells.clone()).with_prediction_cells(pred_cells.clone()),
            ),
            ("own", BiccTargets::new(mask.clone())),
        ] {
            let x = Tensor::<D>::from_data(TensorData::new(logits.clone(), shape.clone()), &device).require_grad();
            let total = loss.forward(x.clone(), targets);
            let value = total.clone().into_scalar::<f64>();
            let grad: Vec<f32> =
                x.grad(&total.backward()).expect("gradient").into_data().convert::<f32>().try_to_vec().expect("f32");
            std::fs::write(file(&format!("{i}.{how}.loss.f64")), value.to_le_bytes()).expect("write the loss");
            std::fs::write(
                file(&format!("{i}.{how}.grad.f32")),
                grad.iter().flat_map(|g| g.to_le_bytes()).collect::<Vec<u8>>(),
            )
            .expect("write the gradient");
        }
        if i == 0 {
            // The cells of the first configuration's geometry (every configuration of a case
            // shares it).
            let spacing = config.effective_spacing(&shape[2..]).expect("a valid spacing");
            let x = Tensor::<D>::from_data(TensorData::new(logits.clone(), shape.clone()), &device);
            let own_pred = prediction_cells(x, config.threshold, &spacing).expect("prediction cells");
            let ids = |t: Tensor<D, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().expect("i64");
            write_ints(&file("own_pred_cells.i32"), &ids(own_pred));
            let mask_values: Vec<u8> = ids(mask.clone()).iter().map(|&v| u8::from(v > 0)).collect();
            let mask_array = ndarray::ArrayD::from_shape_vec(map_shape.clone(), mask_values).expect("mask");
            let connectivity = if D == 4 { Connectivity::Eight } else { Connectivity::TwentySix };
            let labels = label_batch(mask_array.view(), connectivity).expect("labels").labels;
            let own = blob_loss::components::voronoi_batch(labels.view(), &spacing).expect("cells");
            write_ints(&file("own_cells.i32"), &own.iter().map(|&c| i64::from(c)).collect::<Vec<_>>());
        }
    }
}

/// `[2, N³]` lesion-like batch: K cubes of 3³ per element in the truth, the prediction finding
/// each shifted by one voxel plus K false-positive cubes (as the loss benches).
fn bench(n: usize, k: usize, runs: usize) {
    let device = Device::flex().autodiff();
    let mut truth = Array5::<u8>::zeros((2, 1, n, n, n));
    let mut margin = vec![-4.0f32; 2 * n * n * n];
    let mut state = 12345u64;
    let mut next = |m: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % m
    };
    for b in 0..2 {
        for j in 0..2 * k {
            let (z, y, x) = (next(n - 4), next(n - 4), next(n - 4));
            for (dz, dy, dx) in (0..27).map(|i| (i / 9, i / 3 % 3, i % 3)) {
                let (zz, yy, xx) = (z + dz, y + dy, x + dx);
                if j < k {
                    truth[[b, 0, zz, yy, xx]] = 1;
                }
                margin[((b * n + zz) * n + yy) * n + xx + usize::from(j < k && xx + 1 < n)] = 3.0;
            }
        }
    }
    let instances = label_batch(truth.view(), Connectivity::TwentySix).expect("labels").labels;
    let instances: Tensor<5, Int> = instances_to_tensor(instances.view(), &device).expect("instances");
    let mask: Tensor<5, Int> = instances.clone().clamp_max(1);
    // The ground truth's cells come from the batcher, as the blob loss's instance maps do.
    let cells = blob_loss::components::voronoi_batch(
        label_batch(truth.view(), Connectivity::TwentySix).expect("labels").labels.view(),
        &[1.0; 3],
    )
    .expect("cells");
    let cells: Tensor<5, Int> = instances_to_tensor(cells.view(), &device).expect("cells");
    let bicc = BiccLossConfig::new().init();
    let blob = BlobLossConfig::new().with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)).init();
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64() * 1e3
    };
    let run_bicc = || {
        let x = Tensor::<5>::from_data(TensorData::new(margin.clone(), [2, 1, n, n, n]), &device).require_grad();
        let loss = bicc.forward(x.clone(), BiccTargets::new(mask.clone()).with_cells(cells.clone()));
        let _ = x.grad(&loss.backward());
    };
    let run_blob = || {
        let x = Tensor::<5>::from_data(TensorData::new(margin.clone(), [2, 1, n, n, n]), &device).require_grad();
        let loss = blob.forward(x.clone(), instances.clone());
        let _ = x.grad(&loss.backward());
    };
    let (mut best_bicc, mut best_blob) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..runs {
        best_bicc = best_bicc.min(time(&run_bicc));
        best_blob = best_blob.min(time(&run_blob));
    }
    println!(
        "{{\"n\": {n}, \"k\": {k}, \"runs\": {runs}, \"bicc_ms\": {best_bicc:.3}, \"blob_dice_bce_ms\": {best_blob:.3}}}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bench") {
        let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().expect("a number"));
        bench(arg(1, 64), arg(2, 100), arg(3, 20));
        return;
    }
    let dir = Path::new(args.first().expect("usage: cc_parity DIR | --bench N K R"));
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("read DIR/cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON list of cases");
    for case in &cases {
        let name = case["name"].as_str().expect("a case name");
        let shape: Vec<usize> = serde_json::from_value(case["shape"].clone()).expect("a shape");
        let configs = case["configs"].as_array().expect("configurations");
        match shape.len() {
            4 => run_case::<4>(dir, name, shape, configs),
            5 => run_case::<5>(dir, name, shape, configs),
            n => panic!("{name}: rank {n}"),
        }
    }
}
