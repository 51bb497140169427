//! The 3D study: the same small 3D U-Net trained with soft Dice, Dice + BCE, blob loss and the CC
//! loss, over many seeds, on MS-lesion-like volumes; test figures at the checkpoint of best
//! validation F1; paired differences to soft Dice with bootstrap intervals and Wilcoxon p-values.
//!
//! ```text
//! cargo run --release --example study3d                        # the study: 10 seeds, 4 losses, beta sweep
//! cargo run --release --example study3d -- --seeds 1 --steps 40 --sweep-seeds 0   # a smoke run
//! cargo run --release --example study3d -- --dataset nuclei3d  # stardist's 3D nuclei stack
//! ```
//!
//! Every run writes `runs/<loss>_seed<k>.csv` under `--out` as it ends; a study started again
//! skips the runs already there, so it resumes after a stop and splits across machines by seed
//! (`--first-seed`, `--seeds`; copy the `runs` folders together and run `--report-only`). The
//! report prints the tables and writes `test.csv`, `validation.csv`, `comparisons.csv`,
//! `validation_f1.svg` and `sensitivity_by_size.svg`. See EXPERIMENTS.md for results.

#[path = "../common/backend.rs"]
mod backend;
#[path = "../common/band.rs"]
mod band;
mod evaluate;
mod lesions;
mod model;
mod nuclei;
mod report;
#[path = "../common/rng.rs"]
mod rng;
mod stats;
#[path = "../common/tiff_stack.rs"]
mod tiff_stack;
mod train;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use blob_loss::components::{Connectivity, label};
use burn::module::Module;
use clap::{Parser, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::backend::{Backend, autodiff_device};
use crate::lesions::{statistics, volumes};
use crate::model::UNet3d;
use crate::report::{Report, read_run, run_path, write_run};
use crate::train::{LossKind, Schedule, Splits, train};

/// Soft Dice, Dice + BCE, blob loss and CC loss on the same 3D network, data and seeds.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Args {
    /// The data set.
    #[arg(long, value_enum, default_value_t = DatasetKind::Lesions)]
    dataset: DatasetKind,
    /// Seeds (network initialisation, data and crops); each trains every loss.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first seed (split a study across machines by seed).
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// The losses of the main comparison (soft Dice is always the baseline).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Loss::DiceBce, Loss::Blob, Loss::Cc])]
    losses: Vec<Loss>,
    /// Blob loss's beta in the main comparison.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// The beta sweep: blob loss with these betas too, on the first `--sweep-seeds` seeds.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 2.0, 4.0])]
    sweep_betas: Vec<f64>,
    /// The beta sweep runs on seeds `0..sweep_seeds` (0: no sweep).
    #[arg(long, default_value_t = 5)]
    sweep_seeds: u64,
    /// Blob and CC loss: weight of the global soft Dice term (alpha).
    #[arg(long, default_value_t = 2.0)]
    alpha: f64,
    /// Optimiser steps per run.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Validate every this many steps (the checkpoint is chosen among these).
    #[arg(long, default_value_t = 30)]
    eval_every: usize,
    /// Crops per step.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Side of the cubic training crops (a multiple of 4).
    #[arg(long, default_value_t = 32)]
    crop: usize,
    /// Adam's initial learning rate (cosine decay to a fiftieth of it over the run).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Channels of the U-Net's first level (doubled at each of its two levels down).
    #[arg(long, default_value_t = 4)]
    width: usize,
    /// Lesions: side of the volumes (a multiple of 4).
    #[arg(long, default_value_t = 48)]
    size: usize,
    /// Lesions: training volumes per seed (validation and test volumes: `--held-out` each).
    #[arg(long, default_value_t = 24)]
    train_volumes: usize,
    /// Lesions: validation volumes per seed (and test volumes, without `--test-volumes`).
    #[arg(long, default_value_t = 8)]
    held_out: usize,
    /// Lesions: test volumes per seed (default: `--held-out`). Test volumes cost evaluation
    /// only, so a larger test set measures small lesions better without more training.
    #[arg(long)]
    test_volumes: Option<usize>,
    /// Upper sizes (voxels) of the small and medium lesion bins of the sensitivities.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100])]
    bins: Vec<u64>,
    /// The burn backend (GPU backends need the crate built with the feature of that name).
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Runs trained side by side, each on one core (the figures do not depend on it).
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    jobs: usize,
    /// Where the run files, CSV files and charts go.
    #[arg(long, default_value = "study3d-results")]
    out: PathBuf,
    /// Train nothing: report the runs already under `--out`.
    #[arg(long)]
    report_only: bool,
    /// Folder of the 3D nuclei stack.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/nuclei3d"))]
    nuclei_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatasetKind {
    /// Generated MS-lesion-like volumes (see `lesions.rs` for the recipe).
    Lesions,
    /// stardist's annotated 3D nuclei stack (data/nuclei3d).
    Nuclei3d,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Loss {
    /// Global soft Dice + BCE.
    DiceBce,
    /// Blob loss (alpha * soft Dice + beta * blob soft Dice).
    Blob,
    /// The CC loss (alpha * soft Dice + Dice + BCE per Voronoi cell).
    Cc,
    /// BiCC as published (alpha * soft Dice + BiCC).
    Bicc,
    /// CC-DiceCE as published (alpha * soft Dice + CC-DiceCE).
    CcDiceCe,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    validate(&args)?;
    let schedule = Schedule {
        steps: args.steps,
        eval_every: args.eval_every,
        batch_size: args.batch_size,
        crop: args.crop,
        lr: args.lr,
        alpha: args.alpha,
        bins: (args.bins[0], args.bins[1]),
    };
    let planned = planned_runs(&args);
    let done = planned.iter().filter(|&&(seed, kind)| run_path(&args.out, kind, seed).exists()).count();
    let pending: Vec<(u64, LossKind)> = match args.report_only {
        true => Vec::new(),
        false => planned.into_iter().filter(|&(seed, kind)| !run_path(&args.out, kind, seed).exists()).collect(),
    };
    match args.dataset {
        DatasetKind::Lesions => describe_test_sets(&args),
        DatasetKind::Nuclei3d => describe_nuclei(&load(&args, 0)?),
    }
    println!(
        "{} runs to train, {done} found under {}; {} steps each, {} at a time",
        pending.len(),
        args.out.display(),
        args.steps,
        args.jobs
    );
    if !pending.is_empty() {
        record_provenance(&args.out)?;
        let start = Instant::now();
        train_all(&args, &schedule, &pending)?;
        println!("{} runs in {:.1} min\n", pending.len(), start.elapsed().as_secs_f64() / 60.0);
    }
    let mut runs = Vec::new();
    for (seed, kind) in planned_runs(&args) {
        let path = run_path(&args.out, kind, seed);
        if path.exists() {
            runs.push((kind, seed, read_run(&path)?));
        }
    }
    if runs.is_empty() {
        println!("no finished run under {}: nothing to report", args.out.display());
        return Ok(());
    }
    let report = Report { runs, baseline: LossKind::Dice };
    report.print();
    report.print_preregistered();
    std::fs::create_dir_all(&args.out)?;
    report.write(&args.out, (args.bins[0], args.bins[1]))?;
    println!(
        "\nwrote {0}/test.csv, validation.csv, comparisons.csv, preregistered.csv, validation_f1.svg and \
         sensitivity_by_size.svg",
        args.out.display()
    );
    Ok(())
}

/// Appends to `out/PROVENANCE` the line of this invocation: when, which commit (and whether the
/// working tree differed from it), and the command; the run files it writes come from that code.
fn record_provenance(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let git = |args: &[&str]| -> Option<String> {
        let output =
            std::process::Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown (not a git checkout)".into());
    let dirty = match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => "clean",
        Some(_) => "with uncommitted changes",
        None => "unknown",
    };
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let command: Vec<String> = std::env::args().collect();
    std::fs::create_dir_all(out)?;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(out.join("PROVENANCE"))?;
    use std::io::Write as _;
    writeln!(file, "unix time {seconds}: commit {commit} ({dirty}): {}", command.join(" "))?;
    Ok(())
}

/// Trains the `pending` runs, `--jobs` at a time, and writes each one's file as it ends; a bar
/// per run and one for them all.
fn train_all(args: &Args, schedule: &Schedule, pending: &[(u64, LossKind)]) -> Result<(), Box<dyn std::error::Error>> {
    let device = autodiff_device(args.backend)?;
    let bars = MultiProgress::new();
    let style = |template: &str| ProgressStyle::with_template(template).map(|s| s.progress_chars("=> "));
    let overall = bars.add(ProgressBar::new((pending.len() * args.steps) as u64));
    overall.set_style(style("{elapsed_precise} [{wide_bar}] {pos}/{len} steps, all runs, eta {eta}")?);
    // `--jobs` workers take the pending runs in order.
    let queue = Mutex::new(pending.iter());
    let draw = Mutex::new(());
    let worker = || -> Result<(), String> {
        // Each worker computes on its own one-thread rayon pool: rayon splits a reduction by
        // timing when several threads share a pool, so floats would sum in another order from
        // run to run (and training amplifies the last bit). One thread per run keeps every run
        // bit-reproducible whatever `--jobs` is.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| e.to_string())?;
        let mut splits: Option<(u64, Splits)> = None;
        loop {
            let Some(&(seed, kind)) = queue.lock().map_err(|e| e.to_string())?.next() else { return Ok(()) };
            if splits.as_ref().is_none_or(|(s, _)| *s != seed) {
                splits = Some((seed, load(args, seed).map_err(|e| e.to_string())?));
            }
            let data = &splits.as_ref().expect("loaded above").1;
            let bar = bars.insert_before(&overall, ProgressBar::new(args.steps as u64));
            bar.set_style(style("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}").map_err(|e| e.to_string())?);
            // The same initial network for every loss of a seed: flex's generator, seeded, draws
            // it, one worker at a time (the generator is the process's). burn draws a parameter
            // when it is first read, so the record is read here, inside the turn.
            let initial = {
                let _turn = draw.lock().map_err(|e| e.to_string())?;
                device.seed(seed);
                UNet3d::new(args.width, &device).into_record()
            };
            let model = UNet3d::new(args.width, &device).load_record(initial);
            let run = pool
                .install(|| train(kind, seed, model, data, schedule, &device, &[&bar, &overall]))
                .map_err(|e| e.to_string())?;
            write_run(&run_path(&args.out, kind, seed), &run).map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            let line = format!(
                "{} seed {seed}: test F1 (IoU >= 0.1) {:.3} at step {} ({:.0} s)",
                kind.name(),
                run.test.f1_iou10(),
                run.best_step,
                run.checkpoints.last().map_or(0.0, |c| c.seconds)
            );
            // Progress bars draw only on a terminal; in a log, the line goes to standard output.
            if bars.is_hidden() { println!("{line}") } else { bars.println(line).map_err(|e| e.to_string())? }
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.jobs.min(pending.len()).max(1)).map(|_| scope.spawn(worker)).collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| "a training thread panicked".to_owned())?)
    })?;
    overall.finish_and_clear();
    Ok(())
}

/// Prints what the test sets of the study's seeds hold: instances per volume, and the share of
/// the instances and of the lesion voxels in each size bin.
fn describe_test_sets(args: &Args) {
    let seeds = args.first_seed..args.first_seed + args.seeds;
    let test_volumes = args.test_volumes.unwrap_or(args.held_out);
    let sets: Vec<_> = seeds.clone().flat_map(|seed| volumes(test_volumes, args.size, data_seed(seed, 2))).collect();
    let stats = statistics(&sets);
    let (small, medium) = (args.bins[0], args.bins[1]);
    let bins = |share: &dyn Fn(u64) -> f64| {
        let (a, b) = (share(small), share(medium));
        format!("{:.0}% / {:.0}% / {:.0}%", 100.0 * a, 100.0 * (b - a), 100.0 * (1.0 - b))
    };
    println!(
        "test sets of seeds {seeds:?}: {} volumes, {} instances ({:.1} per volume); by size <= {small} / \
         {}-{medium} / > {medium} voxels: {} of the instances, {} of the lesion voxels",
        stats.volumes,
        stats.sizes.len(),
        stats.instances_per_volume(),
        small + 1,
        bins(&|limit| stats.share_of_instances(limit)),
        bins(&|limit| stats.share_of_voxels(limit)),
    );
}

/// Prints the shape of the nuclei stack's three parts and how many nuclei each holds.
fn describe_nuclei(splits: &Splits) {
    let parts = [("training", &splits.train[0]), ("validation", &splits.validation[0]), ("test", &splits.test[0])];
    let described: Vec<String> = parts
        .iter()
        .map(|(name, part)| {
            let nuclei = label(part.target.view(), Connectivity::TwentySix).map_or(0, |l| l.count);
            format!("{name} {:?} with {nuclei} nuclei", part.image.dim())
        })
        .collect();
    println!("nuclei3d: {}", described.join(", "));
}

/// Every (seed, loss) of the study, seed by seed: soft Dice, the main losses, then the sweep.
fn planned_runs(args: &Args) -> Vec<(u64, LossKind)> {
    let mut runs = Vec::new();
    for seed in args.first_seed..args.first_seed + args.seeds {
        runs.push((seed, LossKind::Dice));
        for loss in &args.losses {
            runs.push((
                seed,
                match loss {
                    Loss::DiceBce => LossKind::DiceBce,
                    Loss::Blob => LossKind::Blob { beta: args.beta },
                    Loss::Cc => LossKind::Cc,
                    Loss::Bicc => LossKind::Bicc,
                    Loss::CcDiceCe => LossKind::CcDiceCe,
                },
            ));
        }
        if seed < args.sweep_seeds {
            runs.extend(
                args.sweep_betas.iter().filter(|&&b| b != args.beta).map(|&beta| (seed, LossKind::Blob { beta })),
            );
        }
    }
    runs
}

/// The generator seed of split `split` (0 train, 1 validation, 2 test) of study seed `seed`: every
/// seed draws its own volumes, and no two splits share a generator seed.
fn data_seed(seed: u64, split: u64) -> u64 {
    1_000_003 * (split + 1) + seed
}

fn load(args: &Args, seed: u64) -> Result<Splits, Box<dyn std::error::Error>> {
    Ok(match args.dataset {
        DatasetKind::Lesions => Splits {
            train: volumes(args.train_volumes, args.size, data_seed(seed, 0)),
            validation: volumes(args.held_out, args.size, data_seed(seed, 1)),
            test: volumes(args.test_volumes.unwrap_or(args.held_out), args.size, data_seed(seed, 2)),
        },
        DatasetKind::Nuclei3d => {
            let splits = nuclei::load(&args.nuclei_dir)?;
            let (d, h, w) = splits.train[0].image.dim();
            if args.crop > d.min(h).min(w) {
                return Err(format!("--crop {} does not fit the training part {:?}", args.crop, (d, h, w)).into());
            }
            splits
        }
    })
}

/// Rejects settings that would train nothing, divide by zero or not fit the network.
fn validate(args: &Args) -> Result<(), String> {
    let counts = [
        args.jobs,
        args.seeds as usize,
        args.steps,
        args.eval_every,
        args.batch_size,
        args.width,
        args.train_volumes,
        args.held_out,
        args.test_volumes.unwrap_or(1),
    ];
    if counts.contains(&0) {
        return Err("--jobs, --seeds, --steps, --eval-every, --batch-size, --width, --train-volumes, --held-out and \
             --test-volumes must be at least 1"
            .into());
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(format!("--lr {} must be a positive number", args.lr));
    }
    if !args.crop.is_multiple_of(4) || args.crop < 8 || !args.size.is_multiple_of(4) || args.crop > args.size {
        return Err(format!("--crop {} and --size {} must be multiples of 4, 8 <= crop <= size", args.crop, args.size));
    }
    if args.bins.len() != 2 || args.bins[0] >= args.bins[1] {
        return Err(format!("--bins {:?} must be two increasing sizes", args.bins));
    }
    if args.sweep_betas.iter().chain([&args.beta, &args.alpha]).any(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err("--alpha, --beta and --sweep-betas must be finite and non-negative".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, planned_runs, validate};
    use crate::train::LossKind;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from([&["study3d"], flags].concat()).unwrap()
    }

    #[test]
    fn settings_that_train_nothing_are_refused() {
        assert_eq!(validate(&args(&[])), Ok(()));
        for flag in
            ["--jobs", "--seeds", "--steps", "--eval-every", "--batch-size", "--width", "--held-out", "--test-volumes"]
        {
            assert!(validate(&args(&[flag, "0"])).unwrap_err().contains("at least 1"), "{flag} 0");
        }
        assert!(validate(&args(&["--crop", "30"])).unwrap_err().contains("multiples of 4"));
        assert!(validate(&args(&["--crop", "64"])).unwrap_err().contains("crop <= size"));
        assert!(validate(&args(&["--bins", "100,10"])).unwrap_err().contains("increasing"));
        assert!(validate(&args(&["--beta=-1"])).unwrap_err().contains("non-negative"));
    }

    #[test]
    fn the_study_plans_every_loss_per_seed_and_the_sweep_on_the_first_seeds() {
        let runs = planned_runs(&args(&["--seeds", "3", "--first-seed", "4", "--sweep-seeds", "5"]));
        assert_eq!(runs.len(), 3 * 4 + 3, "4 losses per seed; the sweep's 3 betas on seed 4 only");
        assert_eq!(runs[0], (4, LossKind::Dice));
        assert!(runs.contains(&(4, LossKind::Blob { beta: 0.5 })) && runs.contains(&(4, LossKind::Blob { beta: 4.0 })));
        assert!(!runs.contains(&(5, LossKind::Blob { beta: 0.5 })));
        assert!(runs.contains(&(6, LossKind::Cc)));
        assert_eq!(runs.iter().filter(|r| r.1 == LossKind::Blob { beta: 2.0 }).count(), 1);
    }
}
