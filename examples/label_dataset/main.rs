//! Precompute the instance maps of a data set: label every ground-truth mask in a folder once, so
//! the data loader reads instances instead of labelling every epoch.
//!
//! ```text
//! cargo run --release --example label_dataset -- FOLDER [--connectivity 26] [--suffix _instances] [--overwrite]
//! ```
//!
//! Every `.nii`, `.nii.gz`, `.tif` and `.tiff` file of `FOLDER` (not its subfolders) is read as a
//! 2D or 3D integer mask, labelled with [`blob_loss::components::label`] (multi-label aware:
//! touching regions of different values stay separate components) and written next to it as
//! `NAME{suffix}.EXT`, in the same format and geometry: NIfTI keeps the input's header (voxel
//! sizes, qform/sform), TIFF its pages, resolution tags and description. Labels are `u16` when
//! they fit, else `u32`, numbered in on-disk order (first voxel of each component, fastest axis
//! last in `[z, y, x]`: for NIfTI that is `x` fastest, as stored). Files run in parallel with a
//! progress bar; a file that fails (unreadable, not integer, 4D, ...) is reported and the others go
//! on, and the exit status is 1. Existing outputs are kept unless `--overwrite` is given.

mod nifti_file;
mod tiff_file;
mod volume;

use std::path::{Path, PathBuf};
use std::time::Instant;

use blob_loss::components::{Connectivity, label};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Label every mask of a folder into an instance map next to it.
#[derive(Parser, Debug, Clone)]
#[command(about, long_about = None)]
struct Args {
    /// The folder of masks.
    folder: PathBuf,
    /// Neighbours that connect: 4 or 8 (2D), 6, 18 or 26 (3D). Default: 8 in 2D, 26 in 3D.
    #[arg(long, value_parser = parse_connectivity)]
    connectivity: Option<Connectivity>,
    /// Added to the file name before the extension to name the output.
    #[arg(long, default_value = "_instances")]
    suffix: String,
    /// Replace outputs that already exist.
    #[arg(long)]
    overwrite: bool,
}

fn parse_connectivity(text: &str) -> Result<Connectivity, String> {
    let neighbours: u32 = text.parse().map_err(|_| format!("{text:?} is not a number of neighbours"))?;
    Connectivity::try_from(neighbours).map_err(|e| e.to_string())
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Labelled and written.
    Labelled { output: PathBuf, shape: Vec<usize>, connectivity: Connectivity, components: usize },
    /// The output exists and `--overwrite` was not given.
    Skipped { output: PathBuf },
    /// Reading, labelling or writing failed.
    Failed { error: String },
}

fn main() {
    let args = Args::parse();
    let start = Instant::now();
    let files = match masks(&args.folder, &args.suffix) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {}: {e}", args.folder.display());
            std::process::exit(2);
        }
    };
    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} files {msg}").expect("template"),
    );
    let outcomes = run(&args, &files, &|path, outcome| {
        progress.suspend(|| println!("{}", describe(path, outcome)));
        progress.inc(1);
    });
    progress.finish_and_clear();
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let components: usize =
        outcomes.iter().map(|o| if let Outcome::Labelled { components, .. } = o { *components } else { 0 }).sum();
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    println!(
        "{} mask files in {:.2} s: {} labelled ({components} components), {} skipped (output exists; --overwrite replaces), {failed} failed",
        files.len(),
        start.elapsed().as_secs_f64(),
        count(|o| matches!(o, Outcome::Labelled { .. })),
        count(|o| matches!(o, Outcome::Skipped { .. })),
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The mask files of `folder`, sorted, leaving out earlier outputs.
fn masks(folder: &Path, suffix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path.is_file() && volume::extension(&path).is_some() && !volume::is_output(&path, suffix) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Labels `files` in parallel, calling `done` as each finishes; outcomes in the order of `files`.
fn run(args: &Args, files: &[PathBuf], done: &(dyn Fn(&Path, &Outcome) + Sync)) -> Vec<Outcome> {
    files
        .par_iter()
        .map(|path| {
            let outcome = process(args, path).unwrap_or_else(|error| Outcome::Failed { error });
            done(path, &outcome);
            outcome
        })
        .collect()
}

fn process(args: &Args, path: &Path) -> Result<Outcome, String> {
    let output = volume::output_path(path, &args.suffix).ok_or("not a mask file name")?;
    if output.exists() && !args.overwrite {
        return Ok(Outcome::Skipped { output });
    }
    let volume = volume::read(path)?;
    let connectivity = match args.connectivity {
        Some(c) => c,
        None => Connectivity::full(volume.data.ndim()).map_err(|e| e.to_string())?,
    };
    let labeling = label(volume.data.view(), connectivity).map_err(|e| e.to_string())?;
    // Write beside the output and rename, so an interrupted run leaves no half-written output.
    let name = output.file_name().and_then(|n| n.to_str()).ok_or("not a UTF-8 file name")?;
    let partial = output.with_file_name(format!(".partial-{name}"));
    volume::write(&partial, labeling.labels.view(), labeling.count, &volume.geometry)?;
    std::fs::rename(&partial, &output).map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    Ok(Outcome::Labelled { output, shape: volume.data.shape().to_vec(), connectivity, components: labeling.count })
}

fn describe(path: &Path, outcome: &Outcome) -> String {
    let name = path.display();
    match outcome {
        Outcome::Labelled { output, shape, connectivity, components } => format!(
            "{name}: {components} components ({}-connected, shape {shape:?}) -> {}",
            connectivity.neighbours(),
            output.display()
        ),
        Outcome::Skipped { output } => format!("{name}: skipped, {} exists", output.display()),
        Outcome::Failed { error } => format!("{name}: FAILED: {error}"),
    }
}

#[cfg(test)]
mod tests;
