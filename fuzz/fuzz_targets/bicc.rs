//! `BiccLoss::try_forward` on arbitrary logits (NaN and infinities included), masks and cells
//! (negative, huge), shapes (1 to 3 channels, size-1 and empty axes) and configurations, on flex
//! with autodiff: an `Err`, or a finite loss with a finite gradient; never a panic or an abort.
#![no_main]

use arbitrary::Arbitrary;
use blob_loss::loss::{BiccLossConfig, BiccTargets, CellTerms, EmptyCellLoss, Engine};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    dims: [u8; 4],
    alpha: u8,
    terms: u8,
    dice_empty_cells: bool,
    cc_dice_ce: bool,
    smooth: bool,
    spacing: Option<[u8; 2]>,
    scatter: bool,
    given_cells: bool,
    given_prediction_cells: bool,
    logits: Vec<u32>,
    mask: Vec<i64>,
    cells: Vec<i64>,
}

fuzz_target!(|input: Input| {
    let [b, c, h, w] = input.dims.map(|d| usize::from(d % 6));
    let shape = [b.max(1), c.max(1), h, w];
    let n: usize = shape.iter().product();
    let maps = n / shape[1];
    let mut bits = input.logits.iter().cycle();
    let logits: Vec<f32> = (0..n).map(|_| bits.next().map_or(0.0, |&b| f32::from_bits(b))).collect();
    let cycle = |values: &[i64]| -> Vec<i64> { values.iter().copied().cycle().take(maps).chain(std::iter::repeat(0)).take(maps).collect() };
    let mut config = if input.cc_dice_ce { BiccLossConfig::cc_dice_ce() } else { BiccLossConfig::new() };
    config = config
        .with_alpha(f64::from(input.alpha % 5) / 4.0)
        .with_terms([CellTerms::Dice, CellTerms::CrossEntropy, CellTerms::DiceCrossEntropy][usize::from(input.terms % 3)])
        .with_dice_smooth(if input.smooth { 1e-5 } else { 0.0 })
        .with_spacing(input.spacing.map(|s| s.iter().map(|&v| f64::from(v) / 16.0).collect()))
        .with_engine(if input.scatter { Engine::Scatter } else { Engine::Fused });
    if input.dice_empty_cells {
        config = config.with_empty_cell_loss(EmptyCellLoss::Dice);
    }
    let Ok(loss) = config.try_init() else { return };
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(logits, shape.to_vec()), &device).require_grad();
    let map_shape = vec![shape[0], 1, shape[2], shape[3]];
    let int = |values: Vec<i64>| Tensor::<4, Int>::from_data(TensorData::new(values, map_shape.clone()), (&device, DType::I64));
    let mut targets = BiccTargets::new(int(cycle(&input.mask)));
    if input.given_cells {
        targets = targets.with_cells(int(cycle(&input.cells)));
    }
    if input.given_prediction_cells {
        targets = targets.with_prediction_cells(int(cycle(&input.cells).into_iter().map(|v| v.wrapping_add(1)).collect()));
    }
    if let Ok(total) = loss.try_forward(x.clone(), targets) {
        let value = total.clone().into_scalar::<f64>();
        assert!(value.is_finite(), "an Ok loss must be finite: {value}");
        let gradient = x.grad(&total.backward()).expect("x requires its gradient");
        let gradient: Vec<f32> = gradient.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 gradient");
        assert!(gradient.iter().all(|g| g.is_finite()), "non-finite gradient for a finite loss");
    }
});
