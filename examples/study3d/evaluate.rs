//! Instance-level evaluation of a trained network on whole volumes.

use blob_loss::components::{Connectivity, label};
use blob_loss::metrics::{CaseMetrics, MatchScore, Matching, MetricsConfig, Summary, evaluate_instances};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, ArrayView3};

use crate::lesions::Volume;
use crate::model::UNet3d;

/// Names of the figures, in the order of [`Evaluation::figures`] and the CSV columns.
pub const FIGURES: [&str; 14] = [
    "f1_any",
    "sensitivity_any",
    "precision_any",
    "f1_iou10",
    "sensitivity_iou10",
    "precision_iou10",
    "f1_iou50",
    "sensitivity_iou50",
    "precision_iou50",
    "sensitivity_small",
    "sensitivity_medium",
    "sensitivity_large",
    "false_positives_per_volume",
    "dice",
];

/// The figures of one network on a set of volumes; instance figures pooled over all instances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The values named by [`FIGURES`].
    pub values: [f64; 14],
}

impl Evaluation {
    /// F1 of one-to-one matching at IoU >= 0.1: the checkpoint criterion (any-overlap F1 would
    /// reward one component covering everything).
    pub fn f1_iou10(&self) -> f64 {
        self.values[3]
    }
}

/// Segments `volumes` (sigmoid >= 0.5, 26-connected components) and scores them against their
/// ground-truth instances. `bins` are the upper sizes (voxels) of the small and medium bins.
pub fn evaluate(
    model: &UNet3d,
    volumes: &[Volume],
    device: &Device,
    batch_size: usize,
    bins: (u64, u64),
) -> Evaluation {
    let probabilities: Vec<Array3<f32>> =
        volumes.chunks(batch_size).flat_map(|chunk| predict(model, chunk, device)).collect();
    score(&probabilities, volumes, bins)
}

/// The figures of foreground probabilities (one map per volume) against the volumes' ground truth.
pub fn score(probabilities: &[Array3<f32>], volumes: &[Volume], bins: (u64, u64)) -> Evaluation {
    let config = |matching| MetricsConfig { matching, ..Default::default() };
    let greedy = |threshold| config(Matching::Greedy { score: MatchScore::IoU, threshold });
    let configs = [config(Matching::AnyOverlap), greedy(0.1), greedy(0.5)];
    let mut cases: [Vec<CaseMetrics>; 3] = Default::default();
    for (probabilities, volume) in probabilities.iter().zip(volumes) {
        let truth = instances(volume.target.view());
        let predicted = instances(probabilities.mapv(|p| u32::from(p >= 0.5)).view());
        for (cases, config) in cases.iter_mut().zip(&configs) {
            cases.push(evaluate_instances(predicted.view(), truth.view(), config).expect("same shapes"));
        }
    }
    let sensitivity = |keep: &dyn Fn(u64) -> bool| {
        let found: Vec<bool> =
            cases[0].iter().flat_map(|c| &c.instances).filter(|i| keep(i.size)).map(|i| i.matched.is_some()).collect();
        found.iter().filter(|&&f| f).count() as f64 / found.len() as f64
    };
    let [any, iou10, iou50] = cases.each_ref().map(|c| Summary::new(c));
    let false_positives = any.false_positives as f64 / volumes.len() as f64;
    Evaluation {
        values: [
            any.pooled_f1,
            any.pooled_recall,
            any.pooled_precision,
            iou10.pooled_f1,
            iou10.pooled_recall,
            iou10.pooled_precision,
            iou50.pooled_f1,
            iou50.pooled_recall,
            iou50.pooled_precision,
            sensitivity(&|size| size <= bins.0),
            sensitivity(&|size| size > bins.0 && size <= bins.1),
            sensitivity(&|size| size > bins.1),
            false_positives,
            any.mean_dice,
        ],
    }
}

/// Foreground probabilities of a few same-shaped volumes.
pub fn predict(model: &UNet3d, volumes: &[Volume], device: &Device) -> Vec<Array3<f32>> {
    let (d, h, w) = volumes[0].image.dim();
    let voxels: Vec<f32> = volumes.iter().flat_map(|v| v.image.iter().copied()).collect();
    let input = Tensor::<5>::from_data(TensorData::new(voxels, [volumes.len(), 1, d, h, w]), device);
    let probabilities = sigmoid(model.forward(input)).into_data().try_to_vec::<f32>().expect("f32 output");
    probabilities.chunks(d * h * w).map(|p| Array3::from_shape_vec((d, h, w), p.to_vec()).expect("d * h * w")).collect()
}

/// The 26-connected instances of a binary mask, or (multi-label aware) of an instance-id map.
fn instances(target: ArrayView3<'_, u32>) -> Array3<u32> {
    label(target, Connectivity::TwentySix).expect("3D target").labels
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, s};

    use super::{FIGURES, score};
    use crate::lesions::Volume;

    fn figure(values: &[f64; 14], name: &str) -> f64 {
        values[FIGURES.iter().position(|f| *f == name).unwrap()]
    }

    #[test]
    fn figures_of_perfect_partial_and_spurious_predictions() {
        // Lesions of 1, 27 and 343 voxels: one per size bin.
        let mut target = Array3::<u32>::zeros((16, 16, 16));
        target[[1, 1, 1]] = 1;
        target.slice_mut(s![4..7, 4..7, 4..7]).fill(1);
        target.slice_mut(s![8..15, 8..15, 8..15]).fill(1);
        let volume = Volume { image: Array3::zeros((16, 16, 16)), target: target.clone() };
        let perfect = score(&[target.mapv(|t| t as f32)], std::slice::from_ref(&volume), (10, 100)).values;
        for name in ["f1_any", "f1_iou10", "f1_iou50", "sensitivity_small", "sensitivity_large", "dice"] {
            assert_eq!(figure(&perfect, name), 1.0, "{name}");
        }
        assert_eq!(figure(&perfect, "false_positives_per_volume"), 0.0);
        // The small lesion missed, the large one found, a false positive far from both.
        let mut prediction = target.mapv(|t| t as f32);
        prediction[[1, 1, 1]] = 0.0;
        prediction[[14, 1, 1]] = 0.9;
        let partial = score(&[prediction], &[volume], (10, 100)).values;
        assert_eq!(figure(&partial, "sensitivity_small"), 0.0);
        assert_eq!(figure(&partial, "sensitivity_medium"), 1.0);
        assert_eq!(figure(&partial, "sensitivity_any"), 2.0 / 3.0);
        assert_eq!(figure(&partial, "precision_any"), 2.0 / 3.0);
        assert_eq!(figure(&partial, "false_positives_per_volume"), 1.0);
    }
}
