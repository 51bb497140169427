//! The base losses that score one region: soft Dice, BCE and Tversky, from region sums.

use burn::config::Config;
use burn::tensor::Tensor;

use crate::Error;

/// A base segmentation loss: a weighted sum of soft Dice, binary cross-entropy and Tversky.
///
/// Every term is computed from sums over the scored region (of the probabilities `p`, of `p^2`,
/// of the per-voxel cross-entropy, and the target size), which is what lets
/// [`BlobLoss`](super::BlobLoss) score all instances in one pass.
///
/// - Dice: `1 - (2 sum(p t) + smooth_nr) / (sum(p) + sum(t) + smooth_dr)`, with `sum(p^2)` in the
///   denominator when `squared_denominator` is set (MONAI's `squared_pred`).
/// - BCE: `sum(-t ln p - (1 - t) ln(1 - p)) / N`, in the numerically stable form on logits when
///   the activation is a sigmoid; `N` is the number of voxels of the batch element (of the cell,
///   with [`Partition::Voronoi`](super::Partition::Voronoi)).
/// - Tversky: `1 - (TP + smooth_nr) / (TP + alpha_fp FP + beta_fn FN + smooth_dr)`.
///
/// # Example
/// ```
/// use blob_loss::loss::BaseLossConfig;
///
/// // Dice + BCE, as nnU-Net uses them.
/// let base = BaseLossConfig::new().with_bce_weight(1.0);
/// assert_eq!(base.dice_weight, 1.0);
/// assert!(base.validate("global").is_ok());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct BaseLossConfig {
    /// Weight of the soft Dice term.
    #[config(default = 1.0)]
    pub dice_weight: f64,
    /// Weight of the binary cross-entropy term.
    #[config(default = 0.0)]
    pub bce_weight: f64,
    /// Weight of the Tversky term.
    #[config(default = 0.0)]
    pub tversky_weight: f64,
    /// Added to the numerators of Dice and Tversky (MONAI's default).
    #[config(default = 1e-5)]
    pub smooth_nr: f64,
    /// Added to the denominators of Dice and Tversky (MONAI's default).
    #[config(default = 1e-5)]
    pub smooth_dr: f64,
    /// Use `sum(p^2)` instead of `sum(p)` in the Dice denominator.
    #[config(default = false)]
    pub squared_denominator: bool,
    /// Tversky's weight of false positives.
    #[config(default = 0.5)]
    pub tversky_alpha_fp: f64,
    /// Tversky's weight of false negatives.
    #[config(default = 0.5)]
    pub tversky_beta_fn: f64,
}

/// Sums over the scored regions, one entry per region (shape `[R, M]`).
pub(crate) struct RegionSums {
    /// `sum(p)` over the region.
    pub p: Tensor<2>,
    /// `sum(p^2)` over the region, when a squared denominator is used.
    pub p2: Option<Tensor<2>>,
    /// `sum(p t)`: the probabilities summed over the target part.
    pub tp: Tensor<2>,
    /// `sum(t)`: the size of the target part.
    pub t: Tensor<2>,
    /// The summed per-voxel cross-entropy, when BCE is used.
    pub bce: Option<Tensor<2>>,
    /// What the summed cross-entropy is divided by: the voxels of each region's batch element
    /// (`[R, 1]`), or of the region itself (`[R, M]`, a Voronoi cell).
    pub voxels: Tensor<2>,
}

impl BaseLossConfig {
    /// Checks the weights and smoothing terms: finite, non-negative, at least one term on, and a
    /// positive `smooth_dr` when Dice or Tversky is on.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field (prefixed with `what`).
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        let fields = [
            ("dice_weight", self.dice_weight),
            ("bce_weight", self.bce_weight),
            ("tversky_weight", self.tversky_weight),
            ("smooth_nr", self.smooth_nr),
            ("smooth_dr", self.smooth_dr),
            ("tversky_alpha_fp", self.tversky_alpha_fp),
            ("tversky_beta_fn", self.tversky_beta_fn),
        ];
        for (name, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::InvalidConfig(format!("{what}.{name} must be finite and >= 0, got {value}")));
            }
        }
        if self.dice_weight + self.bce_weight + self.tversky_weight == 0.0 {
            return Err(Error::InvalidConfig(format!("{what}: every base loss weight is 0")));
        }
        if self.smooth_dr == 0.0 && self.dice_weight + self.tversky_weight > 0.0 {
            // An instance-free channel that the network leaves at probability 0 (or a sigmoid
            // that underflows) makes the Dice and Tversky denominators exactly 0.
            return Err(Error::InvalidConfig(format!(
                "{what}.smooth_dr must be > 0 with Dice or Tversky: an empty region with no predicted \
                 probability would divide 0 by 0"
            )));
        }
        Ok(())
    }

    pub(crate) fn needs_p2(&self) -> bool {
        self.dice_weight > 0.0 && self.squared_denominator
    }

    pub(crate) fn needs_bce(&self) -> bool {
        self.bce_weight > 0.0
    }

    /// The loss of every region.
    pub(crate) fn score(&self, sums: &RegionSums) -> Tensor<2> {
        let mut loss = sums.p.zeros_like();
        if self.dice_weight > 0.0 {
            let predicted = match (&sums.p2, self.squared_denominator) {
                (Some(p2), true) => p2.clone(),
                _ => sums.p.clone(),
            };
            let dice = (sums.tp.clone() * 2.0 + self.smooth_nr) / (predicted + sums.t.clone() + self.smooth_dr);
            loss = loss + (dice.neg() + 1.0) * self.dice_weight;
        }
        if self.tversky_weight > 0.0 {
            let fp = sums.p.clone() - sums.tp.clone();
            let fn_ = sums.t.clone() - sums.tp.clone();
            let denominator =
                sums.tp.clone() + fp * self.tversky_alpha_fp + fn_ * self.tversky_beta_fn + self.smooth_dr;
            let tversky = (sums.tp.clone() + self.smooth_nr) / denominator;
            loss = loss + (tversky.neg() + 1.0) * self.tversky_weight;
        }
        if self.bce_weight > 0.0 {
            let bce = sums.bce.clone().expect("BCE sums are computed when BCE is on");
            loss = loss + bce / sums.voxels.clone().clamp_min(1.0) * self.bce_weight;
        }
        loss
    }
}
