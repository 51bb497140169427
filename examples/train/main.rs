//! The main job: train the same small U-Net twice from the same seed, once with global soft Dice
//! alone and once with blob loss (alpha 2, beta 1, soft Dice base), over several seeds, and compare
//! what each finds on held-out images with instance-level metrics.
//!
//! ```text
//! cargo run --release --example train                      # synthetic data, 3 seeds, about 6 min on 2 cores
//! cargo run --release --example train -- --dataset nuclei  # the vendored fluorescence image
//! cargo run --release --example train -- --help            # every knob
//! ```
//!
//! It prints a table (mean +- std over seeds) and writes, under `--out` (default `train-results`):
//! `validation.csv` (per-epoch validation figures), `test.csv` (per-seed test figures) and
//! `validation_f1.svg` (validation F1 at IoU >= 0.5 per epoch, both losses, with the spread over
//! seeds) and `test_example.svg` (one test image: the instances each loss finds and misses, its
//! false positives). See EXPERIMENTS.md for results.

#[path = "../common/backend.rs"]
mod backend;
#[path = "../common/band.rs"]
mod band;
mod data;
mod evaluate;
mod model;
mod nuclei;
mod report;
#[path = "../common/rng.rs"]
mod rng;
mod synthetic;
#[path = "../common/tiff_stack.rs"]
mod tiff_stack;

use std::path::PathBuf;
use std::time::Instant;

use blob_loss::components::{Connectivity, label};
use blob_loss::loss::BlobLossConfig;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use crate::backend::{Backend, autodiff_device};
use crate::data::{Sample, SegmentationBatcher};
use crate::evaluate::{Evaluation, evaluate, predict};
use crate::model::UNet;
use crate::report::{Example, Record, Report, label_sizes};

/// Soft Dice vs blob loss on the same network, data and seeds.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Args {
    /// The data set.
    #[arg(long, value_enum, default_value_t = DatasetKind::Synthetic)]
    dataset: DatasetKind,
    /// Seeds (network initialisation and shuffling); each trains both losses.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Passes over the training images.
    #[arg(long, default_value_t = 24)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Channels of the U-Net's first level (doubled at each of its two levels down).
    #[arg(long, default_value_t = 8)]
    width: usize,
    /// Blob loss: weight of the global soft Dice term (alpha).
    #[arg(long, default_value_t = 2.0)]
    alpha: f64,
    /// Blob loss: weight of the per-instance term (beta).
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Synthetic data: training images (validation and test get a quarter and a half of this).
    #[arg(long, default_value_t = 64)]
    images: usize,
    /// Synthetic data: image side in pixels (a multiple of 4).
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Nuclei data: side of the training crops in pixels (a multiple of 4).
    #[arg(long, default_value_t = 64)]
    crop: usize,
    /// Instances of at most this many pixels count as small in the small/large sensitivities.
    #[arg(long, default_value_t = 40)]
    small: u64,
    /// The burn backend (GPU backends need the crate built with the feature of that name).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Where the CSV files and the chart go.
    #[arg(long, default_value = "train-results")]
    out: PathBuf,
    /// Folder of the nuclei image.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/nuclei"))]
    nuclei_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatasetKind {
    /// Generated images: 1-2 large and 5-30 small, dimmer objects each.
    Synthetic,
    /// The vendored 2018 Data Science Bowl fluorescence image (data/nuclei).
    Nuclei,
}

/// The two losses compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Global soft Dice alone.
    Dice,
    /// alpha * global soft Dice + beta * blob soft Dice.
    Blob,
}

impl LossKind {
    /// The name in tables, CSV files and the chart.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dice => "soft Dice",
            Self::Blob => "blob loss",
        }
    }
}

/// Training, validation and test images.
struct Splits {
    train: Vec<Sample>,
    validation: Vec<Sample>,
    test: Vec<Sample>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    validate(&args)?;
    let device = autodiff_device(args.backend)?;
    let splits = load(&args)?;
    let steps_per_epoch = splits.train.len().div_ceil(args.batch_size);
    println!(
        "{:?}: {} training, {} validation, {} test images; {} seeds x 2 losses x {} epochs of {} steps; {} threads",
        args.dataset,
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
        args.seeds,
        args.epochs,
        steps_per_epoch,
        rayon::current_num_threads()
    );
    let (instances, small, small_share) = imbalance(&splits.test, args.small);
    println!(
        "test set: {instances} instances, {small} of at most {} pixels, holding {:.1}% of the foreground pixels",
        args.small,
        100.0 * small_share
    );
    let total = args.seeds * 2 * (args.epochs * steps_per_epoch) as u64;
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} steps, eta {eta} {msg}")?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let mut report = Report::default();
    // The test image shown per loss: the one with the most small instances.
    let shown = example_image(&splits.test, args.small);
    for seed in 0..args.seeds {
        // One initial network per seed, drawn here and loaded into a fresh network per loss: clones
        // would share their batch-norm running statistics (burn's `RunningState` is shared by
        // clones and averaged over threads), and the two trainings run side by side on threads.
        device.seed(seed);
        let initial = UNet::new(args.width, &device).into_record();
        let runs = std::thread::scope(|scope| {
            let handles = [LossKind::Dice, LossKind::Blob].map(|kind| {
                let model = UNet::new(args.width, &device).load_record(initial.clone());
                let (args, splits, device, progress) = (&args, &splits, &device, &progress);
                scope.spawn(move || {
                    train(args, splits, device, seed, kind, model, progress, shown).map(|run| (kind, run))
                })
            });
            handles.map(|h| h.join().expect("a training thread panicked"))
        });
        for run in runs {
            let (kind, run) = run.map_err(|e| e.to_string())?;
            report.validation.extend(run.records);
            report.test.push((kind, seed, run.test));
            if seed == 0 {
                let target = || splits.test[shown].target.clone();
                let example =
                    report.example.get_or_insert_with(|| Example { target: target(), predictions: Vec::new() });
                example.predictions.push((kind, run.shown));
            }
        }
    }
    progress.finish_and_clear();
    println!("{} runs in {:.1} s\n", 2 * args.seeds, start.elapsed().as_secs_f64());
    report.print_table();
    std::fs::create_dir_all(&args.out)?;
    report.write(&args.out, args.small)?;
    println!(
        "\nwrote {0}/validation.csv, {0}/test.csv, {0}/validation_f1.svg and {0}/test_example.svg",
        args.out.display()
    );
    Ok(())
}

/// Rejects settings that would train nothing or divide by zero.
fn validate(args: &Args) -> Result<(), String> {
    if [args.seeds as usize, args.epochs, args.batch_size, args.images, args.width].contains(&0) {
        return Err("--seeds, --epochs, --batch-size, --images and --width must be at least 1".into());
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(format!("--lr {} must be a positive number", args.lr));
    }
    Ok(())
}

/// Trains `model` with one loss; returns the validation figures after every epoch, the test
/// figures at the end, and the final foreground probabilities of test image `shown`.
#[allow(clippy::too_many_arguments)]
fn train(
    args: &Args,
    splits: &Splits,
    device: &Device,
    seed: u64,
    kind: LossKind,
    mut model: UNet,
    progress: &ProgressBar,
    shown: usize,
) -> Result<Run, Box<dyn std::error::Error + Send + Sync>> {
    let loss = loss_config(args, kind).try_init()?;
    let mut records = Vec::new();
    let mut optimizer = AdamConfig::new().init();
    let loader = DataLoaderBuilder::new(SegmentationBatcher)
        .batch_size(args.batch_size)
        .shuffle(seed)
        .set_device(device.clone())
        .build(InMemDataset::new(splits.train.clone()));
    let start = Instant::now();
    for epoch in 1..=args.epochs {
        let (mut sum, mut steps) = (0.0, 0);
        for batch in loader.iter() {
            let batch = batch?;
            let value = loss.forward(model.forward(batch.images), batch.instances);
            sum += value.clone().into_scalar::<f64>();
            steps += 1;
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optimizer.step(args.lr, model, grads);
            progress.inc(1);
        }
        let validation =
            evaluate(&model.valid(), &splits.validation, &device.clone().inner(), args.batch_size, args.small);
        progress.set_message(format!(
            "seed {seed}, {}, epoch {epoch}: loss {:.3}, validation F1 {:.3} (IoU >= 0.5)",
            kind.name(),
            sum / steps as f64,
            validation.iou.pooled_f1
        ));
        records.push(Record {
            loss: kind,
            seed,
            epoch,
            train_loss: sum / steps as f64,
            seconds: start.elapsed().as_secs_f64(),
            evaluation: validation,
        });
    }
    let model = model.valid();
    let test = evaluate(&model, &splits.test, &device.clone().inner(), args.batch_size, args.small);
    let shown = predict(&model, &splits.test[shown..=shown], &device.clone().inner()).remove(0);
    Ok(Run { records, test, shown })
}

/// What one training run measured.
struct Run {
    /// The validation figures after every epoch.
    records: Vec<Record>,
    /// The test figures at the end.
    test: Evaluation,
    /// The final foreground probabilities of the test image shown in the report.
    shown: Array2<f32>,
}

/// The index of the sample with the most instances of at most `small` pixels.
fn example_image(samples: &[Sample], small: u64) -> usize {
    let small_instances = |sample: &Sample| {
        let sizes = label_sizes(&label(sample.target.view(), Connectivity::Eight).expect("2D").labels);
        sizes.iter().skip(1).filter(|&&s| s <= small).count()
    };
    (0..samples.len()).max_by_key(|&i| (small_instances(&samples[i]), std::cmp::Reverse(i))).unwrap_or(0)
}

/// The instance imbalance of a set: instances, small instances (at most `small` pixels), and the
/// share of the foreground pixels that the small ones hold.
fn imbalance(samples: &[Sample], small: u64) -> (usize, usize, f64) {
    let (mut count, mut small_count, mut small_pixels, mut pixels) = (0, 0, 0, 0);
    for sample in samples {
        let sizes = label_sizes(&label(sample.target.view(), Connectivity::Eight).expect("2D target").labels);
        for &size in &sizes[1..] {
            count += 1;
            pixels += size;
            if size <= small {
                small_count += 1;
                small_pixels += size;
            }
        }
    }
    (count, small_count, small_pixels as f64 / pixels.max(1) as f64)
}

/// Soft Dice alone, or blob loss with `--alpha`/`--beta`; soft Dice is the base of both terms.
fn loss_config(args: &Args, kind: LossKind) -> BlobLossConfig {
    match kind {
        LossKind::Dice => BlobLossConfig::new().with_global_weight(1.0).with_blob_weight(0.0),
        LossKind::Blob => BlobLossConfig::new().with_global_weight(args.alpha).with_blob_weight(args.beta),
    }
}

fn load(args: &Args) -> Result<Splits, Box<dyn std::error::Error>> {
    Ok(match args.dataset {
        DatasetKind::Synthetic => {
            if !args.size.is_multiple_of(4) || args.size < 32 {
                return Err(format!("--size {} must be a multiple of 4, at least 32", args.size).into());
            }
            Splits {
                train: synthetic::images(args.images, args.size, 1),
                validation: synthetic::images(args.images.div_ceil(4), args.size, 2),
                test: synthetic::images(args.images.div_ceil(2), args.size, 3),
            }
        }
        DatasetKind::Nuclei => {
            if !args.crop.is_multiple_of(4) || args.crop < 16 {
                return Err(format!("--crop {} must be a multiple of 4, at least 16", args.crop).into());
            }
            let split = nuclei::load(&args.nuclei_dir, args.crop)?;
            Splits { train: split.train, validation: split.validation, test: split.test }
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, validate};

    #[test]
    fn settings_that_train_nothing_are_refused() {
        let parse = |flags: &[&str]| validate(&Args::try_parse_from([&["train"], flags].concat()).unwrap());
        assert_eq!(parse(&[]), Ok(()));
        for flag in ["--seeds", "--epochs", "--batch-size", "--images", "--width"] {
            assert!(parse(&[flag, "0"]).unwrap_err().contains("at least 1"), "{flag} 0");
        }
        assert!(parse(&["--lr", "0"]).unwrap_err().contains("positive"));
        assert!(parse(&["--lr=-1e-3"]).unwrap_err().contains("positive"));
    }
}
