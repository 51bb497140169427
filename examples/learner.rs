//! Blob loss inside burn-train's `Learner`: the batcher labels the ground truth, `TrainStep::step`
//! computes the loss. This is the code of README's "Use it in your training loop", compiled and run.
//!
//! ```text
//! cargo run --release --example learner --features learner [-- EPOCHS]
//! ```
//!
//! It trains the small U-Net of `examples/train` on synthetic images for `EPOCHS` (default 2)
//! epochs, with burn-train's loss metric on the training and validation sets, logs under
//! `target/learner-example`, and prints the validation instance figures of the trained network.

#[path = "train/data.rs"]
mod data;
#[path = "train/evaluate.rs"]
mod evaluate;
#[path = "train/model.rs"]
mod model;
#[path = "common/rng.rs"]
mod rng;
#[path = "train/synthetic.rs"]
mod synthetic;

use blob_loss::loss::{BlobLoss, BlobLossConfig};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::tensor::ExecutionError;
use burn::tensor::{Device, Tensor};
use burn::train::metric::{Adaptor, LossInput, LossMetric};
use burn::train::{InferenceStep, ItemLazy, Learner, SupervisedTraining, TrainOutput, TrainStep};

use crate::data::{SegmentationBatch, SegmentationBatcher};
use crate::evaluate::{FIGURES, evaluate};
use crate::model::UNet;

/// The network and its loss: `BlobLoss` is a stateless burn `Module`.
#[derive(Module, Debug)]
struct Segmenter {
    net: UNet,
    loss: BlobLoss,
}

/// What a step hands to burn-train's metrics: the loss.
struct SegmentationOutput {
    loss: Tensor<1>,
}

impl TrainStep for Segmenter {
    type Input = SegmentationBatch;
    type Output = SegmentationOutput;

    fn step(&self, batch: SegmentationBatch) -> TrainOutput<SegmentationOutput> {
        let loss = self.loss.forward(self.net.forward(batch.images), batch.instances);
        TrainOutput::new(self, loss.backward(), SegmentationOutput { loss })
    }
}

impl InferenceStep for Segmenter {
    type Input = SegmentationBatch;
    type Output = SegmentationOutput;

    fn step(&self, batch: SegmentationBatch) -> SegmentationOutput {
        SegmentationOutput { loss: self.loss.forward(self.net.forward(batch.images), batch.instances) }
    }
}

impl Adaptor<LossInput> for SegmentationOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl ItemLazy for SegmentationOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(Self { loss: self.loss.without_autodiff() })
    }
}

fn main() {
    let epochs = std::env::args().nth(1).map_or(2, |a| a.parse().expect("usage: learner [EPOCHS]"));
    let device = Device::flex().autodiff();
    device.seed(0);
    let (train, valid) = (synthetic::images(64, 64, 1), synthetic::images(16, 64, 2));
    let loader = |samples, device: &Device| {
        DataLoaderBuilder::new(SegmentationBatcher)
            .batch_size(8)
            .shuffle(0)
            .set_device(device.clone())
            .build(InMemDataset::new(samples))
    };
    let model = Segmenter { net: UNet::new(8, &device), loss: BlobLossConfig::new().init() };
    let result = SupervisedTraining::new(
        "target/learner-example",
        loader(train, &device),
        loader(valid.clone(), &device.clone().inner()),
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .num_epochs(epochs)
    .summary()
    .launch(Learner::new(model, AdamConfig::new().init(), 2e-3));

    // The figures blob loss is for, on the validation images, scored as `examples/train` scores them.
    let evaluation = evaluate(&result.model.net, &valid, &device.inner(), 8, 40);
    println!("after {epochs} epochs, validation:");
    for (name, value) in FIGURES.iter().zip(evaluation.figures()) {
        println!("  {name:<18} {value:.3}");
    }
}
