//! The CC family as its papers' code computes it: BiCC (TIO-IKIM/BiCC-Loss,
//! `VectorizedBiCCLoss`) and its ground-truth branch, the CC loss (`VectorizedCCLoss`), and
//! CC-DiceCE of "Learning to Look Closer" (ossner/Learning-to-Look-Closer, `CCMetrics` with
//! `_component_dice_ce_loss`); `scripts/cc_parity.py` checks them against that code.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{FloatDType, Int, Tensor};

use super::bins::check_bins;
use super::cell_maps::{Cells, Foreground, Partition, bin_maps, check_logits};
use super::cell_term::{BranchSums, branch_rows};
use super::config::MAX_BINS;
use super::sums::device::host_backed;
use super::sums::{Engine, InstanceSumsSpec, Statistic, SumInput, sums_unchecked};
use crate::Error;

/// What a cell without ground truth scores in the prediction branch (BiCC's `empty_cell_loss`).
///
/// # Example
/// ```
/// use blob_loss::loss::{BiccLossConfig, EmptyCellLoss};
///
/// // BiCC's "SmoothedDice" ablation.
/// let config = BiccLossConfig::new().with_empty_cell_loss(EmptyCellLoss::Dice).with_prediction_dice_smooth(Some(1e-5));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum EmptyCellLoss {
    /// `sum(p sg(p)) / sg(sum p)` over the whole cell (`sg`: no gradient): the value is
    /// `sum p^2 / sum p`, the gradient pushes every voxel of the cell down by `p / sum p`, the same
    /// pull for a false positive of 5 voxels and one of 5,000. BiCC's default.
    Detached,
    /// The cell's Dice like any other; with a smoothing of 0 it is the constant 1 (no gradient),
    /// so BiCC's ablation sets `prediction_dice_smooth` to `1e-5`.
    Dice,
}

/// The terms every cell scores (BiCC's `mode`).
///
/// # Example
/// ```
/// use blob_loss::loss::{BiccLossConfig, CellTerms};
///
/// let dice_only = BiccLossConfig::new().with_terms(CellTerms::Dice);
/// assert!(dice_only.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum CellTerms {
    /// The cell's soft Dice (or the detached term of an empty cell).
    Dice,
    /// The cell's mean cross-entropy.
    CrossEntropy,
    /// Both, summed: BiCC's and CC-DiceCE's default.
    DiceCrossEntropy,
}

/// Configuration of [`BiccLoss`], the CC family as published: BiCC, the CC loss and CC-DiceCE.
///
/// The defaults are those of BiCC's `VectorizedBiCCLoss` and of its paper's trainers:
/// `(1 - alpha) * CC(ground-truth cells) + alpha * CC(prediction cells)` with `alpha = 0.5`,
/// Dice + cross-entropy per cell, no smoothing, the detached term for prediction cells without
/// ground truth. [`cc_loss`](Self::cc_loss) is BiCC's `VectorizedCCLoss` (`alpha = 0`), and
/// [`cc_dice_ce`](Self::cc_dice_ce) the CC-DiceCE of "Learning to Look Closer".
///
/// # Example
/// ```
/// use blob_loss::loss::BiccLossConfig;
///
/// let bicc = BiccLossConfig::new().with_spacing(Some(vec![3.0, 1.0, 1.0]));
/// assert_eq!(bicc.alpha, 0.5);
/// assert_eq!(BiccLossConfig::cc_dice_ce().alpha, 0.0);
/// assert!(bicc.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct BiccLossConfig {
    /// The weight of the prediction branch; the ground-truth branch weighs `1 - alpha`. In
    /// `[0, 1]`; a branch of weight 0 is not computed.
    #[config(default = 0.5)]
    pub alpha: f64,
    /// `s` of the ground-truth branch's Dice, `1 - (2 I + s) / max(P + G + s, dice_floor)`.
    #[config(default = 0.0)]
    pub dice_smooth: f64,
    /// `s` of the prediction branch's Dice; `None`: `dice_smooth`.
    #[config(default = "None")]
    pub prediction_dice_smooth: Option<f64>,
    /// What a prediction cell without ground truth scores.
    #[config(default = "EmptyCellLoss::Detached")]
    pub empty_cell_loss: EmptyCellLoss,
    /// The terms of every cell.
    #[config(default = "CellTerms::DiceCrossEntropy")]
    pub terms: CellTerms,
    /// A voxel is predicted where its class-1 softmax probability is strictly above this.
    #[config(default = 0.5)]
    pub threshold: f64,
    /// The voxel spacing, one value per spatial axis, for the Voronoi cells; `None`: 1.
    #[config(default = "None")]
    pub spacing: Option<Vec<f64>>,
    /// The training patch size, one value per spatial axis: outputs smaller than the patch (deep
    /// supervision) take `spacing * patch_size / shape` per axis. Only with `spacing`.
    #[config(default = "None")]
    pub patch_size: Option<Vec<usize>>,
    /// The floor of the Dice denominators and of the detached term's `sum p` (BiCC: `1e-8`,
    /// CC-DiceCE: `1e-7`).
    #[config(default = 1e-8)]
    pub dice_floor: f64,
    /// CC-DiceCE's cross-entropy `-ln(max(p_y, floor))`, whose gradient is 0 where `p_y < floor`;
    /// `None` (BiCC): the log-softmax, unclamped.
    #[config(default = "None")]
    pub probability_floor: Option<f64>,
    /// How the per-cell sums are computed.
    #[config(default = "Engine::Fused")]
    pub engine: Engine,
    /// The most bins one call may allocate per branch (batch elements x (2 + 2 x the cells of
    /// the fullest element of either branch: the two branches' bins share one layout)); beyond,
    /// [`BiccLoss::try_forward`] returns [`Error::TooManyInstances`] before allocating (a noisy
    /// prediction early in training can have as many components as voxels).
    #[config(default = "MAX_BINS")]
    pub max_bins: usize,
}

impl BiccLossConfig {
    /// BiCC's `VectorizedCCLoss`: the ground-truth branch alone (`alpha = 0`).
    pub fn cc_loss() -> Self {
        Self::new().with_alpha(0.0)
    }

    /// CC-DiceCE of "Learning to Look Closer" (Bouteille et al., ISBI 2026): the ground-truth
    /// cells, Dice `1 - 2 I / max(P + G, 1e-7)` plus the mean of `-ln(max(p_y, 1e-7))`, and an
    /// element without ground truth scored as one whole-image cell.
    pub fn cc_dice_ce() -> Self {
        Self::new().with_alpha(0.0).with_dice_floor(1e-7).with_probability_floor(Some(1e-7))
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `alpha` outside `[0, 1]`, a negative or non-finite smoothing,
    /// a threshold outside `(0, 1)`, a floor that is not positive and finite (a probability
    /// floor below 1), a spacing that is not positive and finite, a zero patch size, or a patch
    /// size without a spacing.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::InvalidConfig(message));
        if !(0.0..=1.0).contains(&self.alpha) {
            return invalid(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        for (name, value) in
            [("dice_smooth", Some(self.dice_smooth)), ("prediction_dice_smooth", self.prediction_dice_smooth)]
        {
            if let Some(value) = value.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return invalid(format!("{name} must be finite and >= 0, got {value}"));
            }
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return invalid(format!("threshold must be in (0, 1), got {}", self.threshold));
        }
        if !(self.dice_floor.is_finite() && self.dice_floor > 0.0) {
            return invalid(format!("dice_floor must be finite and > 0, got {}", self.dice_floor));
        }
        if let Some(floor) = self.probability_floor.filter(|f| !(*f > 0.0 && *f < 1.0)) {
            return invalid(format!("probability_floor must be in (0, 1), got {floor}"));
        }
        if let Some(bad) = self.spacing.iter().flatten().find(|s| !(s.is_finite() && **s > 0.0)) {
            return invalid(format!("spacing must be positive and finite, got {bad}"));
        }
        match (&self.spacing, &self.patch_size) {
            (_, Some(patch)) if patch.contains(&0) => invalid(format!("patch_size must be positive, got {patch:?}")),
            (Some(spacing), Some(patch)) if spacing.len() != patch.len() => invalid(format!(
                "patch_size has {} values and spacing {}: give one per spatial axis",
                patch.len(),
                spacing.len()
            )),
            (None, Some(_)) => invalid(
                "patch_size rescales the spacing: give the spacing too (the published code ignores a patch size \
                 without one)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Builds the loss.
    ///
    /// # Panics
    /// When [`validate`](Self::validate) fails, with its message.
    pub fn init(&self) -> BiccLoss {
        self.try_init().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the loss, or says why the configuration is invalid.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn try_init(&self) -> Result<BiccLoss, Error> {
        self.validate()?;
        Ok(BiccLoss { config: self.clone() })
    }

    /// The spacing the cells of outputs with spatial shape `spatial` are built with: 1 per axis
    /// without [`spacing`](Self::spacing), `spacing * patch_size / spatial` per axis with a
    /// [`patch_size`](Self::patch_size) (deep-supervision outputs smaller than the patch).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the spacing does not have one value per spatial axis.
    ///
    /// # Example
    /// ```
    /// use blob_loss::loss::BiccLossConfig;
    ///
    /// let config = BiccLossConfig::new().with_spacing(Some(vec![2.0, 1.0, 1.0])).with_patch_size(Some(vec![8, 6, 6]));
    /// assert_eq!(config.effective_spacing(&[4, 6, 6])?, [4.0, 1.0, 1.0]);
    /// # Ok::<(), blob_loss::Error>(())
    /// ```
    pub fn effective_spacing(&self, spatial: &[usize]) -> Result<Vec<f64>, Error> {
        let Some(spacing) = &self.spacing else {
            return Ok(vec![1.0; spatial.len()]);
        };
        if spacing.len() != spatial.len() {
            return Err(Error::InvalidArgument(format!(
                "the spacing has {} values for {} spatial axes",
                spacing.len(),
                spatial.len()
            )));
        }
        Ok(match &self.patch_size {
            Some(patch) => {
                spacing.iter().zip(patch).zip(spatial).map(|((&s, &p), &n)| s * p as f64 / n as f64).collect()
            }
            None => spacing.clone(),
        })
    }
}

/// The targets of [`BiccLoss`]: the ground-truth mask and, optionally, the partitions the loss
/// would otherwise compute itself.
///
/// A mask converts into targets (`From`), so `loss.forward(logits, mask)` works as it is.
///
/// # Example
/// ```
/// use blob_loss::loss::{BiccLossConfig, BiccTargets};
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let mask = Tensor::<4, Int>::from_ints([[[[1, 0, 0, 1]]]], &device);
/// // The ground-truth cells, made once in the batcher (here: two components, two cells).
/// let cells = Tensor::<4, Int>::from_ints([[[[1, 1, 2, 2]]]], &device);
/// let targets = BiccTargets::new(mask).with_cells(cells);
/// let logits = Tensor::<4>::zeros([1, 2, 1, 4], &device);
/// let value: f32 = BiccLossConfig::new().init().try_forward(logits, targets)?.into_scalar();
/// assert!(value.is_finite());
/// # Ok::<(), blob_loss::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BiccTargets<const D: usize> {
    /// The ground truth, `[B, 1, spatial..]`: a positive value is foreground (an instance map
    /// works: its foreground is relabelled with full connectivity, as the published code labels
    /// its mask), 0 background.
    pub mask: Tensor<D, Int>,
    /// The ground truth's Voronoi cells, `[B, 1, spatial..]`: the label of each voxel's nearest
    /// component (for example `voronoi_batch` of `label_batch` with full connectivity, with the
    /// loss's spacing), 0 for no cell. `None`: computed from the mask on every call.
    pub cells: Option<Tensor<D, Int>>,
    /// The prediction's Voronoi cells, `[B, 1, spatial..]` (as [`prediction_cells`](super::prediction_cells) makes
    /// them). `None`: computed from the outputs on every call, as the published code does.
    pub prediction_cells: Option<Tensor<D, Int>>,
}

impl<const D: usize> BiccTargets<D> {
    /// Targets of a mask alone.
    pub fn new(mask: Tensor<D, Int>) -> Self {
        Self { mask, cells: None, prediction_cells: None }
    }

    /// With the ground truth's Voronoi cells.
    pub fn with_cells(self, cells: Tensor<D, Int>) -> Self {
        Self { cells: Some(cells), ..self }
    }

    /// With the prediction's Voronoi cells.
    pub fn with_prediction_cells(self, cells: Tensor<D, Int>) -> Self {
        Self { prediction_cells: Some(cells), ..self }
    }
}

impl<const D: usize> From<Tensor<D, Int>> for BiccTargets<D> {
    fn from(mask: Tensor<D, Int>) -> Self {
        Self::new(mask)
    }
}

/// The loss of [`BiccLoss`] and its two branches.
#[derive(Debug, Clone)]
pub struct BiccLossOutput {
    /// `(1 - alpha) * ground_truth + alpha * prediction`, shape `[1]`.
    pub total: Tensor<1>,
    /// The branch of the ground-truth cells (the CC loss), unweighted, shape `[1]`; 0 when
    /// `alpha` is 1 (not computed).
    pub ground_truth: Tensor<1>,
    /// The branch of the prediction's cells, unweighted, shape `[1]`; 0 when `alpha` is 0 (not
    /// computed).
    pub prediction: Tensor<1>,
}

/// The branches of every batch element before the mean over the batch, `[B]` each (0 for a
/// branch that is not computed).
#[derive(Debug, Clone)]
pub struct BiccUnreduced {
    /// The ground-truth branch of every element.
    pub ground_truth: Tensor<1>,
    /// The prediction branch of every element.
    pub prediction: Tensor<1>,
}

/// BiCC, the CC loss and CC-DiceCE, as their published code computes them; stateless.
///
/// - `logits`: `[B, 2, spatial..]`, the two classes' logits (softmax inside), or `[B, 1,
///   spatial..]`, the logit of class 1 against a class 0 of logit 0 (a sigmoid network: the
///   same loss as the logits `(0, x)`); 2 or 3 spatial axes.
/// - `targets`: the ground-truth mask `[B, 1, spatial..]` or [`BiccTargets`].
///
/// For each partition (the ground truth's components, and the components of the prediction,
/// `p > threshold`), with full connectivity (8 neighbours in 2D, 26 in 3D): every voxel belongs
/// to the Voronoi cell of its nearest component. Each non-empty cell `k` scores its Dice
/// `1 - (2 I_k + s) / max(P_k + G_k + s, floor)` (or, for a prediction cell holding no ground
/// truth, the [`EmptyCellLoss`]) plus its mean cross-entropy; an element's branch is the mean
/// over its cells, or, without any cell, the Dice and mean cross-entropy of the whole volume;
/// each branch is the mean over the batch. No gradient flows through the threshold, the labels
/// or the cells. The cells are computed where the tensors live: on flex by the host code, in the
/// tensors' memory; on wgpu and cuda by the kernels of
/// [`label_tensor`](crate::components::label_tensor) and
/// [`voronoi_tensor`](crate::components::voronoi_tensor), so a GPU step reads back one integer
/// per branch (its number of cells) and no voxel map. The sums run on the device, one pass over
/// the voxels for both branches (one bin map each).
///
/// # Example
/// ```
/// use blob_loss::loss::BiccLossConfig;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex().autodiff();
/// let logits = Tensor::<4>::zeros([1, 2, 4, 4], &device).require_grad();
/// let mut mask = [[[[0i32; 4]; 4]]];
/// mask[0][0][1][1] = 1;
/// let loss = BiccLossConfig::new().init().forward(logits.clone(), Tensor::<4, Int>::from_ints(mask, &device));
/// let grads = loss.backward();
/// assert!(logits.grad(&grads).is_some());
/// ```
#[derive(Module, Debug)]
pub struct BiccLoss {
    /// The configuration it was built from.
    #[module(skip)]
    pub config: BiccLossConfig,
}

impl BiccLoss {
    /// The loss, shape `[1]`.
    ///
    /// # Panics
    /// With the message of the error [`try_forward`](Self::try_forward) would return.
    pub fn forward<const D: usize>(&self, logits: Tensor<D>, targets: impl Into<BiccTargets<D>>) -> Tensor<1> {
        self.try_forward(logits, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward`](Self::forward), returning bad input as an error.
    ///
    /// # Errors
    /// [`Error::UnsupportedRank`] unless the logits have 2 or 3 spatial axes,
    /// [`Error::ShapeMismatch`] for a map that is not `[B, 1, spatial..]`,
    /// [`Error::InvalidArgument`] for 3 or more channels, a zero-sized axis, a negative mask
    /// value or cell id, or a spacing with the wrong number of values,
    /// [`Error::NegativeInstanceId`], [`Error::TooManyInstances`] for more cells than
    /// [`max_bins`](BiccLossConfig::max_bins) allows; on the CPU backend,
    /// [`Error::NonFiniteLoss`] when the logits hold NaN.
    pub fn try_forward<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: impl Into<BiccTargets<D>>,
    ) -> Result<Tensor<1>, Error> {
        Ok(self.try_forward_parts(logits, targets)?.total)
    }

    /// The loss with its two branches.
    ///
    /// # Panics
    /// With the message of the error [`try_forward_parts`](Self::try_forward_parts) would return.
    pub fn forward_parts<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: impl Into<BiccTargets<D>>,
    ) -> BiccLossOutput {
        self.try_forward_parts(logits, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_parts`](Self::forward_parts), returning bad input as an error.
    ///
    /// # Errors
    /// As [`try_forward`](Self::try_forward).
    pub fn try_forward_parts<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: impl Into<BiccTargets<D>>,
    ) -> Result<BiccLossOutput, Error> {
        let dtype = FloatDType::from(logits.dtype());
        let rows = self.rows(logits, targets.into())?;
        let alpha = self.config.alpha;
        let ground_truth = rows.ground_truth.mean();
        let prediction = rows.prediction.mean();
        let total = ground_truth.clone() * (1.0 - alpha) + prediction.clone() * alpha;
        if host_backed(&total.device()) {
            let value = total.clone().into_scalar::<f64>();
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss { value });
            }
        }
        Ok(BiccLossOutput {
            total: total.cast(dtype),
            ground_truth: ground_truth.cast(dtype),
            prediction: prediction.cast(dtype),
        })
    }

    /// The branches of every element before the mean over the batch.
    ///
    /// # Panics
    /// With the message of the error [`try_forward_no_reduction`](Self::try_forward_no_reduction)
    /// would return.
    ///
    /// # Example
    /// ```
    /// use blob_loss::loss::BiccLossConfig;
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let mask = Tensor::<4, Int>::from_ints([[[[1, 0, 0, 0]]], [[[0, 0, 0, 0]]]], &device);
    /// let rows = BiccLossConfig::new().init().forward_no_reduction(Tensor::<4>::zeros([2, 2, 1, 4], &device), mask);
    /// assert_eq!(rows.ground_truth.dims(), [2]);
    /// ```
    pub fn forward_no_reduction<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: impl Into<BiccTargets<D>>,
    ) -> BiccUnreduced {
        self.try_forward_no_reduction(logits, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_no_reduction`](Self::forward_no_reduction), returning bad input as an error.
    ///
    /// # Errors
    /// As [`try_forward`](Self::try_forward), except [`Error::NonFiniteLoss`].
    pub fn try_forward_no_reduction<const D: usize>(
        &self,
        logits: Tensor<D>,
        targets: impl Into<BiccTargets<D>>,
    ) -> Result<BiccUnreduced, Error> {
        let dtype = FloatDType::from(logits.dtype());
        let rows = self.rows(logits, targets.into())?;
        Ok(BiccUnreduced { ground_truth: rows.ground_truth.cast(dtype), prediction: rows.prediction.cast(dtype) })
    }

    /// Both branches of every element, in the sums' dtype.
    fn rows<const D: usize>(&self, logits: Tensor<D>, targets: BiccTargets<D>) -> Result<BiccUnreduced, Error> {
        let config = &self.config;
        let dims = logits.dims();
        check_inputs(dims, &targets)?;
        let (batch, channels) = (dims[0], dims[1]);
        let spatial = &dims[2..];
        let voxels: usize = spatial.iter().product();
        let spacing = config.effective_spacing(spatial)?;
        let device = logits.device();
        let mut shape = dims;
        shape[1] = 1;
        let foreground = Foreground::of_mask(targets.mask)?;
        // The margin `l1 - l0`: the class-1 probability is its sigmoid, the cross-entropy its
        // softplus, and the gradient reaches the two logits as `(-g, g)`.
        let margin = match channels {
            2 => logits.clone().narrow(1, 1, 1) - logits.clone().narrow(1, 0, 1),
            _ => logits.clone(),
        }
        .reshape([batch, voxels]);
        // The partitions of the branches computed (a branch of weight 0 is not), each with its
        // Dice smoothing and whether a cell may hold no ground truth (not in the ground truth's
        // own cells, each of which holds its component).
        let mut branches: Vec<(Partition, f64, bool)> = Vec::with_capacity(2);
        if config.alpha != 1.0 {
            branches.push(match targets.cells {
                Some(cells) => (Partition::Cells(Cells::given(cells, "cell")?), config.dice_smooth, true),
                None => {
                    let cells = Partition::of_mask(foreground.clone(), shape, &spacing, &device)?;
                    (cells, config.dice_smooth, false)
                }
            });
        }
        if config.alpha > 0.0 {
            let cells = match targets.prediction_cells {
                Some(cells) => Partition::Cells(Cells::given(cells, "prediction cell")?),
                None => {
                    let predicted = Foreground::of_prediction(logits, config.threshold);
                    Partition::of_mask(predicted, shape, &spacing, &device)?
                }
            };
            branches.push((cells, config.prediction_dice_smooth.unwrap_or(config.dice_smooth), true));
        }
        let terms: Vec<(f64, bool)> = branches.iter().map(|&(_, smooth, empty)| (smooth, empty)).collect();
        // Both branches' sums in one pass over the voxels: one bin map each, laid out alike.
        let partitions = branches.into_iter().map(|(cells, _, _)| cells).collect();
        let (ids, largest) = bin_maps(partitions, &foreground, shape, &spacing, &device)?;
        check_bins(batch, 2 * largest + 2, config.max_bins, 5)?;
        let empty_cells = terms.iter().any(|&(_, empty)| empty);
        let sums = self.branch_sums(margin, ids, &foreground, largest, terms.len(), empty_cells);
        // Both branches' terms at once, their rows one above the other (a branch whose cells
        // all hold ground truth has no empty cell for the detached term to score).
        let smooth: Vec<f64> = terms.iter().map(|&(smooth, _)| smooth).collect();
        let all = branch_rows(config, &sums, &smooth);
        let (first, second) = match terms.len() {
            2 => (all.clone().narrow(0, 0, batch), Some(all.narrow(0, batch, batch))),
            _ => (all, None),
        };
        // The branch not computed: zeros in the other's dtype (`alpha` 1 computes the prediction's).
        Ok(match second {
            Some(prediction) => BiccUnreduced { ground_truth: first, prediction },
            None if config.alpha == 1.0 => BiccUnreduced { ground_truth: first.zeros_like(), prediction: first },
            None => BiccUnreduced { prediction: first.zeros_like(), ground_truth: first },
        })
    }

    /// The sums of every branch, in one pass over the voxels, the branches' rows one above the
    /// other (`[maps * B, bins]`): `ids` holds `maps` bin maps (`[maps * B, voxels]`, laid out
    /// for `largest` cells); `squares`: whether a branch may have cells without ground truth
    /// (their detached term needs `sum p^2`).
    fn branch_sums(
        &self,
        margin: Tensor<2>,
        ids: Tensor<2, Int>,
        foreground: &Foreground,
        largest: usize,
        maps: usize,
        squares: bool,
    ) -> BranchSums {
        let config = &self.config;
        let bins = 2 * largest + 2;
        let detached = squares && config.empty_cell_loss == EmptyCellLoss::Detached;
        let dice = config.terms != CellTerms::CrossEntropy;
        let cross_entropy = config.terms != CellTerms::Dice;
        let spec = InstanceSumsSpec::new(SumInput::Logits, bins)
            .with_foreground_end(largest + 2)
            .with_squares(dice && detached)
            .with_cross_entropy(cross_entropy && config.probability_floor.is_none())
            .with_maps(maps);
        let sums = sums_unchecked(margin.clone(), ids.clone(), spec, config.engine);
        let rows = maps * margin.dims()[0];
        let statistic =
            |sums: &Tensor<3>, i: usize| sums.clone().slice([0..rows, i..i + 1, 0..bins]).reshape([rows, bins]);
        let mut floored_ce = None;
        if let Some(floor) = config.probability_floor.filter(|_| cross_entropy) {
            // `-ln(max(p_y, floor))` per voxel (`p_y` the probability of the voxel's class, the
            // sigmoid of the signed margin), summed by a second pass over the same bins.
            let signs = foreground.signs(margin.dims(), &margin.device(), FloatDType::from(margin.dtype()));
            let per_voxel = sigmoid(margin * signs).clamp_min(floor).log().neg();
            let spec = InstanceSumsSpec::new(SumInput::Probabilities, bins).with_maps(maps);
            floored_ce = Some(statistic(&sums_unchecked(per_voxel, ids, spec, config.engine), 0));
        }
        let of = |s: Statistic| spec.index(s).map(|i| statistic(&sums, i));
        BranchSums {
            p: of(Statistic::Probability).expect("always summed"),
            count: of(Statistic::Count).expect("always summed"),
            p2: of(Statistic::Square),
            ce: floored_ce.or_else(|| of(Statistic::CrossEntropy)),
            largest,
        }
    }
}

/// Checks the ranks, channels and shapes.
fn check_inputs<const D: usize>(dims: [usize; D], targets: &BiccTargets<D>) -> Result<(), Error> {
    check_logits(dims)?;
    let mut expected = dims;
    expected[1] = 1;
    let maps = [
        ("mask", Some(&targets.mask)),
        ("cells", targets.cells.as_ref()),
        ("prediction cells", targets.prediction_cells.as_ref()),
    ];
    for (what, map) in maps {
        if let Some(map) = map.filter(|map| map.dims() != expected) {
            return Err(Error::ShapeMismatch { what, expected: expected.to_vec(), found: map.dims().to_vec() });
        }
    }
    Ok(())
}
