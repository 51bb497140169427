//! Blob loss inside burn-train's `Learner`: the batcher labels the ground truth, `TrainStep::step`
//! computes the loss. This is the code of README's "Use it in your training loop", compiled and run.
//!
//! ```text
//! cargo run --release --example learner --features learner [-- EPOCHS] [--devices N]
//! ```
//!
//! It trains the small U-Net of `examples/train` on synthetic images for `EPOCHS` (default 2)
//! epochs, with burn-train's loss metric on the training and validation sets, logs under
//! `target/learner-example`, and prints the validation instance figures of the trained network.
//!
//! `--devices N` trains data-parallel with burn-train's multi-device strategy
//! (`ExecutionStrategy::multi`): on N GPUs with the crate feature `cuda` (or `wgpu`), else on N
//! workers sharing burn's one CPU device. burn-train gives each device its own slice of the
//! training set, runs the loss per device (a mean over that device's batch) and **sums** the
//! devices' gradients before one optimiser step. With Adam, as here, the sum of N mean gradients
//! takes the same step as their mean (Adam divides by the gradients' running scale), so the
//! learning rate stays; with SGD, divide it by N. Each optimiser step then sees N batches, and an
//! epoch has about 1/N of the steps. Batch norm statistics are per device.

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
use burn::train::{
    ExecutionStrategy, InferenceStep, ItemLazy, Learner, MultiDeviceOptim, SupervisedTraining, TrainOutput, TrainStep,
};
use clap::Parser;

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

/// Blob loss with burn-train's `Learner`.
#[derive(Parser)]
struct Args {
    /// Training epochs.
    #[arg(default_value_t = 2)]
    epochs: usize,
    /// Devices to train on, data-parallel: GPUs 0..N with the `cuda` or `wgpu` feature, else N
    /// workers on the CPU.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    devices: u16,
}

/// `n` training devices: GPUs 0..n with `cuda` (else `wgpu` discrete GPUs), else `n` handles of
/// burn's one CPU device (flex), each driven by its own burn-train worker.
fn training_devices(n: usize) -> Vec<Device> {
    #[cfg(feature = "cuda")]
    let devices: Vec<Device> = (0..n).map(Device::cuda).collect();
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    let devices: Vec<Device> = (0..n).map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))).collect();
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let devices: Vec<Device> = vec![Device::flex(); n];
    devices.into_iter().map(Device::autodiff).collect()
}

fn main() {
    let args = Args::parse();
    let epochs = args.epochs;
    let devices = training_devices(usize::from(args.devices));
    // The main device: the model starts, is validated and evaluated there.
    let device = devices[0].clone();
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
    // One device: burn-train's single-device strategy; several: its multi-device one, the
    // gradients summed on the main device, where the optimiser steps.
    let strategy = ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice);
    let result = SupervisedTraining::new(
        "target/learner-example",
        loader(train, &device),
        loader(valid.clone(), &device.clone().inner()),
    )
    .with_training_strategy(strategy.into())
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .num_epochs(epochs)
    .summary()
    .launch(Learner::new(model, AdamConfig::new().init(), 2e-3));

    // The figures blob loss is for, on the validation images, scored as `examples/train` scores them.
    let evaluation = evaluate(&result.model.net, &valid, &device.inner(), 8, 40);
    println!("after {epochs} epochs on {} device(s), validation:", args.devices);
    for (name, value) in FIGURES.iter().zip(evaluation.figures()) {
        println!("  {name:<18} {value:.3}");
    }
}
