//! What [`instance_sums`](super::instance_sums) computes: the input's meaning, the statistics,
//! the number of bins, and the per-voxel formulas every backend shares.

/// What the values handed to [`instance_sums`](super::instance_sums) are.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::{InstanceSumsSpec, SumInput};
///
/// let spec = InstanceSumsSpec::new(SumInput::Logits, 4);
/// assert_eq!(spec.input, SumInput::Logits);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SumInput {
    /// Logits `x`: the probability is `sigmoid(x)`, the cross-entropy the stable
    /// `softplus(±x)`, and its gradient `sigmoid(x) - t` everywhere (`x = 0` and `±inf` included).
    Logits,
    /// Probabilities `p` in `[0, 1]`: the cross-entropy is `-ln(max(q, 1e-12))` with `q = p`
    /// where the target is 1 and `1 - p` elsewhere, so that its value and gradient stay finite
    /// at 0 and 1 (the gradient is taken at the clamped `q`: a certain, wrong voxel is still
    /// pushed).
    Probabilities,
}

/// One per-bin statistic of [`instance_sums`](super::instance_sums), in output order.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::{InstanceSumsSpec, Statistic, SumInput};
///
/// let spec = InstanceSumsSpec::new(SumInput::Logits, 3).with_cross_entropy(true);
/// assert_eq!(spec.index(Statistic::CrossEntropy), Some(2));
/// assert_eq!(spec.index(Statistic::Square), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// `sum p`, always computed (index 0).
    Probability,
    /// The number of voxels of the bin, always computed (index 1); it carries no gradient.
    Count,
    /// `sum p^2` (squared Dice denominators), when [`InstanceSumsSpec::squares`] is set.
    Square,
    /// The summed binary cross-entropy against the bin's target ([`InstanceSumsSpec::target`]),
    /// when [`InstanceSumsSpec::cross_entropy`] is set. Per voxel it is at most
    /// [`MAX_LOGIT_CROSS_ENTROPY`] from logits and `-ln(PROBABILITY_FLOOR)` from probabilities.
    CrossEntropy,
}

/// The largest per-voxel cross-entropy from logits (the bound of PyTorch's `BCELoss`), so that
/// `±inf` logits give finite sums; the gradient stays `sigmoid(x) - t` beyond it.
pub const MAX_LOGIT_CROSS_ENTROPY: f64 = 100.0;

/// Probabilities are clamped to `[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]` inside the
/// cross-entropy of [`SumInput::Probabilities`] (the epsilon of PyTorch's `BCELoss` gradient).
pub const PROBABILITY_FLOOR: f64 = 1e-12;

/// What [`instance_sums`](super::instance_sums) computes.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::{InstanceSumsSpec, SumInput};
///
/// let spec = InstanceSumsSpec::new(SumInput::Probabilities, 10).with_squares(true);
/// assert_eq!(spec.statistics(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstanceSumsSpec {
    /// What the values are.
    pub input: SumInput,
    /// Whether to sum `p^2`.
    pub squares: bool,
    /// Whether to sum the binary cross-entropy.
    pub cross_entropy: bool,
    /// The number of bins per row: ids are in `0..bins`.
    pub bins: usize,
    /// Where the target-0 bins after the foreground start: bins `1..end` have target 1, bin 0 and
    /// the bins from `end` on target 0. `None` (the default): every bin but 0 has target 1.
    /// Lets one id map split the background into regions of its own (Voronoi cells).
    pub foreground_end: Option<usize>,
    /// Leave bin 0 out: its sums are 0 and its voxels' gradient is 0, and the flex passes skip
    /// its voxels (most of a volume) without computing their probabilities. For terms that
    /// need only the other bins (the false-positive components).
    pub skip_background: bool,
    /// The number of bin maps (at least 1): `ids` is `[maps * rows, voxels]`, map `m` in rows
    /// `m * rows..(m + 1) * rows`, and the sums `[maps * rows, statistics, bins]` in the same
    /// order. Each voxel's probability (and the shared part of its cross-entropy) is computed
    /// once and added into its bin of every map, the cross-entropy against its target in that
    /// map: two partitions of the same outputs (BiCC's two branches) in one pass.
    pub maps: usize,
}

/// The most `f32` accumulators one buffer of a GPU pass holds (the cube kernel: rows x chunks x
/// statistics x bins in one buffer; the scatter engine: rows x chunks x bins, one buffer per
/// statistic). The sums are kept per chunk of voxels, so that no `f32` bin adds up too many.
pub(crate) const MAX_F32_CHUNK_BINS: usize = 1 << 24;

impl InstanceSumsSpec {
    /// Probability and count sums only, for `bins` bins.
    pub fn new(input: SumInput, bins: usize) -> Self {
        Self {
            input,
            squares: false,
            cross_entropy: false,
            bins,
            foreground_end: None,
            skip_background: false,
            maps: 1,
        }
    }

    /// With `maps` bin maps (see [`maps`](Self::maps)).
    ///
    /// # Example
    /// ```
    /// use blob_loss::loss::sums::{instance_sums, InstanceSumsSpec, SumInput};
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let p = Tensor::<2>::from_floats([[0.5, 1.0, 0.25]], &device);
    /// // Two partitions of the same row: bins [0, 1, 1] and [1, 1, 0].
    /// let ids = Tensor::<2, Int>::from_ints([[0, 1, 1], [1, 1, 0]], &device);
    /// let spec = InstanceSumsSpec::new(SumInput::Probabilities, 2).with_maps(2);
    /// let sums: Vec<f64> = instance_sums(p, ids, spec)?.into_data().convert::<f64>().try_to_vec().unwrap();
    /// // [maps * rows, statistics, bins]: map 0's p and count sums, then map 1's.
    /// assert_eq!(sums, [0.5, 1.25, 1.0, 2.0, 0.25, 1.5, 1.0, 2.0]);
    /// # Ok::<(), blob_loss::Error>(())
    /// ```
    pub fn with_maps(self, maps: usize) -> Self {
        Self { maps, ..self }
    }

    /// With or without bin 0 (see [`skip_background`](Self::skip_background)).
    pub fn with_skip_background(self, skip_background: bool) -> Self {
        Self { skip_background, ..self }
    }

    /// With target-0 bins from `end` on (see [`foreground_end`](Self::foreground_end)).
    pub fn with_foreground_end(self, end: usize) -> Self {
        Self { foreground_end: Some(end), ..self }
    }

    /// Whether the voxels of `bin` have target 1.
    ///
    /// # Example
    /// ```
    /// use blob_loss::loss::sums::{InstanceSumsSpec, SumInput};
    ///
    /// let spec = InstanceSumsSpec::new(SumInput::Logits, 5);
    /// assert!(!spec.target(0) && spec.target(4));
    /// let cells = spec.with_foreground_end(3); // bins 3 and 4: background regions
    /// assert!(cells.target(2) && !cells.target(3));
    /// ```
    #[inline(always)]
    pub fn target(&self, bin: usize) -> bool {
        bin > 0 && self.foreground_end.is_none_or(|end| bin < end)
    }

    /// With or without the `p^2` sums.
    pub fn with_squares(self, squares: bool) -> Self {
        Self { squares, ..self }
    }

    /// With or without the cross-entropy sums.
    pub fn with_cross_entropy(self, cross_entropy: bool) -> Self {
        Self { cross_entropy, ..self }
    }

    /// The number of statistics per bin.
    pub fn statistics(&self) -> usize {
        2 + usize::from(self.squares) + usize::from(self.cross_entropy)
    }

    /// The shape of the sums for outputs of shape `x` (`[rows, voxels]`), for kernel fusion.
    #[cfg(feature = "cube")]
    pub(crate) fn output_shape(&self, x: &burn::tensor::Shape) -> burn::tensor::Shape {
        burn::tensor::Shape::new([x[0] * self.maps, self.statistics(), self.bins])
    }

    /// Where a statistic sits along the output's axis 1, if computed.
    pub fn index(&self, statistic: Statistic) -> Option<usize> {
        match statistic {
            Statistic::Probability => Some(0),
            Statistic::Count => Some(1),
            Statistic::Square => self.squares.then_some(2),
            Statistic::CrossEntropy => self.cross_entropy.then_some(2 + usize::from(self.squares)),
        }
    }
}

/// The binary cross-entropy of one voxel, in `f64`, from its input `x` and target.
#[inline]
#[cfg(any(feature = "flex", test))]
pub(crate) fn cross_entropy(input: SumInput, x: f64, target: bool) -> f64 {
    match input {
        SumInput::Logits => logit_cross_entropy_with_tail(x, softplus_tail(x), target),
        SumInput::Probabilities => {
            let q = if target { x } else { 1.0 - x };
            // `max` would turn NaN into the floor: keep NaN visible.
            if q.is_nan() { q } else { -q.max(PROBABILITY_FLOOR).ln() }
        }
    }
}

/// A logit's `ln(1 + exp(-|x|))`: the part of `softplus(z) = max(z, 0) + ln(1 + exp(-|z|))`
/// that is the same for `z = x` and `z = -x`, so for both targets.
#[inline]
#[cfg(any(feature = "flex", test))]
pub(crate) fn softplus_tail(x: f64) -> f64 {
    (-x.abs()).exp().ln_1p()
}

/// The binary cross-entropy of one voxel from its logit `x`, its [`softplus_tail`] and its
/// target: `softplus(z)` with `z = -x` where the target is 1 and `x` elsewhere, at most
/// [`MAX_LOGIT_CROSS_ENTROPY`]; NaN stays NaN (through the tail).
#[inline]
#[cfg(any(feature = "flex", test))]
pub(crate) fn logit_cross_entropy_with_tail(x: f64, tail: f64, target: bool) -> f64 {
    let value = (if target { -x } else { x }).max(0.0) + tail;
    if value > MAX_LOGIT_CROSS_ENTROPY { MAX_LOGIT_CROSS_ENTROPY } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistic_indices_follow_the_flags() {
        for squares in [false, true] {
            for ce in [false, true] {
                let spec = InstanceSumsSpec::new(SumInput::Logits, 1).with_squares(squares).with_cross_entropy(ce);
                let indices: Vec<usize> =
                    [Statistic::Probability, Statistic::Count, Statistic::Square, Statistic::CrossEntropy]
                        .into_iter()
                        .filter_map(|s| spec.index(s))
                        .collect();
                assert_eq!(indices, (0..spec.statistics()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn cross_entropy_is_finite_and_clamped() {
        let floor = -PROBABILITY_FLOOR.ln();
        let ln2 = std::f64::consts::LN_2;
        assert!((cross_entropy(SumInput::Logits, 0.0, true) - ln2).abs() < 1e-15);
        assert_eq!(cross_entropy(SumInput::Logits, f64::INFINITY, false), MAX_LOGIT_CROSS_ENTROPY);
        assert_eq!(cross_entropy(SumInput::Logits, f64::INFINITY, true), 0.0);
        assert_eq!(cross_entropy(SumInput::Logits, f64::NEG_INFINITY, true), MAX_LOGIT_CROSS_ENTROPY);
        assert!((cross_entropy(SumInput::Logits, 150.0, false) - 100.0).abs() < 1e-12);
        assert!((cross_entropy(SumInput::Logits, 3.0, true) - (1.0 + (-3f64).exp()).ln()).abs() < 1e-15);
        assert_eq!(cross_entropy(SumInput::Probabilities, 0.0, true), floor);
        assert_eq!(cross_entropy(SumInput::Probabilities, 1.0, false), floor);
        assert_eq!(cross_entropy(SumInput::Probabilities, 1.0, true), 0.0);
        assert!((cross_entropy(SumInput::Probabilities, 0.25, false) + 0.75f64.ln()).abs() < 1e-15);
        assert!(cross_entropy(SumInput::Logits, f64::NAN, true).is_nan());
        assert!(cross_entropy(SumInput::Probabilities, f64::NAN, false).is_nan());
    }
}
