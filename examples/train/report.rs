//! The table, the CSV files and the chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::LossKind;
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

    /// Writes `validation.csv`, `test.csv` and `validation_f1.svg` into `folder`.
    pub fn write(&self, folder: &Path) -> Result<(), Box<dyn std::error::Error>> {
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
        self.chart(&folder.join("validation_f1.svg"))
    }

    /// Validation F1 (greedy matching at IoU >= 0.5) per epoch: one thin line per run, a thick one
    /// for the mean. Not the any-overlap F1: an untrained network that marks everything foreground
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
            let mean = (1..=epochs).filter_map(|epoch| {
                let values: Vec<f64> = runs().filter(|r| r.epoch == epoch).map(f1).collect();
                (!values.is_empty()).then(|| (epoch as f64, values.iter().sum::<f64>() / values.len() as f64))
            });
            chart
                .draw_series(LineSeries::new(mean, color.stroke_width(3)))?
                .label(format!("{} (mean of {} seeds)", kind.name(), seeds.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }
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
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    if signed { format!("{mean:+.3} +- {std:.3}") } else { format!("{mean:.3} +- {std:.3}") }
}
