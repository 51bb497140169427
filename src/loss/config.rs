//! The configuration of the blob loss and its family: weights, base losses, partition, options.

use burn::config::Config;
use burn::tensor::Tensor;

use super::BlobLoss;
use super::activation::Activation;
use super::base::BaseLossConfig;
use super::partition::Partition;
use super::sums::Engine;
use crate::Error;

/// The default of [`BlobLossConfig::max_bins`]: `2^27` bins, 1 GiB of `f64` sums per statistic.
pub const MAX_BINS: usize = 1 << 27;

/// Configuration of [`BlobLoss`].
///
/// `L = global_weight * L_global + blob_weight * L_blob + false_positive_weight * L_fp`, where
/// `L_global` is `global_loss` over every `(element, channel)` (averaged), `L_blob` is
/// `blob_loss` per instance on its domain ([`Partition`]), averaged over the instances of a
/// channel, then over the channels that have instances, then over the batch elements that have
/// any, and `L_fp` the prediction term of the false-positive components, averaged the same way
/// (see [`false_positive_weight`](Self::false_positive_weight)).
///
/// # Example
/// ```
/// use blob_loss::loss::{Activation, BaseLossConfig, BlobLossConfig};
///
/// let config = BlobLossConfig::new()
///     .with_global_weight(1.0)
///     .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0));
/// let loss = config.init();
/// assert_eq!(loss.config.activation, Activation::Sigmoid);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct BlobLossConfig {
    /// `alpha`: weight of the global term (0 switches it off).
    #[config(default = 2.0)]
    pub global_weight: f64,
    /// `beta`: weight of the blob term (0 switches it off).
    #[config(default = 1.0)]
    pub blob_weight: f64,
    /// How outputs become probabilities.
    #[config(default = "Activation::Sigmoid")]
    pub activation: Activation,
    /// The base loss of the global term (soft Dice by default).
    #[config(default = "BaseLossConfig::new()")]
    pub global_loss: BaseLossConfig,
    /// The base loss of every instance's term (soft Dice by default).
    #[config(default = "BaseLossConfig::new()")]
    pub blob_loss: BaseLossConfig,
    /// The domain each instance is scored on: blob loss ([`Partition::Exclude`]), its reference
    /// code, or the CC loss's Voronoi cells.
    #[config(default = "Partition::Exclude")]
    pub partition: Partition,
    /// The weight of the false-positive component term: every connected component of the
    /// thresholded prediction that touches no instance gets a term `sum(p sg(p)) / sg(sum p)`
    /// over its voxels (`sg`: no gradient), whose gradient pushes each of its voxels down by
    /// `p / sum(p)`: the same pull for a 5-voxel and a 5,000-voxel false positive, which never
    /// vanishes while the component is predicted. 0 (the default) switches it off. It borrows
    /// BiCC's detached empty-cell term but is not BiCC: BiCC ([`BiccLoss`](super::BiccLoss))
    /// scores the Voronoi cell of every predicted component, with Dice and cross-entropy, and
    /// blends that branch with the ground truth's cells.
    #[config(default = 0.0)]
    pub false_positive_weight: f64,
    /// The probability above which a voxel is predicted, for the false-positive components.
    #[config(default = 0.5)]
    pub false_positive_threshold: f64,
    /// Inverse-size weighting of the global term (Shirokikh et al., MICCAI 2020): every voxel of
    /// component `i` (each instance, and the background as one more) weighs
    /// `w_i = N / ((K + 1) |C_i|)`, at most [`max_size_weight`](Self::max_size_weight), in every
    /// sum of the base loss (weighted Dice, Tversky and BCE); the weights of a row average 1.
    #[config(default = false)]
    pub global_size_weighting: bool,
    /// The same weighting inside each instance's domain (the instance and the rest of its domain:
    /// `K + 1 = 2`, `N` the domain's voxels), so that instance `k` and its background weigh
    /// alike whatever their sizes. Shirokikh et al.'s multi-class follow-up found this form
    /// stable and the global one not. Not with [`Partition::Reference`].
    #[config(default = false)]
    pub blob_size_weighting: bool,
    /// The largest inverse-size weight (a 1-voxel instance in a large volume would otherwise
    /// weigh as much as the volume).
    #[config(default = 1000.0)]
    pub max_size_weight: f64,
    /// Whether channel 0 counts (MONAI's `include_background`): with softmax outputs over
    /// `[background, classes..]` and [`instances_from_classes`](crate::components::instances_from_classes),
    /// channel 0 has no instances and its global Dice only restates the others; `false` leaves
    /// it out of every term.
    #[config(default = true)]
    pub include_background: bool,
    /// Per-channel weights (MONAI's `weight`), one per channel: each channel's global, blob and
    /// false-positive losses are multiplied by its weight before the means. `None`: all 1.
    #[config(default = "None")]
    pub class_weights: Option<Vec<f64>>,
    /// Whether negative ids mark voxels to ignore (unlabelled or uncertain regions): they enter
    /// no term and get no gradient, and BCE is divided by the voxels that remain. `false` (the
    /// default): a negative id is an error ([`Error::NegativeInstanceId`]).
    #[config(default = false)]
    pub ignore_negative_ids: bool,
    /// The weight of a categorical cross-entropy added to the global term (MONAI's `DiceCELoss`
    /// with softmax outputs; only with [`Activation::Softmax`]): `-log p_y` averaged over the
    /// voxels of the batch (ignored ones left out), where `y` is the voxel's class: the channel
    /// whose instance map holds it, channel 0 where none does. The base losses' BCE is per
    /// channel; this is the one softmax networks are trained with. 0 (the default) switches it
    /// off.
    #[config(default = 0.0)]
    pub categorical_cross_entropy: f64,
    /// Batch Dice (MONAI's `batch`): the global term sums each channel over the whole batch
    /// before the ratio (and divides BCE by the batch's voxels), instead of averaging per
    /// element. The instance terms stay per element.
    #[config(default = false)]
    pub batch_global: bool,
    /// How the per-instance sums are computed: the fused op (host passes on flex, one cube kernel
    /// on wgpu and cuda) or burn's generic tensor operations, the slower reference.
    #[config(default = "Engine::Fused")]
    pub engine: Engine,
    /// The most per-instance bins one call may allocate (batch elements x channels x (1 + the
    /// instances of the fullest channel)); beyond, [`BlobLoss::try_forward`] returns
    /// [`Error::TooManyInstances`] with the memory they would take, before allocating.
    #[config(default = "MAX_BINS")]
    pub max_bins: usize,
}

impl BlobLossConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite weight or smoothing term, a
    /// threshold outside `(0, 1)`, a `max_size_weight` below 1, base losses with every weight 0,
    /// [`Partition::Reference`] without a sigmoid or with `blob_size_weighting`, or a categorical
    /// cross-entropy without a softmax.
    pub fn validate(&self) -> Result<(), Error> {
        let weights = [
            ("global_weight", self.global_weight),
            ("blob_weight", self.blob_weight),
            ("false_positive_weight", self.false_positive_weight),
            ("categorical_cross_entropy", self.categorical_cross_entropy),
        ];
        for (name, value) in weights {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::InvalidConfig(format!("{name} must be finite and >= 0, got {value}")));
            }
        }
        if !(self.max_size_weight.is_finite() && self.max_size_weight >= 1.0) {
            return Err(Error::InvalidConfig(format!(
                "max_size_weight must be finite and >= 1, got {}",
                self.max_size_weight
            )));
        }
        if let Some(weights) = &self.class_weights
            && let Some(bad) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0))
        {
            return Err(Error::InvalidConfig(format!("class_weights must be finite and >= 0, got {bad}")));
        }
        if self.categorical_cross_entropy > 0.0 && self.activation != Activation::Softmax {
            return Err(Error::InvalidConfig(
                "categorical_cross_entropy needs softmax outputs (Activation::Softmax); the base losses' \
                 bce_weight is the cross-entropy of sigmoid outputs"
                    .into(),
            ));
        }
        if self.blob_size_weighting && self.partition == Partition::Reference {
            return Err(Error::InvalidConfig(
                "blob_size_weighting is not defined for Partition::Reference (its other instances are no part of \
                 the domain): use Partition::Exclude or Partition::Voronoi"
                    .into(),
            ));
        }
        if !(self.false_positive_threshold > 0.0 && self.false_positive_threshold < 1.0) {
            return Err(Error::InvalidConfig(format!(
                "false_positive_threshold must be in (0, 1), got {}",
                self.false_positive_threshold
            )));
        }
        self.global_loss.validate("global_loss")?;
        self.blob_loss.validate("blob_loss")?;
        if self.partition == Partition::Reference && self.activation != Activation::Sigmoid {
            return Err(Error::InvalidConfig(
                "Partition::Reference reproduces the reference code, which applies a sigmoid to masked logits: \
                 use Activation::Sigmoid"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Builds the loss.
    ///
    /// # Panics
    /// When [`validate`](Self::validate) fails, with its message; [`try_init`](Self::try_init)
    /// returns the error instead.
    pub fn init(&self) -> BlobLoss {
        self.try_init().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the loss, or says why the configuration is invalid.
    ///
    /// # Errors
    /// As [`validate`](Self::validate).
    pub fn try_init(&self) -> Result<BlobLoss, Error> {
        self.validate()?;
        Ok(BlobLoss { config: self.clone() })
    }

    pub(crate) fn needs_p2(&self) -> bool {
        self.global_loss.needs_p2() || self.blob_loss.needs_p2()
    }

    pub(crate) fn needs_bce(&self) -> bool {
        self.global_loss.needs_bce() || self.blob_loss.needs_bce()
    }

    /// The weight of every channel, `[1, C]`: its class weight, 0 for channel 0 without
    /// `include_background`.
    pub(crate) fn channel_weights(&self, channels: usize, device: &burn::tensor::Device) -> Result<Tensor<2>, Error> {
        let mut weights = match &self.class_weights {
            Some(w) if w.len() != channels => {
                return Err(Error::InvalidArgument(format!(
                    "class_weights has {} values for {channels} channels: give one per channel",
                    w.len()
                )));
            }
            Some(w) => w.clone(),
            None => vec![1.0; channels],
        };
        if !self.include_background {
            if channels < 2 {
                return Err(Error::InvalidArgument(
                    "include_background = false leaves no channel of a single-channel output".into(),
                ));
            }
            weights[0] = 0.0;
        }
        Ok(Tensor::<1>::from_floats(weights.as_slice(), device).reshape([1, channels]))
    }
}
