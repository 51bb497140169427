//! The loss's `try_forward` on arbitrary logits (NaN and infinities included) and instance ids
//! (negative, huge, sparse), shapes and configurations, on flex with autodiff: an `Err`, or a
//! finite loss with a finite gradient; never a panic or an abort. Every partition (Voronoi cells
//! made from the ids, or arbitrary ones), the false-positive term, ignored voxels, size weighting
//! and MONAI's options.
#![no_main]

use arbitrary::Arbitrary;
use blob_loss::components::voronoi_batch;
use blob_loss::loss::{Activation, BaseLossConfig, BlobLossConfig, Engine, LossTargets, Partition};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    dims: [u8; 4],
    activation: u8,
    partition: u8,
    arbitrary_cells: bool,
    false_positives: bool,
    ignore_negative_ids: bool,
    size_weighting: bool,
    include_background: bool,
    batch_global: bool,
    scatter: bool,
    bce: bool,
    squared: bool,
    weights: [u8; 2],
    logits: Vec<u32>,
    ids: Vec<i64>,
    small_ids: bool,
}

fuzz_target!(|input: Input| {
    let [b, c, h, w] = input.dims.map(|d| usize::from(d % 5));
    let shape = [b.max(1), c.max(1), h, w];
    let n: usize = shape.iter().product();
    let mut bits = input.logits.iter().cycle();
    let logits: Vec<f32> = (0..n).map(|_| bits.next().map_or(0.0, |&b| f32::from_bits(b))).collect();
    let mut ids = input.ids.iter().cycle();
    let ids: Vec<i64> =
        (0..n).map(|_| ids.next().map_or(0, |&i| if input.small_ids { i.rem_euclid(5) } else { i })).collect();
    let activation = [Activation::Sigmoid, Activation::Softmax, Activation::None][usize::from(input.activation % 3)];
    let base =
        BaseLossConfig::new().with_bce_weight(f64::from(u8::from(input.bce))).with_squared_denominator(input.squared);
    let config = BlobLossConfig::new()
        .with_activation(activation)
        .with_partition([Partition::Exclude, Partition::Reference, Partition::Voronoi][usize::from(input.partition % 3)])
        .with_false_positive_weight(f64::from(u8::from(input.false_positives)))
        .with_ignore_negative_ids(input.ignore_negative_ids)
        .with_global_size_weighting(input.size_weighting)
        .with_blob_size_weighting(input.size_weighting)
        .with_include_background(input.include_background)
        .with_batch_global(input.batch_global)
        .with_engine(if input.scatter { Engine::Scatter } else { Engine::Fused })
        .with_global_weight(f64::from(input.weights[0] % 4))
        .with_blob_weight(f64::from(input.weights[1] % 4))
        .with_global_loss(base.clone())
        .with_blob_loss(base);
    let Ok(loss) = config.try_init() else { return };
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(logits, shape.to_vec()), &device).require_grad();
    // Cells: the Voronoi cells of the non-negative ids (when they fit u32), or the ids themselves.
    let cells: Vec<i64> = if input.arbitrary_cells {
        ids.iter().map(|&i| i.wrapping_mul(7)).collect()
    } else {
        let labels: Vec<u32> = ids.iter().map(|&i| u32::try_from(i.max(0)).unwrap_or(0)).collect();
        match ndarray::Array4::from_shape_vec(shape, labels).map(|l| voronoi_batch(l.view(), &[1.0, 1.5])) {
            Ok(Ok(cells)) => cells.iter().map(|&c| i64::from(c)).collect(),
            _ => vec![0; n],
        }
    };
    let int = |values: Vec<i64>| Tensor::<4, Int>::from_data(TensorData::new(values, shape.to_vec()), (&device, DType::I64));
    let targets = LossTargets::new(int(ids)).with_cells(int(cells));
    if let Ok(total) = loss.try_forward(x.clone(), targets) {
        let value = total.clone().into_scalar::<f64>();
        assert!(value.is_finite(), "an Ok loss must be finite: {value}");
        let gradient = x.grad(&total.backward()).expect("x requires its gradient");
        let gradient: Vec<f32> = gradient.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 gradient");
        assert!(gradient.iter().all(|g| g.is_finite()), "non-finite gradient for a finite loss");
    }
});
