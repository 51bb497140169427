//! One training run: a loss, a seed, random crops of the training volumes, the checkpoint chosen
//! on validation F1.

use std::time::Instant;

use blob_loss::components::{Connectivity, label_batch, voronoi_batch};
use blob_loss::loss::{
    BaseLossConfig, BiccLoss, BiccLossConfig, BlobLoss, BlobLossConfig, LossTargets, Partition, instances_to_tensor,
};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::ProgressBar;
use ndarray::{Array5, Axis, s};

use crate::evaluate::{Evaluation, evaluate};
use crate::lesions::Volume;
use crate::model::UNet3d;
use crate::rng::Rng;

/// The losses compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    /// Global soft Dice alone.
    Dice,
    /// Global soft Dice + BCE.
    DiceBce,
    /// alpha * global soft Dice + beta * blob soft Dice.
    Blob {
        /// The blob term's weight.
        beta: f64,
    },
    /// alpha * global soft Dice + blob loss on Voronoi cells (Dice + BCE per cell; the crate's
    /// CC-style loss before the published ones were ported).
    Cc,
    /// alpha * global soft Dice + BiCC as published (`BiccLossConfig::new()`).
    Bicc,
    /// alpha * global soft Dice + CC-DiceCE as published (`BiccLossConfig::cc_dice_ce()`).
    CcDiceCe,
}

impl LossKind {
    /// A short id, for file names and CSV files.
    pub fn id(self) -> String {
        match self {
            Self::Dice => "dice".into(),
            Self::DiceBce => "dice-bce".into(),
            Self::Blob { beta } => format!("blob-beta{beta}"),
            Self::Cc => "cc".into(),
            Self::Bicc => "bicc".into(),
            Self::CcDiceCe => "cc-dice-ce".into(),
        }
    }

    /// The name in tables and charts.
    pub fn name(self) -> String {
        match self {
            Self::Dice => "soft Dice".into(),
            Self::DiceBce => "Dice + BCE".into(),
            Self::Blob { beta } => format!("blob loss (beta {beta})"),
            Self::Cc => "CC loss".into(),
            Self::Bicc => "BiCC".into(),
            Self::CcDiceCe => "CC-DiceCE".into(),
        }
    }

    /// The loss: soft Dice is the global term of every kind; `alpha` weighs it in blob loss and
    /// the cell losses (the instance term weighs 1, as in the BiCC and Look-Closer trainers).
    pub fn config(self, alpha: f64) -> BlobLossConfig {
        let dice_bce = BaseLossConfig::new().with_bce_weight(1.0);
        match self {
            Self::Dice => BlobLossConfig::new().with_global_weight(1.0).with_blob_weight(0.0),
            Self::DiceBce => {
                BlobLossConfig::new().with_global_weight(1.0).with_blob_weight(0.0).with_global_loss(dice_bce)
            }
            Self::Blob { beta } => BlobLossConfig::new().with_global_weight(alpha).with_blob_weight(beta),
            Self::Cc => BlobLossConfig::new()
                .with_global_weight(alpha)
                .with_blob_weight(1.0)
                .with_partition(Partition::Voronoi)
                .with_blob_loss(dice_bce),
            Self::Bicc | Self::CcDiceCe => BlobLossConfig::new().with_global_weight(alpha).with_blob_weight(0.0),
        }
    }

    /// The published cell loss added to the global term, for BiCC and CC-DiceCE.
    pub fn cell_loss(self) -> Option<BiccLossConfig> {
        match self {
            Self::Bicc => Some(BiccLossConfig::new()),
            Self::CcDiceCe => Some(BiccLossConfig::cc_dice_ce()),
            _ => None,
        }
    }
}

/// How a run trains.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Optimiser steps.
    pub steps: usize,
    /// Validate (and, on a new best, test) every this many steps.
    pub eval_every: usize,
    /// Crops per step.
    pub batch_size: usize,
    /// Side of the cubic training crops.
    pub crop: usize,
    /// Adam's initial learning rate (see [`learning_rate`](Self::learning_rate)).
    pub lr: f64,
    /// The blob and CC losses' global weight.
    pub alpha: f64,
    /// Instance size bins: at most `small`, at most `medium`, larger (voxels).
    pub bins: (u64, u64),
}

impl Schedule {
    /// The learning rate of step `step` (1-based): cosine decay from `lr` to `lr / 50` over the
    /// run, so that the last checkpoints are not a high-rate random walk.
    pub fn learning_rate(&self, step: usize) -> f64 {
        let progress = (step - 1) as f64 / (self.steps - 1).max(1) as f64;
        let floor = self.lr / 50.0;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Training, validation and test volumes of one seed.
pub struct Splits {
    /// Cropped at random for training.
    pub train: Vec<Volume>,
    /// Chooses the checkpoint.
    pub validation: Vec<Volume>,
    /// Measured at the chosen checkpoint.
    pub test: Vec<Volume>,
}

/// The validation figures at one step.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Steps taken.
    pub step: usize,
    /// Seconds since the run started.
    pub seconds: f64,
    /// Mean training loss since the previous checkpoint.
    pub train_loss: f64,
    /// The validation figures.
    pub validation: Evaluation,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Run {
    /// Every validation.
    pub checkpoints: Vec<Checkpoint>,
    /// The step of the checkpoint with the best validation F1 (IoU >= 0.1).
    pub best_step: usize,
    /// The test figures of that checkpoint.
    pub test: Evaluation,
}

/// Trains `model` with `kind` on `splits` and returns its checkpoints and chosen test figures.
pub fn train(
    kind: LossKind,
    seed: u64,
    mut model: UNet3d,
    splits: &Splits,
    schedule: &Schedule,
    device: &Device,
    progress: &[&ProgressBar],
) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let loss = kind.config(schedule.alpha).try_init()?;
    let cell_loss = kind.cell_loss().map(|config| config.try_init()).transpose()?;
    let mut optimizer = AdamConfig::new().init();
    let mut rng = Rng(0x5EED_0000 ^ seed);
    let start = Instant::now();
    let (mut checkpoints, mut best): (Vec<Checkpoint>, Option<(f64, usize, Evaluation)>) = (Vec::new(), None);
    let (mut loss_sum, mut loss_steps) = (0.0, 0);
    for step in 1..=schedule.steps {
        let (images, targets) = crops(&splits.train, schedule.batch_size, schedule.crop, &mut rng, device);
        let value = forward(&loss, cell_loss.as_ref(), kind, model.forward(images), targets, device)?;
        loss_sum += value.clone().into_scalar::<f64>();
        loss_steps += 1;
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optimizer.step(schedule.learning_rate(step), model, grads);
        progress.iter().for_each(|bar| bar.inc(1));
        if step % schedule.eval_every == 0 || step == schedule.steps {
            let inner = device.clone().inner();
            let valid = model.valid();
            let validation = evaluate(&valid, &splits.validation, &inner, schedule.batch_size, schedule.bins);
            let f1 = validation.f1_iou10();
            if best.as_ref().is_none_or(|(b, ..)| f1 > *b) {
                let test = evaluate(&valid, &splits.test, &inner, schedule.batch_size, schedule.bins);
                best = Some((f1, step, test));
            }
            checkpoints.push(Checkpoint {
                step,
                seconds: start.elapsed().as_secs_f64(),
                train_loss: loss_sum / loss_steps as f64,
                validation,
            });
            (loss_sum, loss_steps) = (0.0, 0);
            progress[0].set_message(format!(
                "{} seed {seed}, step {step}: loss {:.3}, validation F1 {:.3}",
                kind.name(),
                checkpoints.last().map_or(0.0, |c| c.train_loss),
                f1
            ));
        }
    }
    let (_, best_step, test) = best.ok_or("no step was taken")?;
    Ok(Run { checkpoints, best_step, test })
}

/// The loss of one batch; the CC loss gets the Voronoi cells of its instances, BiCC and
/// CC-DiceCE their cell loss on the ground-truth mask.
fn forward(
    loss: &BlobLoss,
    cell_loss: Option<&BiccLoss>,
    kind: LossKind,
    logits: Tensor<5>,
    targets: Array5<u32>,
    device: &Device,
) -> Result<Tensor<1>, Box<dyn std::error::Error + Send + Sync>> {
    let labels = label_batch(targets.view(), Connectivity::TwentySix)?.labels;
    let instances = instances_to_tensor(labels.view(), device)?;
    let mut loss_targets = LossTargets::new(instances.clone());
    if kind == LossKind::Cc {
        let cells = voronoi_batch(labels.view(), &[1.0; 3])?;
        loss_targets = loss_targets.with_cells(instances_to_tensor(cells.view(), device)?);
    }
    let value = loss.try_forward(logits.clone(), loss_targets)?;
    Ok(match cell_loss {
        Some(cell_loss) => value + cell_loss.try_forward(logits, instances)?,
        None => value,
    })
}

/// `count` random cubic crops of side `crop` (random volume, position and flips): images
/// `[count, 1, crop, crop, crop]` on `device` and their ground truth.
pub fn crops(
    volumes: &[Volume],
    count: usize,
    crop: usize,
    rng: &mut Rng,
    device: &Device,
) -> (Tensor<5>, Array5<u32>) {
    let mut images = Array5::<f32>::zeros((count, 1, crop, crop, crop));
    let mut targets = Array5::<u32>::zeros((count, 1, crop, crop, crop));
    for b in 0..count {
        let volume = &volumes[rng.below(volumes.len() as u64) as usize];
        let (d, h, w) = volume.image.dim();
        let origin: Vec<usize> = [d, h, w].iter().map(|&n| rng.below((n - crop + 1) as u64) as usize).collect();
        let window = s![origin[0]..origin[0] + crop, origin[1]..origin[1] + crop, origin[2]..origin[2] + crop];
        let (mut image, mut target) = (volume.image.slice(window), volume.target.slice(window));
        for axis in 0..3 {
            if rng.below(2) == 1 {
                image.invert_axis(Axis(axis));
                target.invert_axis(Axis(axis));
            }
        }
        images.slice_mut(s![b, 0, .., .., ..]).assign(&image);
        targets.slice_mut(s![b, 0, .., .., ..]).assign(&target);
    }
    let shape = [count, 1, crop, crop, crop];
    let data = TensorData::new(images.into_raw_vec_and_offset().0, shape);
    (Tensor::from_data(data, device), targets)
}

#[cfg(test)]
mod tests {
    use super::{LossKind, Schedule, crops};
    use crate::lesions::volumes;
    use crate::rng::Rng;

    #[test]
    fn loss_ids_name_their_run_files_apart() {
        let kinds = [
            LossKind::Dice,
            LossKind::DiceBce,
            LossKind::Blob { beta: 0.5 },
            LossKind::Blob { beta: 2.0 },
            LossKind::Cc,
            LossKind::Bicc,
            LossKind::CcDiceCe,
        ];
        let mut ids: Vec<String> = kinds.iter().map(|k| k.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), kinds.len());
        assert_eq!(LossKind::Blob { beta: 0.5 }.id(), "blob-beta0.5");
    }

    #[test]
    fn the_learning_rate_decays_from_lr_to_a_fiftieth() {
        let schedule =
            Schedule { steps: 101, eval_every: 10, batch_size: 1, crop: 8, lr: 1e-2, alpha: 2.0, bins: (1, 2) };
        assert_eq!(schedule.learning_rate(1), 1e-2);
        assert!((schedule.learning_rate(51) - (2e-4 + 1e-2) / 2.0).abs() < 1e-12);
        assert!((schedule.learning_rate(101) - 2e-4).abs() < 1e-12);
        assert!((1..101).all(|s| schedule.learning_rate(s + 1) < schedule.learning_rate(s)));
    }

    #[test]
    fn crops_cut_images_and_targets_alike() {
        // Images equal to their ground truth: a crop's image shows whether the same window and
        // flips cut its target.
        let mut set = volumes(2, 32, 4);
        for volume in &mut set {
            volume.image = volume.target.mapv(|t| t as f32);
        }
        let (images, targets) = crops(&set, 4, 16, &mut Rng(1), &burn::tensor::Device::flex());
        assert_eq!(images.dims(), [4, 1, 16, 16, 16]);
        let values = images.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(values, targets.iter().map(|&t| t as f32).collect::<Vec<_>>());
        assert!(targets.iter().any(|&t| t == 1), "some crop holds a lesion");
    }
}
