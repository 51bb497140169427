//! Run files (one per loss and seed, so that a study resumes and splits by seed), the tables with
//! paired statistics, the CSV files and the charts.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::band::{band, mean, mean_and_spread, standard_deviation};
use crate::evaluate::{Evaluation, FIGURES};
use crate::stats::{Comparison, bootstrap_interval, compare, holm, tost};
use crate::train::{Checkpoint, LossKind, Run};

/// Bootstrap resamples per confidence interval.
pub const RESAMPLES: usize = 10_000;

/// The pre-registered analysis (EXPERIMENTS.md, "3D study, pre-registered"): the primary
/// endpoint, compared between blob loss (beta 1) and soft Dice.
pub const PRIMARY_FIGURE: &str = "f1_iou10";

/// The declared secondary figures of blob loss against soft Dice (Holm over them and the
/// secondary losses' primary figure).
pub const SECONDARY_FIGURES: [&str; 6] =
    ["sensitivity_iou10", "precision_iou10", "sensitivity_small", "f1_iou50", "dice", "false_positives_per_volume"];

/// The declared secondary losses, each compared with soft Dice on the primary figure.
pub const SECONDARY_LOSSES: [LossKind; 2] = [LossKind::Bicc, LossKind::CcDiceCe];

/// The pre-declared equivalence margin (TOST) of precision and Dice, blob loss against soft Dice.
pub const EQUIVALENCE_MARGIN: f64 = 0.05;

/// Where a row of the pre-registered analysis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The primary comparison.
    Primary,
    /// A member of the secondary family (Holm-adjusted over the family).
    Secondary,
    /// A declared secondary loss that has not run on every seed of the primary comparison: left
    /// out of the family, as declared (no Holm p), and reported as incomplete.
    Incomplete,
}

impl Role {
    /// The name in `preregistered.csv`.
    pub fn id(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
            Self::Incomplete => "incomplete",
        }
    }
}

/// One row of the pre-registered analysis.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The primary comparison, a member of the secondary family, or an incomplete secondary loss.
    pub role: Role,
    /// `loss - soft Dice` on `figure`.
    pub loss: LossKind,
    /// The figure's name in [`FIGURES`].
    pub figure: &'static str,
    /// The paired statistics.
    pub comparison: Comparison,
    /// Holm's adjusted t-test p-value over the secondary family (the primary row: its own p; an
    /// incomplete row: NaN).
    pub holm_p_value: f64,
    /// TOST p-value at [`EQUIVALENCE_MARGIN`] (precision and Dice of blob loss only).
    pub tost_p_value: Option<f64>,
}

/// The file of one run under `folder`.
pub fn run_path(folder: &Path, kind: LossKind, seed: u64) -> std::path::PathBuf {
    folder.join("runs").join(format!("{}_seed{seed}.csv", kind.id()))
}

/// Writes a run: a row per validation, then the chosen checkpoint's test row (figures to 6
/// decimals).
pub fn write_run(path: &Path, run: &Run) -> std::io::Result<()> {
    let mut csv = format!("split,step,seconds,train_loss,{}\n", FIGURES.join(","));
    for c in &run.checkpoints {
        let _ =
            writeln!(csv, "validation,{},{:.2},{:.6},{}", c.step, c.seconds, c.train_loss, join(&c.validation.values));
    }
    let _ = writeln!(csv, "test,{},,,{}", run.best_step, join(&run.test.values));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    // Written whole, then renamed: a study stopped mid-write leaves no half file to resume from.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, csv)?;
    std::fs::rename(partial, path)
}

/// Reads a run written by [`write_run`].
pub fn read_run(path: &Path) -> Result<Run, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fail = |line: usize, what: &str| format!("{}:{}: {what}", path.display(), line + 1);
    let (mut checkpoints, mut test) = (Vec::new(), None);
    for (i, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 4 + FIGURES.len() {
            return Err(fail(i, "wrong number of columns"));
        }
        let number = |f: &str| f.parse::<f64>().map_err(|_| fail(i, "not a number"));
        let mut values = [0.0; FIGURES.len()];
        for (v, f) in values.iter_mut().zip(&fields[4..]) {
            *v = number(f)?;
        }
        let step = fields[1].parse::<usize>().map_err(|_| fail(i, "not a step"))?;
        match fields[0] {
            "validation" => checkpoints.push(Checkpoint {
                step,
                seconds: number(fields[2])?,
                train_loss: number(fields[3])?,
                validation: Evaluation { values },
            }),
            "test" => test = Some((step, Evaluation { values })),
            _ => return Err(fail(i, "unknown split")),
        }
    }
    let (best_step, test) = test.ok_or_else(|| format!("{}: no test row", path.display()))?;
    Ok(Run { checkpoints, best_step, test })
}

/// Every finished run of a study.
pub struct Report {
    /// Per loss and seed.
    pub runs: Vec<(LossKind, u64, Run)>,
    /// The baseline of the paired comparisons.
    pub baseline: LossKind,
}

impl Report {
    fn losses(&self) -> Vec<LossKind> {
        let mut losses: Vec<LossKind> = Vec::new();
        for (kind, ..) in &self.runs {
            if !losses.contains(kind) {
                losses.push(*kind);
            }
        }
        losses
    }

    /// The test values of `figure` for `kind`, by seed.
    fn test_values(&self, kind: LossKind, figure: usize) -> Vec<(u64, f64)> {
        self.runs.iter().filter(|(k, ..)| *k == kind).map(|(_, seed, run)| (*seed, run.test.values[figure])).collect()
    }

    /// `kind` minus the baseline on `figure`, paired by seed (seeds both losses ran).
    pub fn comparison(&self, kind: LossKind, figure: usize) -> Comparison {
        let baseline = self.test_values(self.baseline, figure);
        let (values, base): (Vec<f64>, Vec<f64>) = self
            .test_values(kind, figure)
            .into_iter()
            .filter_map(|(seed, v)| baseline.iter().find(|(s, _)| *s == seed).map(|&(_, b)| (v, b)))
            .unzip();
        compare(&values, &base, RESAMPLES, 0xB007 + figure as u64)
    }

    /// The pre-registered rows: the primary comparison first, then the declared secondary family
    /// (only comparisons with at least 2 pairs; the family is Holm-adjusted over those), then the
    /// secondary losses with fewer seeds than the primary comparison, outside the family.
    pub fn preregistered(&self) -> Vec<Declared> {
        let blob = LossKind::Blob { beta: 1.0 };
        let index = |name: &str| FIGURES.iter().position(|f| *f == name).expect("a declared figure");
        let differences = |kind: LossKind, figure: usize| -> Vec<f64> {
            let baseline = self.test_values(self.baseline, figure);
            self.test_values(kind, figure)
                .into_iter()
                .filter_map(|(seed, v)| baseline.iter().find(|(s, _)| *s == seed).map(|&(_, b)| v - b))
                .filter(|d| d.is_finite())
                .collect()
        };
        let row = |loss: LossKind, figure: &'static str| {
            let f = index(figure);
            let tost_p_value = (loss == blob && matches!(figure, "precision_iou10" | "dice"))
                .then(|| tost(&differences(loss, f), EQUIVALENCE_MARGIN));
            Declared {
                role: Role::Secondary,
                loss,
                figure,
                comparison: self.comparison(loss, f),
                holm_p_value: f64::NAN,
                tost_p_value,
            }
        };
        let mut primary = row(blob, PRIMARY_FIGURE);
        primary.role = Role::Primary;
        primary.holm_p_value = primary.comparison.t_p_value;
        let seeds = primary.comparison.pairs;
        // A secondary loss enters the family only if it ran on every seed of the primary
        // comparison (EXPERIMENTS.md, "Secondary family").
        let (losses, incomplete): (Vec<Declared>, Vec<Declared>) = SECONDARY_LOSSES
            .iter()
            .map(|&loss| row(loss, PRIMARY_FIGURE))
            .filter(|r| r.comparison.pairs >= 2)
            .partition(|r| r.comparison.pairs >= seeds);
        let mut secondary: Vec<Declared> = SECONDARY_FIGURES
            .iter()
            .map(|&figure| row(blob, figure))
            .filter(|r| r.comparison.pairs >= 2)
            .chain(losses)
            .collect();
        let adjusted = holm(&secondary.iter().map(|r| r.comparison.t_p_value).collect::<Vec<_>>());
        for (r, p) in secondary.iter_mut().zip(adjusted) {
            r.holm_p_value = p;
        }
        let incomplete = incomplete.into_iter().map(|r| Declared { role: Role::Incomplete, ..r });
        std::iter::once(primary).filter(|r| r.comparison.pairs >= 2).chain(secondary).chain(incomplete).collect()
    }

    /// Prints the pre-registered analysis: effect, 95% t and bootstrap intervals, t-test,
    /// Wilcoxon and permutation p-values, Holm-adjusted p over the secondary family, TOST.
    pub fn print_preregistered(&self) {
        let rows = self.preregistered();
        if rows.is_empty() {
            return;
        }
        println!("\npre-registered analysis (paired by seed; primary first, then the Holm family):");
        for r in &rows {
            let c = &r.comparison;
            let tost = r.tost_p_value.map_or(String::new(), |p| format!(", TOST +-{EQUIVALENCE_MARGIN} p {p:.4}"));
            println!(
                "{} {} - soft Dice, {:<26} {:+.4} t95 [{:+.4}, {:+.4}] boot95 [{:+.4}, {:+.4}]  t p {:.4}, Wilcoxon p \
                 {:.4}, permutation p {:.4}, {} {:.4} (n = {}){tost}",
                match r.role {
                    Role::Primary => "primary   ",
                    Role::Secondary => "secondary ",
                    Role::Incomplete => "incomplete",
                },
                r.loss.name(),
                r.figure,
                c.mean,
                c.t_interval.0,
                c.t_interval.1,
                c.interval.0,
                c.interval.1,
                c.t_p_value,
                c.p_value,
                c.permutation_p_value,
                match r.role {
                    Role::Primary => "p",
                    Role::Secondary => "Holm p",
                    Role::Incomplete => "not in the Holm family, p",
                },
                if r.role == Role::Incomplete { c.t_p_value } else { r.holm_p_value },
                c.pairs
            );
        }
    }

    /// Prints the test figures (mean +- std over seeds) per loss, then the paired differences to
    /// the baseline with their 95% bootstrap intervals and Wilcoxon p-values.
    pub fn print(&self) {
        let losses = self.losses();
        print!("{:<28}", "test set (mean +- std)");
        for kind in &losses {
            print!(" {:>22}", format!("{} n={}", kind.id(), self.test_values(*kind, 0).len()));
        }
        println!();
        for (f, name) in FIGURES.iter().enumerate() {
            print!("{name:<28}");
            for kind in &losses {
                let values: Vec<f64> = self.test_values(*kind, f).into_iter().map(|(_, v)| v).collect();
                print!(" {:>22}", format!("{:.3} +- {:.3}", mean(&values), standard_deviation(&values)));
            }
            println!();
        }
        for kind in losses.iter().filter(|k| **k != self.baseline) {
            println!(
                "\n{} - {}, paired by seed: mean [95% bootstrap CI], Wilcoxon p",
                kind.name(),
                self.baseline.name()
            );
            for (f, name) in FIGURES.iter().enumerate() {
                let c = self.comparison(*kind, f);
                let mark = if c.p_value < 0.05 { " *" } else { "" };
                println!(
                    "{name:<28} {:+.4} [{:+.4}, {:+.4}]  p = {:.4} (n = {}){mark}",
                    c.mean, c.interval.0, c.interval.1, c.p_value, c.pairs
                );
            }
        }
    }

    /// Writes `test.csv`, `validation.csv`, `comparisons.csv`, `validation_f1.svg` and
    /// `sensitivity_by_size.svg` into `folder`.
    pub fn write(&self, folder: &Path, bins: (u64, u64)) -> Result<(), Box<dyn std::error::Error>> {
        let header = FIGURES.join(",");
        let (mut test, mut validation) =
            (format!("loss,seed,best_step,{header}\n"), format!("loss,seed,step,seconds,train_loss,{header}\n"));
        for (kind, seed, run) in &self.runs {
            let _ = writeln!(test, "{},{seed},{},{}", kind.id(), run.best_step, join(&run.test.values));
            for c in &run.checkpoints {
                let _ = writeln!(
                    validation,
                    "{},{seed},{},{:.2},{:.6},{}",
                    kind.id(),
                    c.step,
                    c.seconds,
                    c.train_loss,
                    join(&c.validation.values)
                );
            }
        }
        let mut comparisons = String::from(
            "loss,baseline,figure,pairs,mean_difference,ci95_low,ci95_high,wilcoxon_p,t_p,t_ci95_low,t_ci95_high,\
             permutation_p\n",
        );
        for kind in self.losses().into_iter().filter(|k| *k != self.baseline) {
            for (f, name) in FIGURES.iter().enumerate() {
                let c = self.comparison(kind, f);
                let _ = writeln!(
                    comparisons,
                    "{},{},{name},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}",
                    kind.id(),
                    self.baseline.id(),
                    c.pairs,
                    c.mean,
                    c.interval.0,
                    c.interval.1,
                    c.p_value,
                    c.t_p_value,
                    c.t_interval.0,
                    c.t_interval.1,
                    c.permutation_p_value
                );
            }
        }
        std::fs::write(folder.join("test.csv"), test)?;
        std::fs::write(folder.join("validation.csv"), validation)?;
        std::fs::write(folder.join("comparisons.csv"), comparisons)?;
        let mut declared = String::from(
            "role,loss,figure,pairs,mean_difference,t_ci95_low,t_ci95_high,boot_ci95_low,boot_ci95_high,t_p,\
             wilcoxon_p,permutation_p,holm_p,tost_p\n",
        );
        for r in &self.preregistered() {
            let c = &r.comparison;
            let _ = writeln!(
                declared,
                "{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{}",
                r.role.id(),
                r.loss.id(),
                r.figure,
                c.pairs,
                c.mean,
                c.t_interval.0,
                c.t_interval.1,
                c.interval.0,
                c.interval.1,
                c.t_p_value,
                c.p_value,
                c.permutation_p_value,
                r.holm_p_value,
                r.tost_p_value.map_or(String::new(), |p| format!("{p:.6}"))
            );
        }
        std::fs::write(folder.join("preregistered.csv"), declared)?;
        self.validation_chart(&folder.join("validation_f1.svg"))?;
        self.size_chart(&folder.join("sensitivity_by_size.svg"), bins)
    }

    /// Validation F1 (IoU >= 0.1) per step: per loss, the mean over seeds and a band of one
    /// standard deviation.
    fn validation_chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let last = self.runs.iter().flat_map(|(_, _, r)| r.checkpoints.iter().map(|c| c.step)).max().unwrap_or(1);
        let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Validation instance F1 (one-to-one, IoU >= 0.1) per step", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..last as f64, 0f64..1f64)?;
        chart.configure_mesh().x_desc("optimiser step").y_desc("F1").draw()?;
        for (i, kind) in self.losses().into_iter().enumerate() {
            let color = palette(i);
            let runs: Vec<&Run> = self.runs.iter().filter(|(k, ..)| *k == kind).map(|(_, _, r)| r).collect();
            let mut steps: Vec<usize> = runs.iter().flat_map(|r| r.checkpoints.iter().map(|c| c.step)).collect();
            steps.sort_unstable();
            steps.dedup();
            let stats = mean_and_spread(steps.iter().map(|&step| {
                let values = runs
                    .iter()
                    .filter_map(|r| r.checkpoints.iter().find(|c| c.step == step))
                    .map(|c| zero_if_nan(c.validation.f1_iou10()))
                    .collect();
                (step as f64, values)
            }));
            let band = band(&stats);
            chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.12).filled())))?;
            chart
                .draw_series(LineSeries::new(stats.iter().map(|&(x, m, _)| (x, m)), color.stroke_width(2)))?
                .label(format!("{} ({} seeds)", kind.name(), runs.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }

    /// Test sensitivity (any overlap) per lesion size bin and loss: the mean over seeds, with its
    /// 95% bootstrap interval.
    fn size_chart(&self, path: &Path, bins: (u64, u64)) -> Result<(), Box<dyn std::error::Error>> {
        let figures = [9, 10, 11];
        let labels = [format!("<= {}", bins.0), format!("{}-{}", bins.0 + 1, bins.1), format!("> {}", bins.1)];
        let losses = self.losses();
        let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Test sensitivity (any overlap) by lesion size, mean and 95% CI over seeds", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..3f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(7)
            .x_label_formatter(&|x| {
                let bin = (x - 0.5).round() as usize;
                if (x - 0.5 - bin as f64).abs() < 1e-6 {
                    labels.get(bin).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("lesion size (voxels)")
            .y_desc("sensitivity")
            .draw()?;
        let width = 0.8 / losses.len() as f64;
        for (i, kind) in losses.iter().enumerate() {
            let color = palette(i);
            for (bin, &figure) in figures.iter().enumerate() {
                let values: Vec<f64> =
                    self.test_values(*kind, figure).into_iter().map(|(_, v)| v).filter(|v| v.is_finite()).collect();
                if values.is_empty() {
                    continue;
                }
                let (lo, hi) = bootstrap_interval(&values, 0.95, RESAMPLES, 7);
                let x0 = bin as f64 + 0.1 + width * i as f64;
                let bar = Rectangle::new([(x0, 0.0), (x0 + width * 0.9, mean(&values))], color.filled());
                let series = chart.draw_series(std::iter::once(bar))?;
                if bin == 0 {
                    series
                        .label(kind.name())
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
                }
                let middle = x0 + width * 0.45;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(middle, lo), (middle, hi)],
                    BLACK.stroke_width(1),
                )))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 7] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
    ];
    COLORS[i % COLORS.len()]
}

fn zero_if_nan(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v }
}

fn join(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::{Report, Role, SECONDARY_FIGURES, read_run, write_run};
    use crate::evaluate::{Evaluation, FIGURES};
    use crate::train::{Checkpoint, LossKind, Run};

    /// The pre-registered rows: the primary comparison, then the secondary family of the figures
    /// and losses that ran, Holm-adjusted over that family alone.
    #[test]
    fn the_preregistered_analysis_is_the_declared_family() {
        let run = |x: f64| Run {
            checkpoints: vec![],
            best_step: 1,
            test: Evaluation { values: std::array::from_fn(|i| x * (1.0 + i as f64 / 10.0)) },
        };
        let mut runs = Vec::new();
        for seed in 0..6u64 {
            let noise = [0.01, -0.02, 0.015, 0.0, -0.005, 0.02][seed as usize];
            runs.push((LossKind::Dice, seed, run(0.5)));
            runs.push((LossKind::Blob { beta: 1.0 }, seed, run(0.55 + noise)));
            runs.push((LossKind::Bicc, seed, run(0.5 + noise)));
            // CC-DiceCE on 4 of the 6 seeds: outside the family.
            if seed < 4 {
                runs.push((LossKind::CcDiceCe, seed, run(0.4 + noise)));
            }
            // Another beta and Dice + BCE are not in the declared set.
            runs.push((LossKind::Blob { beta: 2.0 }, seed, run(0.9)));
            runs.push((LossKind::DiceBce, seed, run(0.9)));
        }
        let report = Report { runs, baseline: LossKind::Dice };
        let rows = report.preregistered();
        assert!(rows[0].role == Role::Primary && rows[0].figure == "f1_iou10");
        assert_eq!(rows[0].loss, LossKind::Blob { beta: 1.0 });
        assert_eq!(rows[0].holm_p_value, rows[0].comparison.t_p_value);
        // 6 figures of blob loss + BiCC's primary figure, then CC-DiceCE, incomplete.
        assert_eq!(rows.len(), 1 + SECONDARY_FIGURES.len() + 1 + 1);
        let family = &rows[1..rows.len() - 1];
        assert!(family.iter().all(|r| r.role == Role::Secondary && r.holm_p_value >= r.comparison.t_p_value));
        let smallest = family.iter().map(|r| r.comparison.t_p_value).fold(f64::INFINITY, f64::min);
        assert!(family.iter().any(|r| (r.holm_p_value - (7.0 * smallest).min(1.0)).abs() < 1e-12));
        let last = &rows[rows.len() - 1];
        assert!(last.role == Role::Incomplete && last.loss == LossKind::CcDiceCe && last.holm_p_value.is_nan());
        assert_eq!(last.comparison.pairs, 4);
        assert_eq!(rows.iter().filter(|r| r.tost_p_value.is_some()).count(), 2, "precision and Dice");
        assert!(FIGURES.contains(&rows[7].figure) && rows[7].loss == LossKind::Bicc);
    }

    #[test]
    fn run_files_round_trip() {
        let evaluation = |x: f64| Evaluation { values: std::array::from_fn(|i| x + i as f64 / 100.0) };
        let run = Run {
            checkpoints: vec![
                Checkpoint { step: 10, seconds: 1.5, train_loss: 0.75, validation: evaluation(0.1) },
                Checkpoint { step: 20, seconds: 3.0, train_loss: 0.5, validation: evaluation(0.2) },
            ],
            best_step: 20,
            test: evaluation(0.3),
        };
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("runs/x.csv");
        write_run(&path, &run).unwrap();
        let back = read_run(&path).unwrap();
        // Figures are kept to 6 decimals.
        let close = |a: &Evaluation, b: &Evaluation| a.values.iter().zip(&b.values).all(|(x, y)| (x - y).abs() < 1e-6);
        assert_eq!((back.best_step, back.checkpoints.len()), (20, 2));
        assert!(close(&back.test, &run.test));
        assert!(close(&back.checkpoints[1].validation, &run.checkpoints[1].validation));
        assert_eq!(
            (back.checkpoints[1].step, back.checkpoints[1].seconds, back.checkpoints[1].train_loss),
            (20, 3.0, 0.5)
        );
        std::fs::write(&path, "header\nvalidation,1,2\n").unwrap();
        assert!(read_run(&path).unwrap_err().contains("columns"));
    }
}
