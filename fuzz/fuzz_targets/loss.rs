//! The loss's `try_forward` on arbitrary logits (NaN and infinities included) and instance ids
//! (negative, huge, sparse), shapes and configurations, on flex with autodiff: an `Err`, or a
//! finite loss with a finite gradient; never a panic or an abort.
#![no_main]

use arbitrary::Arbitrary;
use blob_loss::loss::{Activation, BaseLossConfig, BlobLossConfig, Engine, Partition};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    dims: [u8; 4],
    activation: u8,
    reference_partition: bool,
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
        .with_partition(if input.reference_partition { Partition::Reference } else { Partition::Exclude })
        .with_engine(if input.scatter { Engine::Scatter } else { Engine::Fused })
        .with_global_weight(f64::from(input.weights[0] % 4))
        .with_blob_weight(f64::from(input.weights[1] % 4))
        .with_global_loss(base.clone())
        .with_blob_loss(base);
    let Ok(loss) = config.try_init() else { return };
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(logits, shape.to_vec()), &device).require_grad();
    let y = Tensor::<4, Int>::from_data(TensorData::new(ids, shape.to_vec()), (&device, DType::I64));
    if let Ok(total) = loss.try_forward(x.clone(), y) {
        let value = total.clone().into_scalar::<f64>();
        assert!(value.is_finite(), "an Ok loss must be finite: {value}");
        let gradient = x.grad(&total.backward()).expect("x requires its gradient");
        let gradient: Vec<f32> = gradient.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 gradient");
        assert!(gradient.iter().all(|g| g.is_finite()), "non-finite gradient for a finite loss");
    }
});
