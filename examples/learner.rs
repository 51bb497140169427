//! Blob loss inside burn-train's `Learner`: the batcher labels the ground truth, `TrainStep::step`
//! computes the loss. This is the code of the guide's "Use it in your training loop"
//! (`docs/guide.md`), compiled and run.
//!
//! ```text
//! cargo run --release --example learner --features learner [-- EPOCHS] [--devices N] [--patience P]
//! ```
//!
//! It trains the small U-Net of `examples/train` on synthetic images for `EPOCHS` (default 2)
//! epochs, with burn-train's loss metric and the crate's instance metrics
//! (`blob_loss::metrics::{InstanceMetric, CcDiceMetric}`: instance F1, sensitivity and precision
//! with any-overlap matching, and CC-Dice, each pooled over the epoch) on the training and
//! validation sets: burn-train's terminal dashboard shows them live when stdout is a terminal (the
//! dev-dependency on burn brings its `tui` feature; piped, as in CI, burn-train prints progress
//! lines instead), the training summary printed at the end lists every epoch's values, and its logs under
//! `target/learner-example` hold them. burn-train keeps the checkpoint of the epoch with the best
//! validation instance F1 (`MetricCheckpointingStrategy`) and stops when it has not improved for
//! `--patience` epochs (`MetricEarlyStoppingStrategy`); the example then loads that checkpoint
//! and prints its validation instance figures, scored as `examples/train` scores them: its
//! `f1_any` is the figure it was chosen by (the same cases, pooled the same way; the network's
//! outputs may differ in the last bits from batch to batch).
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

use std::path::Path;

use blob_loss::loss::{BlobLoss, BlobLossConfig};
use blob_loss::metrics::{CcDiceMetric, InstanceMetric, InstanceMetricInput, Matching};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::tensor::ExecutionError;
use burn::tensor::{Device, Int, Tensor};
use burn::train::checkpoint::MetricCheckpointingStrategy;
use burn::train::metric::store::{Aggregate, Direction, Split};
use burn::train::metric::{Adaptor, LossInput, LossMetric};
use burn::train::{
    ExecutionStrategy, InferenceStep, ItemLazy, Learner, MetricEarlyStoppingStrategy, MultiDeviceOptim,
    StoppingCondition, SupervisedTraining, TrainOutput, TrainStep,
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

/// What a step hands to burn-train's metrics: the loss, and for the instance metrics the logits
/// and the ground-truth instances.
struct SegmentationOutput {
    loss: Tensor<1>,
    /// The network's logits, `[B, 1, H, W]`.
    logits: Tensor<4>,
    /// The batch's instance map, `[B, 1, H, W]`.
    instances: Tensor<4, Int>,
}

impl Segmenter {
    /// The loss of a batch, with what the metrics need.
    fn output(&self, batch: SegmentationBatch) -> SegmentationOutput {
        let logits = self.net.forward(batch.images);
        let loss = self.loss.forward(logits.clone(), batch.instances.clone());
        // Detached: the metrics read the logits and must not hold on to the autodiff graph.
        SegmentationOutput { loss, logits: logits.detach(), instances: batch.instances }
    }
}

impl TrainStep for Segmenter {
    type Input = SegmentationBatch;
    type Output = SegmentationOutput;

    fn step(&self, batch: SegmentationBatch) -> TrainOutput<SegmentationOutput> {
        let output = self.output(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Segmenter {
    type Input = SegmentationBatch;
    type Output = SegmentationOutput;

    fn step(&self, batch: SegmentationBatch) -> SegmentationOutput {
        self.output(batch)
    }
}

impl Adaptor<LossInput> for SegmentationOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// The input of the crate's instance metrics: the foreground probability is the sigmoid of the
/// logits, as in `examples/train`'s evaluation.
impl Adaptor<InstanceMetricInput> for SegmentationOutput {
    fn adapt(&self) -> InstanceMetricInput {
        InstanceMetricInput::from_logits(self.logits.clone(), self.instances.clone())
    }
}

impl ItemLazy for SegmentationOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(Self {
            loss: self.loss.without_autodiff(),
            logits: self.logits.without_autodiff(),
            instances: self.instances.without_autodiff(),
        })
    }
}

/// Where burn-train writes its logs and checkpoints.
const DIRECTORY: &str = "target/learner-example";

/// The epoch of the checkpoint burn-train kept: `MetricCheckpointingStrategy` leaves one,
/// `<DIRECTORY>/checkpoint/model-<epoch>.bpk` (burn-train's `FileCheckpointer` naming).
fn kept_epoch(checkpoints: &Path) -> Option<usize> {
    std::fs::read_dir(checkpoints)
        .ok()?
        .filter_map(|entry| {
            entry.ok()?.file_name().to_str()?.strip_prefix("model-")?.strip_suffix(".bpk")?.parse().ok()
        })
        .max()
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
    /// Stop when the validation instance F1 has not improved for this many epochs.
    #[arg(long, default_value_t = 3)]
    patience: usize,
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
    // burn-train's metric checkpointing and early stopping compare every epoch directory they
    // find: start clean, so that the epochs of an earlier, longer run take no part.
    if Path::new(DIRECTORY).exists() {
        std::fs::remove_dir_all(DIRECTORY).expect("the example's own log directory can be removed");
    }
    // The instance figures, each pooled over the epoch (the epoch value is the ratio of the
    // epoch's summed counts), with any-overlap matching as `examples/train`'s `*_any` figures.
    let f1 = InstanceMetric::f1().with_matching(Matching::AnyOverlap);
    let sensitivity = InstanceMetric::sensitivity().with_matching(Matching::AnyOverlap);
    let precision = InstanceMetric::precision().with_matching(Matching::AnyOverlap);
    // Keep the checkpoint of the epoch with the best validation instance F1 ...
    let best_f1 = MetricCheckpointingStrategy::new(&f1, Aggregate::Mean, Direction::Highest, Split::Valid);
    // ... and stop when it has not improved for `patience` epochs.
    let early_stopping = MetricEarlyStoppingStrategy::new(
        &f1,
        Aggregate::Mean,
        Direction::Highest,
        Split::Valid,
        StoppingCondition::NoImprovementSince { n_epochs: args.patience },
    );
    // One device: burn-train's single-device strategy; several: its multi-device one, the
    // gradients summed on the main device, where the optimiser steps.
    let strategy = ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice);
    let result =
        SupervisedTraining::new(DIRECTORY, loader(train, &device), loader(valid.clone(), &device.clone().inner()))
            .with_training_strategy(strategy.into())
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new())
            // Training and validation, in the dashboard's tabs and the summary.
            .metrics((f1, sensitivity, precision, CcDiceMetric::new()))
            .with_default_checkpointers()
            .with_checkpointing_strategy(best_f1)
            .early_stopping(early_stopping)
            .num_epochs(epochs)
            .summary()
            .launch(Learner::new(model, AdamConfig::new().init(), 2e-3));

    // The kept checkpoint: the network of the best epoch, not the last.
    let checkpoints = Path::new(DIRECTORY).join("checkpoint");
    let best = kept_epoch(&checkpoints).expect("burn-train kept the best epoch's checkpoint");
    let model = result.model.load_file(checkpoints.join(format!("model-{best}.bpk")));
    // The figures blob loss is for, on the validation images, scored as `examples/train` scores them.
    let evaluation = evaluate(&model.net, &valid, &device.inner(), 8, 40);
    println!(
        "best validation instance F1 at epoch {best} of {epochs}, on {} device(s); its validation figures:",
        args.devices
    );
    for (name, value) in FIGURES.iter().zip(evaluation.figures()) {
        println!("  {name:<18} {value:.3}");
    }
}
