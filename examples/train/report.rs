//! The table, the CSV files and the chart.

use std::fmt::Write as _;
use std::path::Path;

use blob_loss::components::{Connectivity, label};
use ndarray::Array2;
use plotters::prelude::*;

use crate::LossKind;
use crate::band::{band, mean, mean_and_spread, standard_deviation};
use crate::evaluate::{Evaluation, FIGURES};

/// The validation figures after one epoch of one run.
pub struct Record {
    /// The loss trained with.
    pub loss: LossKind,
    /// The seed of the run.
    pub seed: u64,
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Seconds since the run started.
    pub seconds: f64,
    /// The validation figures.
    pub evaluation: Evaluation,
}

/// Everything measured.
#[derive(Default)]
pub struct Report {
    /// Per epoch, per run.
    pub validation: Vec<Record>,
    /// Per run, after the last epoch.
    pub test: Vec<(LossKind, u64, Evaluation)>,
    /// One test image, shown per loss.
    pub example: Option<Example>,
}

/// One test image's ground truth and, per loss, the first seed's foreground probabilities.
pub struct Example {
    /// The ground truth (a mask or an id map, labelled as the batcher labels it).
    pub target: Array2<u32>,
    /// Per loss, the probabilities after training.
    pub predictions: Vec<(LossKind, Array2<f32>)>,
}

const LOSSES: [LossKind; 2] = [LossKind::Dice, LossKind::Blob];

impl Report {
    /// Prints the test figures, mean +- standard deviation over seeds, for both losses.
    pub fn print_table(&self) {
        println!("test set, mean +- std over {} seeds", self.test.len() / 2);
        println!("{:<20} {:>17} {:>17} {:>17}", "", LOSSES[0].name(), LOSSES[1].name(), "blob - Dice");
        for (i, name) in FIGURES.iter().enumerate() {
            let values = |kind| -> Vec<f64> {
                self.test.iter().filter(|(k, ..)| *k == kind).map(|(_, _, e)| e.figures()[i]).collect()
            };
            let (dice, blob) = (values(LossKind::Dice), values(LossKind::Blob));
            let difference: Vec<f64> = blob.iter().zip(&dice).map(|(b, d)| b - d).collect();
            println!(
                "{name:<20} {:>17} {:>17} {:>17}",
                mean_std(&dice, false),
                mean_std(&blob, false),
                mean_std(&difference, true)
            );
        }
    }

    /// Writes `validation.csv`, `test.csv`, `validation_f1.svg` and (when there is an example)
    /// `test_example.svg` into `folder`.
    pub fn write(&self, folder: &Path, small: u64) -> Result<(), Box<dyn std::error::Error>> {
        let header = FIGURES.join(",");
        let mut csv = format!("loss,seed,epoch,train_loss,seconds,{header}\n");
        for r in &self.validation {
            let _ = writeln!(
                csv,
                "{},{},{},{:.6},{:.2},{}",
                r.loss.name(),
                r.seed,
                r.epoch,
                r.train_loss,
                r.seconds,
                join(&r.evaluation.figures())
            );
        }
        std::fs::write(folder.join("validation.csv"), csv)?;
        let mut csv = format!("loss,seed,{header}\n");
        for (kind, seed, e) in &self.test {
            let _ = writeln!(csv, "{},{seed},{}", kind.name(), join(&e.figures()));
        }
        std::fs::write(folder.join("test.csv"), csv)?;
        if let Some(example) = &self.example {
            example_svg(&folder.join("test_example.svg"), &example.target, &example.predictions, small)?;
        }
        self.chart(&folder.join("validation_f1.svg"))
    }

    /// Validation F1 (greedy matching at IoU >= 0.5) per epoch: one thin line per run, a thick one
    /// for the mean, a band for mean +- one standard deviation over seeds. Not the any-overlap F1: an untrained network that marks everything foreground
    /// makes one component touching every instance, which any-overlap scores F1 = 1.
    fn chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let epochs = self.validation.iter().map(|r| r.epoch).max().unwrap_or(1);
        let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Validation instance F1 (IoU >= 0.5) per epoch", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(1f64..epochs.max(2) as f64, 0f64..1f64)?;
        chart.configure_mesh().x_desc("epoch").y_desc("F1").x_label_formatter(&|x| format!("{x:.0}")).draw()?;
        for (kind, color) in LOSSES.iter().zip([RGBColor(31, 119, 180), RGBColor(214, 39, 40)]) {
            let runs = || self.validation.iter().filter(move |r| r.loss == *kind);
            let mut seeds: Vec<u64> = runs().map(|r| r.seed).collect();
            seeds.dedup();
            for seed in &seeds {
                let points = runs().filter(|r| r.seed == *seed).map(|r| (r.epoch as f64, f1(r)));
                chart.draw_series(LineSeries::new(points, color.mix(0.3).stroke_width(1)))?;
            }
            // Per epoch: mean and sample standard deviation over seeds.
            let stats = mean_and_spread(
                (1..=epochs).map(|epoch| (epoch as f64, runs().filter(|r| r.epoch == epoch).map(f1).collect())),
            );
            let band = band(&stats);
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled())))?;
            let mean = stats.iter().map(|&(x, m, _)| (x, m));
            chart
                .draw_series(LineSeries::new(mean, color.stroke_width(3)))?
                .label(format!("{} (mean +- std of {} seeds)", kind.name(), seeds.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }
}

/// What a pixel of the example shows.
#[derive(Clone, Copy, PartialEq)]
enum Pixel {
    Background,
    /// Ground truth, in the ground-truth panel: small or large instance.
    Small,
    Large,
    /// Ground truth, in a prediction panel: its instance found (any overlap) or missed.
    Found,
    Missed,
    /// Predicted foreground outside the ground truth: in a component that touches no instance
    /// (a false positive) or around a found one.
    FalsePositive,
    Extra,
}

impl Pixel {
    fn color(self) -> Option<RGBColor> {
        match self {
            Pixel::Background => None,
            Pixel::Small => Some(RGBColor(148, 103, 189)),
            Pixel::Large => Some(RGBColor(127, 127, 127)),
            Pixel::Found => Some(RGBColor(44, 160, 44)),
            Pixel::Missed => Some(RGBColor(214, 39, 40)),
            Pixel::FalsePositive => Some(RGBColor(255, 127, 14)),
            Pixel::Extra => Some(RGBColor(199, 199, 199)),
        }
    }
}

/// One test image: its ground truth (small instances in purple) and, per loss, which instances
/// the thresholded prediction finds (green) or misses (red), and its false-positive components
/// (orange).
fn example_svg(
    path: &Path,
    target: &Array2<u32>,
    predictions: &[(LossKind, Array2<f32>)],
    small: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let truth = label(target.view(), Connectivity::Eight)?.labels;
    let sizes = label_sizes(&truth);
    let mut panels = vec![(
        "ground truth (purple: small)".to_owned(),
        truth.mapv(|id| match id {
            0 => Pixel::Background,
            id if sizes[id as usize] <= small => Pixel::Small,
            _ => Pixel::Large,
        }),
    )];
    for (kind, probabilities) in predictions {
        let predicted = label(probabilities.mapv(|p| u8::from(p >= 0.5)).view(), Connectivity::Eight)?;
        let mut found = vec![false; sizes.len()];
        let mut touches = vec![false; predicted.count + 1];
        for (&t, &p) in truth.iter().zip(&predicted.labels) {
            if t > 0 && p > 0 {
                found[t as usize] = true;
                touches[p as usize] = true;
            }
        }
        let pixels = ndarray::Zip::from(&truth).and(&predicted.labels).map_collect(|&t, &p| match (t, p) {
            (0, 0) => Pixel::Background,
            (0, p) if touches[p as usize] => Pixel::Extra,
            (0, _) => Pixel::FalsePositive,
            (t, _) if found[t as usize] => Pixel::Found,
            _ => Pixel::Missed,
        });
        let missed = (1..sizes.len()).filter(|&i| !found[i]).count();
        let fp = (1..touches.len()).filter(|&i| !touches[i]).count();
        panels.push((format!("{}: {missed} missed, {fp} false positive", kind.name()), pixels));
    }
    let (h, w) = target.dim();
    let scale = 4;
    let root = SVGBackend::new(path, ((w * scale * panels.len()) as u32, (h * scale + 30) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, (title, pixels)) in root.split_evenly((1, panels.len())).iter().zip(&panels) {
        let area = area.titled(title, ("sans-serif", 14))?;
        area.draw(&Rectangle::new([(0, 0), ((w * scale) as i32 - 2, (h * scale) as i32 - 1)], BLACK))?;
        // Runs of equal pixels along each row, one rectangle each.
        for (y, row) in pixels.outer_iter().enumerate() {
            let mut x = 0;
            while x < w {
                let start = x;
                while x < w && row[x] == row[start] {
                    x += 1;
                }
                if let Some(color) = row[start].color() {
                    let (x0, x1, y0) = ((start * scale) as i32, (x * scale) as i32, (y * scale) as i32);
                    area.draw(&Rectangle::new([(x0, y0), (x1, y0 + scale as i32)], color.filled()))?;
                }
            }
        }
    }
    root.present()?;
    Ok(())
}

/// The size of every label, indexed by label (index 0: the background).
pub fn label_sizes(labels: &Array2<u32>) -> Vec<u64> {
    let mut sizes = vec![0u64; labels.iter().max().map_or(1, |&m| m as usize + 1)];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    sizes
}

fn f1(record: &Record) -> f64 {
    let f1 = record.evaluation.iou.pooled_f1;
    if f1.is_nan() { 0.0 } else { f1 }
}

fn join(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(",")
}

/// `mean +- std` (sample standard deviation), with a sign when asked.
fn mean_std(values: &[f64], signed: bool) -> String {
    let (mean, std) = (mean(values), standard_deviation(values));
    if signed { format!("{mean:+.3} +- {std:.3}") } else { format!("{mean:.3} +- {std:.3}") }
}
