//! Instance-level evaluation of a trained network with `blob_loss::metrics`.

use blob_loss::components::{Connectivity, label};
use blob_loss::metrics::{CaseMetrics, MatchScore, Matching, MetricsConfig, Summary, evaluate_instances};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, ArrayView2};

use crate::data::Sample;
use crate::model::UNet;

/// The figures of one network on one set of images, pooled over all their instances.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation {
    /// Any-overlap matching (a ground-truth instance is found when a prediction touches it).
    pub any: Summary,
    /// One-to-one greedy matching at IoU >= 0.5.
    pub iou: Summary,
    /// Any-overlap sensitivity on ground-truth instances of at most `small` pixels.
    pub small_sensitivity: f64,
    /// Any-overlap sensitivity on the larger ones.
    pub large_sensitivity: f64,
}

/// Names and values of the figures, in the order of the CSV columns and the table rows.
pub const FIGURES: [&str; 9] = [
    "f1_any",
    "sensitivity_any",
    "precision_any",
    "f1_iou50",
    "sensitivity_iou50",
    "precision_iou50",
    "small_sensitivity",
    "large_sensitivity",
    "dice",
];

impl Evaluation {
    /// The figures named by [`FIGURES`].
    pub fn figures(&self) -> [f64; 9] {
        [
            self.any.pooled_f1,
            self.any.pooled_recall,
            self.any.pooled_precision,
            self.iou.pooled_f1,
            self.iou.pooled_recall,
            self.iou.pooled_precision,
            self.small_sensitivity,
            self.large_sensitivity,
            self.any.mean_dice,
        ]
    }
}

/// Segments `samples` (sigmoid >= 0.5, 8-connected components) and scores them against their
/// ground-truth instances. `small` is the size limit, in pixels, of a "small" instance.
pub fn evaluate(model: &UNet, samples: &[Sample], device: &Device, batch_size: usize, small: u64) -> Evaluation {
    let any = MetricsConfig { matching: Matching::AnyOverlap, ..Default::default() };
    let iou =
        MetricsConfig { matching: Matching::Greedy { score: MatchScore::IoU, threshold: 0.5 }, ..Default::default() };
    let (mut any_cases, mut iou_cases) = (Vec::new(), Vec::new());
    for chunk in samples.chunks(batch_size) {
        for (probabilities, sample) in predict(model, chunk, device).iter().zip(chunk) {
            let gt = instances(sample.target.view());
            let pred = instances(probabilities.mapv(|p| u32::from(p >= 0.5)).view());
            any_cases.push(evaluate_instances(pred.view(), gt.view(), &any).expect("same shapes"));
            iou_cases.push(evaluate_instances(pred.view(), gt.view(), &iou).expect("same shapes"));
        }
    }
    let sensitivity = |keep: &dyn Fn(u64) -> bool| {
        let sizes = any_cases.iter().flat_map(|c: &CaseMetrics| &c.instances).filter(|i| keep(i.size));
        let (found, total) = sizes.fold((0, 0), |(f, t), i| (f + i.matched.is_some() as usize, t + 1));
        if total == 0 { f64::NAN } else { found as f64 / total as f64 }
    };
    Evaluation {
        small_sensitivity: sensitivity(&|size| size <= small),
        large_sensitivity: sensitivity(&|size| size > small),
        any: Summary::new(&any_cases),
        iou: Summary::new(&iou_cases),
    }
}

/// Foreground probabilities of a few same-sized images.
pub fn predict(model: &UNet, samples: &[Sample], device: &Device) -> Vec<Array2<f32>> {
    let (h, w) = samples[0].image.dim();
    let pixels: Vec<f32> = samples.iter().flat_map(|s| s.image.iter().copied()).collect();
    let images = Tensor::<4>::from_data(TensorData::new(pixels, [samples.len(), 1, h, w]), device);
    let probabilities = sigmoid(model.forward(images)).into_data().try_into_vec::<f32>().expect("f32 output");
    probabilities.chunks(h * w).map(|p| Array2::from_shape_vec((h, w), p.to_vec()).expect("h * w values")).collect()
}

/// The 8-connected instances of a binary mask or (multi-label aware, as the batcher labels it) of
/// an instance-id map.
fn instances(target: ArrayView2<'_, u32>) -> Array2<u32> {
    label(target, Connectivity::Eight).expect("2D target").labels
}
