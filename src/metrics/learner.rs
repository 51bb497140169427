//! burn-train adapters (feature `learner`): instance F1, sensitivity and precision
//! ([`InstanceMetric`]) and CC-Dice ([`CcDiceMetric`]) as burn-train `Metric` + `Numeric`, for
//! the `Learner`'s dashboard, its metric logs, the training summary, and metric-based
//! checkpointing and early stopping.
//!
//! # The epoch figure is the pooled figure
//!
//! burn-train 0.22 turns a numeric metric's entries into one value per epoch in
//! `NumericMetricsAggregate::aggregate` (`burn-train/src/metric/store/aggregate.rs`): when the
//! epoch's last logged entry is `NumericEntry::Final`, that value is the epoch's (lines 56-58);
//! otherwise the entries' count-weighted mean, `sum(value * count) / sum(count)` (lines 60-76).
//! `MetricCheckpointingStrategy`, `MetricEarlyStoppingStrategy` and the training summary all read
//! that value. At the end of each split burn-train calls `Metric::compute` and logs its entry
//! after the per-batch ones (`end_epoch_metrics`, `processor/metrics.rs`).
//!
//! These metrics keep the epoch's running totals (cleared by `Metric::clear`) and:
//! - log, per batch, the batch's ratio as `NumericEntry::Aggregated` with the ratio's
//!   *denominator* as its count (F1 `2TP / (2TP + FP + FN)`: `2TP + FP + FN`; sensitivity
//!   `TP + FN`; precision `TP + FP`; CC-Dice, a mean over cells: the number of cells). The
//!   weighted mean of these entries is the ratio of the summed counts: the pooled figure;
//! - log, from `compute`, the pooled figure of the whole epoch as `NumericEntry::Final`, which is
//!   what checkpointing and early stopping read;
//! - report the same running figure as the dashboard's "epoch" value.
//!
//! The epoch value is therefore exactly [`Summary`](super::Summary)'s `pooled_f1`,
//! `pooled_recall` and `pooled_precision` of all the epoch's (element, channel) cases, and
//! [`CellMetrics::pooled`]'s `dice`, not a mean of per-batch ratios.
//!
//! A batch whose ratio has no denominator (no instance on either side for F1, no ground truth
//! for sensitivity, no prediction for precision, no element for any of them) has no value: it
//! logs burn-train's "N/A" entry (`SerializedEntry::NOT_AVAILABLE`, which the file logger skips
//! and the in-memory logger cannot parse back) and `Numeric::value` is `None`, so no NaN ever
//! enters a mean. An epoch with no denominator at all has a NaN final value, as
//! [`Summary`](super::Summary) gives: it is logged (so the epochs after it are still compared)
//! and never beats a real value in `MetricCheckpointingStrategy` or `MetricEarlyStoppingStrategy`.

use std::sync::Arc;

use burn::tensor::activation::sigmoid;
use burn::tensor::{ExecutionError, Int, Tensor, TensorReadError};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry, SerializedEntry,
};
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;

use super::{CellMetrics, MatchScore, Matching, MetricsConfig, evaluate_cells, evaluate_probabilities};
use crate::Error;

/// The input of [`InstanceMetric`] and [`CcDiceMetric`]: foreground probabilities and the
/// ground-truth instance map of a `[B, C, H, W]` (2D) or `[B, C, D, H, W]` (3D) batch.
///
/// Every (element, channel) slice is one case: channel `c` of the probabilities is binarised at
/// the metric's threshold, labelled into instances and scored against channel `c` of the
/// instance map (0 is background, any positive ids; the ids are used as given, as
/// [`evaluate_probabilities`] does). Your model output implements
/// `burn::train::metric::Adaptor<InstanceMetricInput>` to feed these metrics.
///
/// # Example
/// ```
/// use blob_loss::metrics::InstanceMetricInput;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::zeros([2, 1, 8, 8], &device);
/// let instances = Tensor::<4, Int>::zeros([2, 1, 8, 8], &device);
/// let input = InstanceMetricInput::from_logits(logits, instances);
/// assert_eq!(input.shape(), [2, 1, 8, 8]);
/// ```
#[derive(Debug, Clone)]
pub struct InstanceMetricInput {
    /// The probabilities and instance ids, flattened; `None` for a batch without voxels.
    data: Option<(Tensor<1>, Tensor<1, Int>)>,
    /// `[B, C, spatial..]`.
    shape: Vec<usize>,
}

impl InstanceMetricInput {
    /// The input of probabilities in `[0, 1]` (`D` = 4 for 2D, 5 for 3D) and the ground-truth
    /// instance map of the same shape. Nothing is read from the device here: the metrics read
    /// the tensors in their `update`, on burn-train's metric thread.
    ///
    /// # Panics
    /// When `D` is neither 4 nor 5, or the two shapes differ (as burn-train's own metric inputs,
    /// such as `DiceInput`, do).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetricInput;
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let probabilities = Tensor::<5>::from_floats([[[[[0.9, 0.1], [0.2, 0.7]]]]], &device);
    /// let instances = Tensor::<5, Int>::from_ints([[[[[1, 0], [0, 2]]]]], &device);
    /// assert_eq!(InstanceMetricInput::new(probabilities, instances).shape(), [1, 1, 1, 2, 2]);
    /// ```
    pub fn new<const D: usize>(probabilities: Tensor<D>, instances: Tensor<D, Int>) -> Self {
        assert!(D == 4 || D == 5, "InstanceMetricInput takes [B, C, H, W] or [B, C, D, H, W] tensors, not rank {D}");
        let shape = probabilities.dims();
        assert_eq!(shape, instances.dims(), "the probabilities and the instance map must have the same shape");
        let voxels: usize = shape.iter().product();
        let data = (voxels > 0).then(|| (probabilities.reshape::<1, _>([voxels]), instances.reshape::<1, _>([voxels])));
        Self { data, shape: shape.to_vec() }
    }

    /// The input of logits: the probabilities are their sigmoid (one independent foreground per
    /// channel). For softmax outputs, pass the probabilities to [`new`](Self::new) instead.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetricInput;
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let logits = Tensor::<4>::from_floats([[[[3.0, -3.0, 3.0]]]], &device); // p = 0.95, 0.05, 0.95
    /// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2]]]], &device);
    /// assert_eq!(InstanceMetricInput::from_logits(logits, instances).shape(), [1, 1, 1, 3]);
    /// ```
    pub fn from_logits<const D: usize>(logits: Tensor<D>, instances: Tensor<D, Int>) -> Self {
        Self::new(sigmoid(logits), instances)
    }

    /// The batch shape, `[B, C, spatial..]`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetricInput;
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let input =
    ///     InstanceMetricInput::new(Tensor::<4>::zeros([3, 2, 4, 5], &device), Tensor::<4, Int>::zeros([3, 2, 4, 5], &device));
    /// assert_eq!(input.shape(), [3, 2, 4, 5]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The batch on the host, `None` without voxels. `metric` names the metric in the errors.
    fn read(&self, metric: &str) -> Result<Option<HostBatch<'_>>, TensorReadError> {
        let Some((probabilities, instances)) = &self.data else { return Ok(None) };
        let probabilities = probabilities.clone().try_into_vec_as::<f32>()?;
        let instances = instances
            .clone()
            .try_into_vec_as::<i64>()?
            .into_iter()
            .map(|id| {
                u32::try_from(id).map_err(|_| {
                    if id < 0 {
                        Error::NegativeInstanceId { value: id }
                    } else {
                        Error::InvalidArgument(format!("instance id {id} does not fit in u32"))
                    }
                })
            })
            .collect::<Result<Vec<u32>, Error>>()
            .map_err(|err| failure(metric, err))?;
        Ok(Some(HostBatch { probabilities, instances, shape: &self.shape }))
    }
}

/// A batch read back to the host.
struct HostBatch<'a> {
    probabilities: Vec<f32>,
    instances: Vec<u32>,
    shape: &'a [usize],
}

impl HostBatch<'_> {
    /// `f` of every (element, channel) slice, in batch order (element-major), in parallel.
    fn per_slice<T: Send>(
        &self,
        f: impl Fn(ArrayViewD<'_, f32>, ArrayViewD<'_, u32>) -> Result<T, Error> + Send + Sync,
    ) -> Result<Vec<T>, Error> {
        let spatial = IxDyn(&self.shape[2..]);
        let voxels: usize = self.shape[2..].iter().product();
        (0..self.shape[0] * self.shape[1])
            .into_par_iter()
            .map(|slice| {
                let range = slice * voxels..(slice + 1) * voxels;
                let probabilities = ArrayViewD::from_shape(spatial.clone(), &self.probabilities[range.clone()])
                    .expect("a slice of the batch's shape");
                let instances = ArrayViewD::from_shape(spatial.clone(), &self.instances[range])
                    .expect("a slice of the batch's shape");
                f(probabilities, instances)
            })
            .collect()
    }

    /// The number of spatial dimensions.
    fn rank(&self) -> usize {
        self.shape.len() - 2
    }
}

/// A crate error as the `TensorReadError` that burn-train's `Metric::update` returns (an
/// `ExecutionError` naming the metric): burn-train reports it as that metric's failure.
fn failure(metric: &str, err: Error) -> TensorReadError {
    ExecutionError::with_context(format!("{metric}: {err}")).into()
}

/// A pooled ratio, `sum / count`: NaN when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Pool {
    sum: f64,
    count: usize,
}

impl Pool {
    fn value(self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.sum / self.count as f64 }
    }

    /// The count-weighted entry burn-train averages, `None` without a denominator.
    fn entry(self) -> Option<NumericEntry> {
        (self.count > 0).then(|| NumericEntry::Aggregated { aggregated_value: self.value(), count: self.count })
    }
}

/// The running totals of an epoch and the last batch's.
#[derive(Debug, Clone, Default)]
struct EpochPool {
    epoch: Pool,
    batch: Option<Pool>,
}

impl EpochPool {
    /// Records a batch of `sum / count`.
    fn push(&mut self, sum: f64, count: usize) {
        self.epoch.sum += sum;
        self.epoch.count += count;
        self.batch = Some(Pool { sum, count });
    }

    /// Records a batch of `values`, one count each, added to the epoch total one by one (so that
    /// the epoch sum is accumulated in the order [`CellMetrics::pooled`] accumulates it).
    fn push_each(&mut self, values: impl IntoIterator<Item = f64>) {
        let mut batch = Pool::default();
        for value in values {
            batch.sum += value;
            batch.count += 1;
            self.epoch.sum += value;
            self.epoch.count += 1;
        }
        self.batch = Some(batch);
    }

    /// burn-train's entry of the last batch: "N/A" when it has no denominator.
    fn update_entry(&self) -> SerializedEntry {
        let epoch = format_value(self.epoch.value());
        match self.value() {
            Some(entry) => SerializedEntry::new(
                format!("epoch {epoch} - batch {}", format_value(entry.current())),
                entry.serialize(),
            ),
            None => SerializedEntry::new(format!("epoch {epoch} - batch N/A"), SerializedEntry::NOT_AVAILABLE.into()),
        }
    }

    /// burn-train's entry of the epoch: always a value (NaN without a denominator), so that
    /// `find_epoch`, which stops at the first epoch without entries, goes on to later epochs.
    fn final_entry(&self) -> SerializedEntry {
        let value = self.epoch.value();
        SerializedEntry::new(format!("epoch {}", format_value(value)), NumericEntry::Final(value).serialize())
    }

    fn value(&self) -> Option<NumericEntry> {
        self.batch.and_then(Pool::entry)
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.epoch.entry()
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.epoch.value())
    }
}

/// The dashboard's text for a figure: four decimals, "N/A" for NaN.
fn format_value(value: f64) -> String {
    if value.is_nan() { "N/A".into() } else { format!("{value:.4}") }
}

/// burn-train's attributes of every figure here: unit-less, higher is better.
fn attributes() -> MetricAttributes {
    NumericAttributes { unit: None, higher_is_better: true }.into()
}

/// The default probability threshold, as `examples/train` evaluates.
const DEFAULT_THRESHOLD: f32 = 0.5;

/// Checks a probability threshold.
fn checked_threshold(threshold: f32) -> f32 {
    assert!((0.0..=1.0).contains(&threshold), "probability threshold {threshold} is outside [0, 1]");
    threshold
}

/// The name's qualifiers for a non-default threshold and connectivity.
fn qualifiers(threshold: f32, config: &MetricsConfig) -> Vec<String> {
    let mut out = Vec::new();
    if threshold != DEFAULT_THRESHOLD {
        out.push(format!("threshold {threshold}"));
    }
    if let Some(connectivity) = config.connectivity {
        out.push(format!("{connectivity:?} connectivity"));
    }
    out
}

/// Summed detection counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Counts {
    fn add(self, other: Self) -> Self {
        Self { tp: self.tp + other.tp, fp: self.fp + other.fp, fn_: self.fn_ + other.fn_ }
    }
}

/// Which ratio of the detection counts an [`InstanceMetric`] reports.
///
/// # Example
/// ```
/// use blob_loss::metrics::{InstanceFigure, InstanceMetric};
/// use burn::train::metric::Metric;
///
/// let metric = InstanceMetric::new(InstanceFigure::Sensitivity);
/// assert_eq!(metric.name().as_str(), InstanceMetric::sensitivity().name().as_str());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceFigure {
    /// `2 TP / (2 TP + FP + FN)` ([`CaseMetrics::f1`](super::CaseMetrics::f1), panoptica's RQ).
    F1,
    /// `TP / (TP + FN)`: the instance recall ([`CaseMetrics::recall`](super::CaseMetrics::recall)).
    Sensitivity,
    /// `TP / (TP + FP)` ([`CaseMetrics::precision`](super::CaseMetrics::precision)).
    Precision,
}

impl InstanceFigure {
    /// The ratio's numerator and denominator: the pooled figure is `sum / count`, and the
    /// denominator is the weight of a batch's ratio in burn-train's mean. The quotient of these
    /// exact integers is, bit for bit, [`Summary`](super::Summary)'s pooled figure.
    fn pool(self, counts: Counts) -> (f64, usize) {
        let Counts { tp, fp, fn_ } = counts;
        match self {
            Self::F1 => (2.0 * tp as f64, 2 * tp + fp + fn_),
            Self::Sensitivity => (tp as f64, tp + fn_),
            Self::Precision => (tp as f64, tp + fp),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::F1 => "F1",
            Self::Sensitivity => "sensitivity",
            Self::Precision => "precision",
        }
    }

    fn formula(self) -> &'static str {
        match self {
            Self::F1 => "2 TP / (2 TP + FP + FN)",
            Self::Sensitivity => "TP / (TP + FN)",
            Self::Precision => "TP / (TP + FP)",
        }
    }
}

/// Instance F1, sensitivity or precision as a burn-train numeric metric, pooled over the epoch.
///
/// Each batch's (element, channel) cases are scored with [`evaluate_probabilities`] (the
/// probabilities binarised at the threshold, default 0.5, labelled with the configuration's
/// connectivity, matched with its [`Matching`], default greedy IoU >= 0.5) and their true
/// positive, false positive and false negative counts summed. The epoch value is the ratio of
/// the epoch's summed counts, [`Summary`](super::Summary)'s `pooled_*` figure of all its cases:
/// every instance weighs the same. The value of a batch is its own pooled ratio, weighted in
/// burn-train's mean by the ratio's denominator; a batch without a denominator has no value, an
/// epoch without one is NaN (see the module source for burn-train's aggregation).
///
/// The name, which burn-train uses as the metric's id and file name, says the figure, the
/// matching and any non-default threshold or connectivity: register one metric per figure and
/// configuration. Each metric labels the predictions itself.
///
/// # Example
/// ```
/// use blob_loss::metrics::{InstanceMetric, InstanceMetricInput, Matching};
/// use burn::data::dataloader::Progress;
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::train::metric::{Metric, MetricMetadata, Numeric};
///
/// let device = Device::flex();
/// let metadata = MetricMetadata { progress: Progress::new(1, 1, None), iteration: None, lr: None };
/// let mut f1 = InstanceMetric::f1().with_matching(Matching::AnyOverlap);
/// assert_eq!(f1.name().as_str(), "Instance F1 (any overlap)");
/// // Two ground-truth instances; the prediction finds the first: TP 1, FN 1.
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 1, 0, 0, 2]]]], &device);
/// let probabilities = Tensor::<4>::from_floats([[[[0.9, 0.8, 0.1, 0.2, 0.3]]]], &device);
/// f1.update(&InstanceMetricInput::new(probabilities, instances), &metadata)?;
/// assert_eq!(f1.running_value().unwrap().current(), 2.0 / 3.0);
/// // burn-train calls compute (the epoch's final entry), then clear, at the end of each split.
/// f1.compute()?;
/// assert_eq!(f1.final_value().current(), 2.0 / 3.0);
/// f1.clear();
/// assert!(f1.running_value().is_none());
/// # Ok::<(), burn::tensor::TensorReadError>(())
/// ```
#[derive(Debug, Clone)]
pub struct InstanceMetric {
    figure: InstanceFigure,
    config: MetricsConfig,
    threshold: f32,
    name: Option<MetricName>,
    state: EpochPool,
}

impl InstanceMetric {
    /// The `figure` metric with the default configuration (greedy IoU >= 0.5 matching, full
    /// connectivity) and probability threshold 0.5.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::{InstanceFigure, InstanceMetric};
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(InstanceMetric::new(InstanceFigure::Precision).name().as_str(), "Instance precision (greedy IoU 0.5)");
    /// ```
    pub fn new(figure: InstanceFigure) -> Self {
        Self {
            figure,
            config: MetricsConfig::default(),
            threshold: DEFAULT_THRESHOLD,
            name: None,
            state: EpochPool::default(),
        }
    }

    /// Instance F1, `2 TP / (2 TP + FP + FN)`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(InstanceMetric::f1().name().as_str(), "Instance F1 (greedy IoU 0.5)");
    /// ```
    pub fn f1() -> Self {
        Self::new(InstanceFigure::F1)
    }

    /// Instance sensitivity (recall), `TP / (TP + FN)`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(InstanceMetric::sensitivity().name().as_str(), "Instance sensitivity (greedy IoU 0.5)");
    /// ```
    pub fn sensitivity() -> Self {
        Self::new(InstanceFigure::Sensitivity)
    }

    /// Instance precision, `TP / (TP + FP)`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(InstanceMetric::precision().name().as_str(), "Instance precision (greedy IoU 0.5)");
    /// ```
    pub fn precision() -> Self {
        Self::new(InstanceFigure::Precision)
    }

    /// With the matching and connectivity of `config` (its [`EmptyCase`](super::EmptyCase)
    /// plays no part: the pooled figure has no per-case ratio).
    ///
    /// # Panics
    /// When the matching threshold is outside `[0, 1]` ([`Matching::validate`]).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::{InstanceMetric, MatchScore, Matching, MetricsConfig};
    /// use burn::train::metric::Metric;
    ///
    /// let matching = Matching::Optimal { score: MatchScore::Dice, threshold: 0.1 };
    /// let metric = InstanceMetric::f1().with_config(MetricsConfig { matching, ..Default::default() });
    /// assert_eq!(metric.name().as_str(), "Instance F1 (optimal Dice 0.1)");
    /// ```
    pub fn with_config(mut self, config: MetricsConfig) -> Self {
        if let Err(err) = config.matching.validate() {
            panic!("{err}");
        }
        self.config = config;
        self
    }

    /// With `matching`, the rest of the configuration kept.
    ///
    /// # Panics
    /// As [`with_config`](Self::with_config).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::{InstanceMetric, Matching};
    /// use burn::train::metric::Metric;
    ///
    /// let metric = InstanceMetric::sensitivity().with_matching(Matching::AnyOverlap);
    /// assert_eq!(metric.name().as_str(), "Instance sensitivity (any overlap)");
    /// ```
    pub fn with_matching(self, matching: Matching) -> Self {
        let config = MetricsConfig { matching, ..self.config };
        self.with_config(config)
    }

    /// With the probability threshold: a voxel is predicted foreground when its probability is
    /// `>= threshold` (default 0.5).
    ///
    /// # Panics
    /// When `threshold` is outside `[0, 1]`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// let metric = InstanceMetric::f1().with_threshold(0.3);
    /// assert_eq!(metric.name().as_str(), "Instance F1 (greedy IoU 0.5, threshold 0.3)");
    /// ```
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = checked_threshold(threshold);
        self
    }

    /// With a name of your own instead of the generated one (burn-train identifies a metric,
    /// and names its log files, by its name: keep it unique among the registered metrics).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::InstanceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(InstanceMetric::f1().with_name("Lesion F1").name().as_str(), "Lesion F1");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::new(name.into()));
        self
    }
}

/// How a matching reads in a metric name (no characters that file names forbid).
fn matching_label(matching: Matching) -> String {
    let score = |score: MatchScore| match score {
        MatchScore::IoU => "IoU",
        MatchScore::Dice => "Dice",
    };
    match matching {
        Matching::AnyOverlap => "any overlap".into(),
        Matching::Greedy { score: s, threshold } => format!("greedy {} {threshold}", score(s)),
        Matching::Optimal { score: s, threshold } => format!("optimal {} {threshold}", score(s)),
    }
}

impl Metric for InstanceMetric {
    type Input = InstanceMetricInput;

    fn name(&self) -> MetricName {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut parts = vec![matching_label(self.config.matching)];
        parts.extend(qualifiers(self.threshold, &self.config));
        Arc::new(format!("Instance {} ({})", self.figure.label(), parts.join(", ")))
    }

    fn description(&self) -> Option<String> {
        Some(format!(
            "instance {}, {}, of the detection counts summed over the epoch's cases",
            self.figure.label(),
            self.figure.formula()
        ))
    }

    fn attributes(&self) -> MetricAttributes {
        attributes()
    }

    fn update(&mut self, item: &Self::Input, _metadata: &MetricMetadata) -> Result<SerializedEntry, TensorReadError> {
        let name = self.name();
        let counts = match item.read(&name)? {
            None => Counts::default(),
            Some(batch) => {
                let (threshold, config) = (self.threshold, self.config);
                batch
                    .per_slice(|probabilities, instances| {
                        let case = evaluate_probabilities(probabilities, threshold, instances, &config)?;
                        Ok(Counts { tp: case.true_positives, fp: case.false_positives, fn_: case.false_negatives })
                    })
                    .map_err(|err| failure(&name, err))?
                    .into_iter()
                    .fold(Counts::default(), Counts::add)
            }
        };
        let (sum, count) = self.figure.pool(counts);
        self.state.push(sum, count);
        Ok(self.state.update_entry())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.final_entry())
    }

    fn clear(&mut self) {
        self.state = EpochPool::default();
    }
}

impl Numeric for InstanceMetric {
    fn value(&self) -> Option<NumericEntry> {
        self.state.value()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.state.running_value()
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}

/// CC-Dice (CC-Metrics' per-component Dice on Voronoi cells) as a burn-train numeric metric,
/// pooled over the epoch.
///
/// Each batch's (element, channel) cases are scored with [`evaluate_cells`]: the probabilities
/// binarised at the threshold (default 0.5) against the instance map as a mask (its components
/// relabelled with the configuration's connectivity), with the voxel spacing (default 1 on
/// every axis). The epoch value is the mean CC-Dice over every cell of every case,
/// [`CellMetrics::pooled`]'s `dice` (a case without ground-truth components counts once, 1.0
/// when nothing is predicted, else 0.0); a batch's value is the mean over its cells, weighted
/// in burn-train's mean by its number of cells.
///
/// # Example
/// ```
/// use blob_loss::metrics::{CcDiceMetric, InstanceMetricInput};
/// use burn::data::dataloader::Progress;
/// use burn::tensor::{Device, Int, Tensor};
/// use burn::train::metric::{Metric, MetricMetadata, Numeric};
///
/// let device = Device::flex();
/// let metadata = MetricMetadata { progress: Progress::new(1, 1, None), iteration: None, lr: None };
/// let mut cc_dice = CcDiceMetric::new();
/// // Two lesions; the first is found with a false positive voxel in its cell, the second missed.
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 1, 0, 0, 0, 0, 0, 2]]]], &device);
/// let probabilities = Tensor::<4>::from_floats([[[[0.9, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0]]]], &device);
/// cc_dice.update(&InstanceMetricInput::new(probabilities, instances), &metadata)?;
/// let value = cc_dice.value().unwrap(); // cells: 2 * 2 / (3 + 2) and 0
/// assert_eq!((value.current(), cc_dice.running_value().unwrap().current()), (0.4, 0.4));
/// # Ok::<(), burn::tensor::TensorReadError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CcDiceMetric {
    config: MetricsConfig,
    threshold: f32,
    spacing: Option<Vec<f64>>,
    name: Option<MetricName>,
    state: EpochPool,
}

impl Default for CcDiceMetric {
    fn default() -> Self {
        Self::new()
    }
}

impl CcDiceMetric {
    /// CC-Dice with full connectivity, probability threshold 0.5 and unit voxel spacing.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::CcDiceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(CcDiceMetric::new().name().as_str(), "CC-Dice");
    /// ```
    pub fn new() -> Self {
        Self {
            config: MetricsConfig::default(),
            threshold: DEFAULT_THRESHOLD,
            spacing: None,
            name: None,
            state: EpochPool::default(),
        }
    }

    /// With the connectivity of `config` (its matching and empty case play no part in CC-Dice).
    ///
    /// # Example
    /// ```
    /// use blob_loss::components::Connectivity;
    /// use blob_loss::metrics::{CcDiceMetric, MetricsConfig};
    /// use burn::train::metric::Metric;
    ///
    /// let config = MetricsConfig { connectivity: Some(Connectivity::Four), ..Default::default() };
    /// assert_eq!(CcDiceMetric::new().with_config(config).name().as_str(), "CC-Dice (Four connectivity)");
    /// ```
    pub fn with_config(mut self, config: MetricsConfig) -> Self {
        self.config = config;
        self
    }

    /// With the probability threshold (default 0.5).
    ///
    /// # Panics
    /// When `threshold` is outside `[0, 1]`.
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::CcDiceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(CcDiceMetric::new().with_threshold(0.4).name().as_str(), "CC-Dice (threshold 0.4)");
    /// ```
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = checked_threshold(threshold);
        self
    }

    /// With the voxel spacing, one value per spatial axis (`[z, y, x]` in 3D), for the Voronoi
    /// cells. A spacing of the wrong length or with non-positive values makes `update` fail
    /// ([`voronoi`](crate::components::voronoi)'s errors).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::CcDiceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// let metric = CcDiceMetric::new().with_spacing(vec![3.0, 1.0, 1.0]);
    /// assert_eq!(metric.name().as_str(), "CC-Dice (spacing 3x1x1)");
    /// ```
    pub fn with_spacing(mut self, spacing: Vec<f64>) -> Self {
        self.spacing = Some(spacing);
        self
    }

    /// With a name of your own instead of the generated one (keep it unique among the
    /// registered metrics).
    ///
    /// # Example
    /// ```
    /// use blob_loss::metrics::CcDiceMetric;
    /// use burn::train::metric::Metric;
    ///
    /// assert_eq!(CcDiceMetric::new().with_name("Cell Dice").name().as_str(), "Cell Dice");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::new(name.into()));
        self
    }
}

impl Metric for CcDiceMetric {
    type Input = InstanceMetricInput;

    fn name(&self) -> MetricName {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut parts = qualifiers(self.threshold, &self.config);
        if let Some(spacing) = &self.spacing {
            let axes: Vec<String> = spacing.iter().map(f64::to_string).collect();
            parts.push(format!("spacing {}", axes.join("x")));
        }
        Arc::new(if parts.is_empty() { "CC-Dice".into() } else { format!("CC-Dice ({})", parts.join(", ")) })
    }

    fn description(&self) -> Option<String> {
        Some("mean CC-Dice over every ground-truth component's Voronoi cell of the epoch".into())
    }

    fn attributes(&self) -> MetricAttributes {
        attributes()
    }

    fn update(&mut self, item: &Self::Input, _metadata: &MetricMetadata) -> Result<SerializedEntry, TensorReadError> {
        let name = self.name();
        let dice: Vec<f64> = match item.read(&name)? {
            None => Vec::new(),
            Some(batch) => {
                let spacing = self.spacing.clone().unwrap_or_else(|| vec![1.0; batch.rank()]);
                let (threshold, config) = (self.threshold, self.config);
                let cases = batch
                    .per_slice(|probabilities, instances| {
                        if probabilities.iter().any(|p| p.is_nan()) {
                            return Err(Error::InvalidArgument("the probabilities contain NaN".into()));
                        }
                        let predicted = probabilities.mapv(|p| p >= threshold);
                        evaluate_cells(predicted.view(), instances, &spacing, &config)
                    })
                    .map_err(|err| failure(&name, err))?;
                // CellMetrics::pooled's terms, in its order: a case without cells adds its dice.
                cases
                    .iter()
                    .flat_map(|case: &CellMetrics| {
                        let empty = case.cells.is_empty().then_some(case.dice);
                        empty.into_iter().chain(case.cells.iter().map(|cell| cell.dice))
                    })
                    .collect()
            }
        };
        self.state.push_each(dice);
        Ok(self.state.update_entry())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.final_entry())
    }

    fn clear(&mut self) {
        self.state = EpochPool::default();
    }
}

impl Numeric for CcDiceMetric {
    fn value(&self) -> Option<NumericEntry> {
        self.state.value()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.state.running_value()
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}

#[cfg(test)]
mod tests {
    use burn::data::dataloader::Progress;
    use burn::tensor::{Device, TensorData};
    use burn::train::logger::{InMemoryMetricLogger, MetricLogger};
    use burn::train::metric::store::{MetricsUpdate, NumericMetricUpdate, Split};
    use burn::train::metric::{MetricDefinition, MetricEntry, MetricId};
    use ndarray::{Array2, s};

    use super::*;
    use crate::components::{Connectivity, label};
    use crate::metrics::{CaseMetrics, PooledCells, Summary};

    const H: usize = 10;
    const W: usize = 12;

    fn metadata() -> MetricMetadata {
        MetricMetadata { progress: Progress::new(1, 1, None), iteration: None, lr: None }
    }

    /// A small seeded generator (64-bit LCG), enough for test images.
    struct Lcg(u64);

    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: usize) -> usize {
            ((self.uniform() * n as f64) as usize).min(n - 1)
        }
    }

    /// One case: probabilities and the ground-truth instance map. `kind` 0: nothing on either
    /// side; 1: random lesions, some missed, some partly found, perhaps a false positive; 2: no
    /// ground truth, one false positive.
    fn case(rng: &mut Lcg, kind: usize) -> (Array2<f32>, Array2<u32>) {
        let mut mask = Array2::<u8>::zeros((H, W));
        let mut probabilities = Array2::<f32>::zeros((H, W));
        if kind == 1 {
            for _ in 0..1 + rng.below(4) {
                let (y, x, size) = (rng.below(H - 2), rng.below(W - 2), 1 + rng.below(2));
                mask.slice_mut(s![y..y + size, x..x + size]).fill(1);
            }
        }
        for (p, &m) in probabilities.iter_mut().zip(&mask) {
            // Background below the threshold; lesions from clearly missed to clearly found.
            *p = if m == 1 { 0.2 + 0.8 * rng.uniform() as f32 } else { 0.45 * rng.uniform() as f32 };
        }
        if kind == 2 || (kind == 1 && rng.uniform() < 0.4) {
            let (y, x) = (rng.below(H - 1), rng.below(W - 1));
            probabilities.slice_mut(s![y..y + 2, x..x + 2]).fill(0.9);
        }
        (probabilities, label(mask.view(), Connectivity::Eight).expect("a 2D mask").labels)
    }

    /// The `[B, C, H, W]` input of `cases`, element-major.
    fn input(cases: &[(Array2<f32>, Array2<u32>)], b: usize, c: usize) -> InstanceMetricInput {
        assert_eq!(cases.len(), b * c);
        let device = Device::flex();
        let probabilities: Vec<f32> = cases.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        let ids: Vec<i32> = cases.iter().flat_map(|(_, g)| g.iter().map(|&id| id as i32)).collect();
        InstanceMetricInput::new(
            Tensor::<4>::from_data(TensorData::new(probabilities, [b, c, H, W]), &device),
            Tensor::<4, Int>::from_data(TensorData::new(ids, [b, c, H, W]), &device),
        )
    }

    /// The figures the crate's own functions give for `cases`, pooled.
    fn expected(cases: &[(Array2<f32>, Array2<u32>)], config: &MetricsConfig) -> (Summary, PooledCells) {
        let scored: Vec<CaseMetrics> =
            cases.iter().map(|(p, g)| evaluate_probabilities(p.view(), 0.5, g.view(), config).unwrap()).collect();
        let cells: Vec<CellMetrics> = cases
            .iter()
            .map(|(p, g)| evaluate_cells(p.mapv(|v| v >= 0.5).view(), g.view(), &[1.0, 1.0], config).unwrap())
            .collect();
        (Summary::new(&scored), CellMetrics::pooled(&cells))
    }

    /// What burn-train's `NumericMetricsAggregate::aggregate` computes from an epoch's entries
    /// that end without a `Final` one: the count-weighted mean (`metric/store/aggregate.rs`).
    fn burn_train_mean(entries: &[NumericEntry]) -> f64 {
        let (sum, count) = entries.iter().fold((0.0f64, 0usize), |(sum, count), entry| match entry {
            NumericEntry::Aggregated { aggregated_value, count: n } => (sum + aggregated_value * *n as f64, count + n),
            NumericEntry::Value(value) => (sum + value, count + 1),
            other => panic!("a per-batch entry, not {other:?}"),
        });
        sum / count as f64
    }

    /// A per-batch entry's value and count.
    fn weighted(entry: Option<NumericEntry>) -> Option<(f64, usize)> {
        entry.map(|entry| match entry {
            NumericEntry::Aggregated { aggregated_value, count } => (aggregated_value, count),
            other => panic!("a count-weighted entry, not {other:?}"),
        })
    }

    /// Updates `metric` with `input`, keeping the batch's numeric entry as burn-train does.
    fn update<M: Metric<Input = InstanceMetricInput> + Numeric>(
        metric: &mut M,
        input: &InstanceMetricInput,
        entries: &mut Vec<NumericEntry>,
    ) -> SerializedEntry {
        let entry = metric.update(input, &metadata()).unwrap();
        match metric.value() {
            Some(value) => entries.push(value),
            None => assert!(entry.is_not_available(), "a batch without a value logs N/A"),
        }
        entry
    }

    #[test]
    fn the_epoch_figure_is_the_pooled_figure_over_unequal_batches() {
        for matching in [Matching::AnyOverlap, Matching::default()] {
            let config = MetricsConfig { matching, ..Default::default() };
            let mut instance = [InstanceMetric::f1(), InstanceMetric::sensitivity(), InstanceMetric::precision()]
                .map(|metric| metric.with_config(config));
            let mut cc_dice = CcDiceMetric::new().with_config(config);
            let (mut entries, mut cc_entries): ([Vec<NumericEntry>; 3], _) = Default::default();
            let mut rng = Lcg(7);
            let mut all = Vec::new();
            let mut index = 0;
            for (b, c) in [(3, 2), (1, 2), (5, 2), (2, 2), (1, 2)] {
                let cases: Vec<_> = (0..b * c)
                    .map(|_| {
                        index += 1;
                        case(&mut rng, [0, 1, 1, 2, 1][index % 5])
                    })
                    .collect();
                let batch = input(&cases, b, c);
                for (metric, entries) in instance.iter_mut().zip(&mut entries) {
                    update(metric, &batch, entries);
                }
                update(&mut cc_dice, &batch, &mut cc_entries);
                all.extend(cases);
            }
            let (summary, cells) = expected(&all, &config);
            let counts = (summary.true_positives, summary.false_positives, summary.false_negatives);
            assert!(counts.0 > 0 && counts.1 > 0 && counts.2 > 0, "{matching:?}: {counts:?}, a case of every kind");
            let want = [summary.pooled_f1, summary.pooled_recall, summary.pooled_precision];
            for ((metric, entries), want) in instance.iter_mut().zip(&entries).zip(want) {
                let name = metric.name();
                // Exact: the same quotient of the same integers as Summary's.
                assert_eq!(metric.running_value().unwrap().current(), want, "{name}");
                metric.compute().unwrap();
                assert_eq!(metric.final_value().current(), want, "{name}");
                assert!((burn_train_mean(entries) - want).abs() < 1e-12, "{name}: {}", burn_train_mean(entries));
            }
            // The cells' Dice values are summed in CellMetrics::pooled's order: equal up to the
            // rounding of that sum at most.
            assert!(cells.cells > 0);
            assert!((cc_dice.running_value().unwrap().current() - cells.dice).abs() < 1e-12);
            cc_dice.compute().unwrap();
            assert!((cc_dice.final_value().current() - cells.dice).abs() < 1e-12);
            assert!((burn_train_mean(&cc_entries) - cells.dice).abs() < 1e-12);
        }
    }

    #[test]
    fn burn_trains_logger_reads_back_the_pooled_figure() {
        let mut f1 = InstanceMetric::f1();
        let id = MetricId::new(f1.name());
        let mut logger = InMemoryMetricLogger::new();
        logger.log_metric_definition(MetricDefinition::new(id.clone(), &f1));
        let mut log = |entry: SerializedEntry, numeric: Option<NumericEntry>| {
            let update = NumericMetricUpdate::new(MetricEntry::new(id.clone(), entry), numeric, None);
            logger.log(MetricsUpdate::new(Vec::new(), vec![update]), 1, &Split::Valid);
        };
        let mut rng = Lcg(11);
        let (mut all, mut entries) = (Vec::new(), Vec::new());
        // Batches of 4, 0 (nothing on either side: no value) and 3 cases.
        for kinds in [&[1, 1, 2, 1][..], &[0], &[1, 0, 1]] {
            let cases: Vec<_> = kinds.iter().map(|&kind| case(&mut rng, kind)).collect();
            let entry = update(&mut f1, &input(&cases, cases.len(), 1), &mut entries);
            log(entry, f1.value());
            all.extend(cases);
        }
        let entry = f1.compute().unwrap();
        log(entry, Some(f1.final_value()));
        let want = expected(&all, &MetricsConfig::default()).0.pooled_f1;
        let points = logger.read_numeric(&f1.name(), 1, &Split::Valid).unwrap();
        assert_eq!(points.len(), 3, "two batches with a value and the final entry: {points:?}");
        // burn-train takes the last entry when it is Final (metric/store/aggregate.rs) ...
        match points.last() {
            Some(NumericEntry::Final(value)) => assert_eq!(*value, want),
            other => panic!("the epoch ends with its final entry, not {other:?}"),
        }
        // ... and the weighted mean of the others would give the same.
        assert!((burn_train_mean(&points[..2]) - want).abs() < 1e-12);
    }

    #[test]
    fn batches_without_a_denominator_have_no_value() {
        let device = Device::flex();
        let mut instance = [InstanceMetric::f1(), InstanceMetric::sensitivity(), InstanceMetric::precision()];
        let mut cc_dice = CcDiceMetric::new();
        // Nothing on either side: no instance figure, one empty case for CC-Dice (1.0).
        let nothing = input(&[(Array2::zeros((H, W)), Array2::zeros((H, W)))], 1, 1);
        for metric in &mut instance {
            let entry = metric.update(&nothing, &metadata()).unwrap();
            assert!(entry.is_not_available() && metric.value().is_none() && metric.running_value().is_none());
            let last = metric.compute().unwrap();
            assert!(metric.final_value().current().is_nan());
            // A NaN final entry is still logged and read back: the epochs after it are compared.
            assert!(matches!(NumericEntry::deserialize(&last.serialized), Ok(NumericEntry::Final(v)) if v.is_nan()));
        }
        cc_dice.update(&nothing, &metadata()).unwrap();
        assert_eq!(weighted(cc_dice.value()), Some((1.0, 1)));
        // No element at all.
        let empty = InstanceMetricInput::new(
            Tensor::<4>::from_data(TensorData::new(Vec::<f32>::new(), [0, 1, H, W]), &device),
            Tensor::<4, Int>::from_data(TensorData::new(Vec::<i32>::new(), [0, 1, H, W]), &device),
        );
        assert!(cc_dice.update(&empty, &metadata()).unwrap().is_not_available() && cc_dice.value().is_none());
        assert_eq!(cc_dice.running_value().unwrap().current(), 1.0);
        // Ground truth, no prediction: no precision; sensitivity and F1 are 0, with weight 1.
        let mut lesion = Array2::<u32>::zeros((H, W));
        lesion[[2, 3]] = 1;
        let missed = input(&[(Array2::zeros((H, W)), lesion.clone())], 1, 1);
        let [f1, sensitivity, precision] = &mut instance;
        f1.clear();
        sensitivity.clear();
        precision.clear();
        assert!(precision.update(&missed, &metadata()).unwrap().is_not_available());
        sensitivity.update(&missed, &metadata()).unwrap();
        f1.update(&missed, &metadata()).unwrap();
        for metric in [&*f1, &*sensitivity] {
            assert_eq!(weighted(metric.value()), Some((0.0, 1)), "{}", metric.name());
        }
        // Then the lesion found: precision is that batch's alone, the others pool both.
        let found = input(&[(lesion.mapv(|id| id as f32), lesion)], 1, 1);
        for metric in [&mut *f1, &mut *sensitivity, &mut *precision] {
            metric.update(&found, &metadata()).unwrap();
        }
        assert_eq!(precision.running_value().unwrap().current(), 1.0);
        assert_eq!(sensitivity.running_value().unwrap().current(), 0.5);
        assert_eq!(f1.running_value().unwrap().current(), 2.0 / 3.0);
    }

    #[test]
    fn clear_starts_a_new_epoch() {
        let mut rng = Lcg(3);
        let first: Vec<_> = (0..4).map(|_| case(&mut rng, 1)).collect();
        let second: Vec<_> = (0..2).map(|_| case(&mut rng, 1)).collect();
        let mut f1 = InstanceMetric::f1();
        let mut cc_dice = CcDiceMetric::new();
        f1.update(&input(&first, 2, 2), &metadata()).unwrap();
        cc_dice.update(&input(&first, 4, 1), &metadata()).unwrap();
        f1.clear();
        cc_dice.clear();
        assert!(f1.value().is_none() && f1.running_value().is_none() && f1.final_value().current().is_nan());
        assert!(cc_dice.value().is_none() && cc_dice.running_value().is_none());
        f1.update(&input(&second, 1, 2), &metadata()).unwrap();
        cc_dice.update(&input(&second, 2, 1), &metadata()).unwrap();
        let (summary, cells) = expected(&second, &MetricsConfig::default());
        assert_eq!(f1.final_value().current().to_bits(), summary.pooled_f1.to_bits());
        assert!((cc_dice.final_value().current() - cells.dice).abs() < 1e-12);
    }

    #[test]
    fn three_dimensional_batches() {
        let device = Device::flex();
        let mut ids = vec![0i32; 2 * 2 * 4 * 4];
        for z in 0..2 {
            ids[z * 16 + 5] = 1; // one lesion through both slices of the first element
        }
        ids[32 + 15] = 2; // one voxel in the second element
        let probabilities: Vec<f32> = ids.iter().map(|&id| if id == 1 { 0.8 } else { 0.1 }).collect();
        let batch = InstanceMetricInput::new(
            Tensor::<5>::from_data(TensorData::new(probabilities, [2, 1, 2, 4, 4]), &device),
            Tensor::<5, Int>::from_data(TensorData::new(ids, [2, 1, 2, 4, 4]), &device),
        );
        let mut sensitivity = InstanceMetric::sensitivity();
        sensitivity.update(&batch, &metadata()).unwrap();
        assert_eq!(sensitivity.running_value().unwrap().current(), 0.5);
        let mut cc_dice = CcDiceMetric::new().with_spacing(vec![2.0, 1.0, 1.0]);
        cc_dice.update(&batch, &metadata()).unwrap();
        assert_eq!(cc_dice.running_value().unwrap().current(), 0.5);
        // A 2D spacing for 3D cases is the caller's error, reported as the metric's failure.
        let err = CcDiceMetric::new().with_spacing(vec![1.0, 1.0]).update(&batch, &metadata()).unwrap_err();
        assert!(err.to_string().contains("CC-Dice (spacing 1x1)"), "{err}");
    }

    #[test]
    fn invalid_values_fail_the_update_and_leave_the_state() {
        let device = Device::flex();
        let mut f1 = InstanceMetric::f1();
        let nan = InstanceMetricInput::new(
            Tensor::<4>::from_floats([[[[f32::NAN, 0.9]]]], &device),
            Tensor::<4, Int>::from_ints([[[[1, 0]]]], &device),
        );
        let err = f1.update(&nan, &metadata()).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
        assert!(CcDiceMetric::new().update(&nan, &metadata()).is_err());
        let negative = InstanceMetricInput::new(
            Tensor::<4>::from_floats([[[[0.1, 0.9]]]], &device),
            Tensor::<4, Int>::from_ints([[[[-1, 0]]]], &device),
        );
        let err = f1.update(&negative, &metadata()).unwrap_err();
        assert!(err.to_string().contains("negative instance id -1"), "{err}");
        assert!(f1.value().is_none() && f1.running_value().is_none());
    }

    #[test]
    #[should_panic(expected = "same shape")]
    fn shapes_must_match() {
        let device = Device::flex();
        InstanceMetricInput::new(
            Tensor::<4>::zeros([1, 1, 2, 2], &device),
            Tensor::<4, Int>::zeros([1, 1, 2, 3], &device),
        );
    }

    #[test]
    #[should_panic(expected = "rank 3")]
    fn batches_are_2d_or_3d() {
        let device = Device::flex();
        InstanceMetricInput::new(Tensor::<3>::zeros([1, 1, 2], &device), Tensor::<3, Int>::zeros([1, 1, 2], &device));
    }

    #[test]
    #[should_panic(expected = "outside [0, 1]")]
    fn thresholds_are_probabilities() {
        let _ = InstanceMetric::f1().with_threshold(1.5);
    }

    #[test]
    fn names_are_distinct_and_safe_as_file_names() {
        let any = MetricsConfig { matching: Matching::AnyOverlap, ..Default::default() };
        let names: [MetricName; 9] = [
            InstanceMetric::f1().name(),
            InstanceMetric::sensitivity().name(),
            InstanceMetric::precision().name(),
            InstanceMetric::f1().with_config(any).name(),
            InstanceMetric::f1().with_matching(Matching::Optimal { score: MatchScore::IoU, threshold: 0.5 }).name(),
            InstanceMetric::f1().with_threshold(0.7).name(),
            InstanceMetric::f1()
                .with_config(MetricsConfig { connectivity: Some(Connectivity::Four), ..Default::default() })
                .name(),
            CcDiceMetric::new().name(),
            CcDiceMetric::new().with_threshold(0.7).name(),
        ];
        for (i, name) in names.iter().enumerate() {
            assert!(!name.contains(['/', '\\', '<', '>', ':', '"', '|', '?', '*']), "{name}");
            assert!(names[..i].iter().all(|other| other != name), "{name} twice");
        }
        assert_eq!(names[3].as_str(), "Instance F1 (any overlap)");
        assert_eq!(names[6].as_str(), "Instance F1 (greedy IoU 0.5, Four connectivity)");
        let description = InstanceMetric::precision().description().unwrap();
        assert!(description.contains("TP / (TP + FP)"), "{description}");
        assert!(matches!(CcDiceMetric::new().attributes(), MetricAttributes::Numeric(a) if a.higher_is_better));
    }
}
