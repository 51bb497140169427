//! Samples, and the burn `Batcher` that turns ground-truth maps into instance maps.

use blob_loss::components::{Connectivity, label_batch};
use blob_loss::loss::instances_to_tensor;
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{Array2, Array4, Axis};

/// One training, validation or test image.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The image, normalised.
    pub image: Array2<f32>,
    /// The ground truth: a binary mask (synthetic) or an instance-id map (nuclei). Either way the
    /// batcher labels it multi-label aware, so touching objects with different ids stay apart.
    pub target: Array2<u32>,
}

/// A batch: images `[B, 1, H, W]` and their ground-truth instances `[B, 1, H, W]`.
#[derive(Clone, Debug)]
pub struct SegmentationBatch {
    /// The images.
    pub images: Tensor<4>,
    /// Instance ids, 0 for background, 1..=K per image.
    pub instances: Tensor<4, Int>,
}

/// Stacks samples and labels their ground truth into instances with
/// [`label_batch`] (8-connectivity), every batch, in the data loader's worker.
#[derive(Clone, Debug)]
pub struct SegmentationBatcher;

impl Batcher<Sample, SegmentationBatch> for SegmentationBatcher {
    fn batch(&self, items: Vec<Sample>, device: &Device) -> SegmentationBatch {
        let (h, w) = items[0].image.dim();
        let images: Vec<f32> = items.iter().flat_map(|s| s.image.iter().copied()).collect();
        let images = Tensor::from_data(TensorData::new(images, [items.len(), 1, h, w]), device);
        let mut targets = Array4::<u32>::zeros((items.len(), 1, h, w));
        for (mut slot, sample) in targets.outer_iter_mut().zip(&items) {
            slot.index_axis_mut(Axis(0), 0).assign(&sample.target);
        }
        let labels = label_batch(targets.view(), Connectivity::Eight).expect("[B, 1, H, W] targets, 2D connectivity");
        let instances = instances_to_tensor(labels.labels.view(), device).expect("ids fit in i32");
        SegmentationBatch { images, instances }
    }
}

#[cfg(test)]
mod tests {
    use burn::data::dataloader::batcher::Batcher;
    use burn::tensor::{Device, Int, Tensor};
    use ndarray::{Array2, array};

    use super::{Sample, SegmentationBatcher};

    #[test]
    fn the_batcher_labels_masks_and_keeps_touching_ids_apart() {
        let mask = Sample { image: Array2::zeros((2, 4)), target: array![[1, 0, 0, 1], [1, 0, 1, 1]] };
        let ids = Sample { image: Array2::ones((2, 4)), target: array![[7, 7, 9, 9], [0, 0, 0, 9]] };
        let batch = SegmentationBatcher.batch(vec![mask, ids], &Device::flex());
        assert_eq!(batch.images.dims(), [2, 1, 2, 4]);
        let instances: Tensor<4, Int> = batch.instances;
        let values: Vec<i64> = instances.into_data().convert::<i64>().try_to_vec().unwrap();
        assert_eq!(values, vec![1, 0, 0, 2, 1, 0, 2, 2, 1, 1, 2, 2, 0, 0, 0, 2]);
    }
}
