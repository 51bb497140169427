//! Blob loss (Kofler et al., IPMI 2023, arXiv 2205.08209) on burn tensors, in one pass.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{FloatDType, Tensor};

use super::activation::{Activation, exponentiable};
use super::base::{BaseLossConfig, RegionSums};
use super::categorical::categorical_cross_entropy;
use super::false_positives::false_positive_components;
use super::output::{BlobLossOutput, UnreducedParts};
use super::partition::Partition;
use super::reduce::{nested_mean, region_means, weighted_mean};
use super::regions::{RegionMaps, Regions, regions};
use super::sums::{Engine, InstanceSumsSpec, Statistic, SumInput, is_flex, sums_unchecked};
use super::targets::{LossTargets, check_shapes};
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
    /// The weight of the prediction term (the BiCC idea, Jaus et al.): every connected component
    /// of the thresholded prediction that touches no instance gets a term
    /// `sum(p sg(p)) / sg(sum p)` over its voxels (`sg`: no gradient), whose gradient pushes each
    /// of its voxels down by `p / sum(p)`: the same pull for a 5-voxel and a 5,000-voxel false
    /// positive, which never vanishes while the component is predicted. 0 (the default) switches
    /// it off. BiCC scores every predicted component's Voronoi cell and mixes its two branches
    /// with `1 - alpha`, `alpha`; here the components that touch an instance are already scored by
    /// the instance terms, so only the false positives get a term, on their own voxels, with a
    /// weight of their own.
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
}

/// Blob loss: instance-imbalance-aware segmentation loss, stateless.
///
/// Built with [`BlobLossConfig::init`]. Every instance of every `(element, channel)` is scored in
/// one pass: [`instance_sums`](super::sums::instance_sums) adds the per-voxel statistics into
/// bins indexed by instance id (bin 0 is the background), and every base loss is computed from
/// those bin sums with ordinary burn operations. The cost is `O(voxels + instances)` whatever the
/// number of instances, with one small host read per call (the smallest and largest id; ids too
/// large for dense bins are renumbered on the host first). The sums are `f64` on the CPU backend
/// (flex) and `f32` partials summed in a tree on GPU backends: the value does not drift on large
/// volumes. The loss comes back in the outputs' dtype (f32, f64, f16, bf16).
///
/// # Example
/// ```
/// use blob_loss::loss::BlobLossConfig;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let loss = BlobLossConfig::new().init();
/// // One element, one channel, 1x4 pixels; two instances (ids 1 and 2).
/// let logits = Tensor::<4>::from_floats([[[[9.0, -9.0, 9.0, -9.0]]]], &device);
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2, 0]]]], &device);
/// let parts = loss.forward_parts(logits, instances);
/// let blob: f32 = parts.blob.into_scalar();
/// assert!(blob < 1e-3); // both instances found
/// ```
#[derive(Module, Debug)]
pub struct BlobLoss {
    /// The configuration it was built from.
    #[module(skip)]
    pub config: BlobLossConfig,
}

impl BlobLoss {
    /// The loss: `global_weight * global + blob_weight * blob + false_positive_weight *
    /// false_positive`, shape `[1]`.
    ///
    /// - `outputs`: `[B, C, spatial..]` (D = 3, 4 or 5), logits (or probabilities with
    ///   [`Activation::None`]).
    /// - `targets`: the instance map (same shape; for channel `c`, 0 is background and each
    ///   positive id one instance of class `c`; ids need not be contiguous), or [`LossTargets`]
    ///   with the Voronoi cells ([`Partition::Voronoi`]) and the false-positive components.
    ///
    /// # Panics
    /// With the message of the error [`try_forward`](Self::try_forward) would return.
    pub fn forward<const D: usize>(&self, outputs: Tensor<D>, targets: impl Into<LossTargets<D>>) -> Tensor<1> {
        self.try_forward(outputs, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward`](Self::forward), returning bad input as an error.
    ///
    /// # Errors
    /// [`Error::UnsupportedRank`], [`Error::ShapeMismatch`] (for any map), [`Error::InvalidArgument`]
    /// for a shape with a zero-sized axis, missing cells with [`Partition::Voronoi`] or cell ids
    /// that name no instance, [`Error::NegativeInstanceId`], [`Error::TooManyInstances`]; on the
    /// CPU backend, where reading the value costs nothing, [`Error::NonFiniteLoss`] when the
    /// outputs hold NaN (GPU backends return the NaN loss).
    pub fn try_forward<const D: usize>(
        &self,
        outputs: Tensor<D>,
        targets: impl Into<LossTargets<D>>,
    ) -> Result<Tensor<1>, Error> {
        Ok(self.try_forward_parts(outputs, targets)?.total)
    }

    /// The loss with its unweighted parts.
    ///
    /// # Panics
    /// With the message of the error [`try_forward_parts`](Self::try_forward_parts) would return.
    pub fn forward_parts<const D: usize>(
        &self,
        outputs: Tensor<D>,
        targets: impl Into<LossTargets<D>>,
    ) -> BlobLossOutput {
        self.try_forward_parts(outputs, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_parts`](Self::forward_parts), returning bad input as an error.
    ///
    /// # Errors
    /// As [`try_forward`](Self::try_forward).
    pub fn try_forward_parts<const D: usize>(
        &self,
        outputs: Tensor<D>,
        targets: impl Into<LossTargets<D>>,
    ) -> Result<BlobLossOutput, Error> {
        let config = &self.config;
        let LossTargets { instances, cells, false_positives } = targets.into();
        let dims = outputs.dims();
        let maps = [
            ("instances vs outputs", Some(&instances)),
            ("cells vs outputs", cells.as_ref()),
            ("false positives vs outputs", false_positives.as_ref()),
        ];
        check_shapes(dims, &maps)?;
        let voronoi = config.partition == Partition::Voronoi;
        if voronoi && cells.is_none() {
            return Err(Error::InvalidArgument(
                "Partition::Voronoi scores each instance on its Voronoi cell: give the cells \
                 (LossTargets::with_cells, from components::voronoi_batch of the instance map)"
                    .into(),
            ));
        }
        let rows = dims[0] * dims[1];
        let voxels: usize = dims[2..].iter().product();
        let device = outputs.device();
        let dtype = FloatDType::from(outputs.dtype());
        let on_flex = is_flex(&device);
        let fp_on = config.false_positive_weight > 0.0;
        let false_positives = match (fp_on, false_positives) {
            (true, Some(map)) => Some(map),
            (true, None) => Some(false_positive_components(
                outputs.clone(),
                instances.clone(),
                config.activation,
                config.false_positive_threshold,
            )?),
            (false, _) => None,
        };
        let categorical = (config.categorical_cross_entropy > 0.0)
            .then(|| categorical_cross_entropy(outputs.clone(), instances.clone(), on_flex));
        let (values, input) = match config.activation {
            Activation::Sigmoid => (outputs.reshape([rows, voxels]), SumInput::Logits),
            Activation::Softmax => {
                (softmax(exponentiable(outputs, on_flex), 1).reshape([rows, voxels]), SumInput::Probabilities)
            }
            Activation::None => (outputs.reshape([rows, voxels]), SumInput::Probabilities),
        };
        let spec = InstanceSumsSpec::new(input, 0).with_squares(self.needs_p2()).with_cross_entropy(self.needs_bce());
        let maps = RegionMaps {
            instances: instances.reshape([rows, voxels]),
            cells: cells.filter(|_| voronoi).map(|cells| cells.reshape([rows, voxels])),
            false_positives: false_positives.map(|map| map.reshape([rows, voxels])),
            ignore_negative: config.ignore_negative_ids,
        };
        let (Regions { ids, kept, false_positives }, spec) = regions(maps, config.max_bins, spec)?;
        let sums = sums_unchecked(values.clone(), ids, spec, config.engine);
        let stat = |s: Statistic| {
            spec.index(s).map(|i| sums.clone().slice([0..rows, i..i + 1, 0..kept]).reshape([rows, kept]))
        };
        let count = stat(Statistic::Count).expect("always summed");
        let bins = Bins {
            p: stat(Statistic::Probability).expect("always summed"),
            p2: stat(Statistic::Square),
            bce: stat(Statistic::CrossEntropy),
            voxels: count.clone().sum_dim(1),
            count,
            foreground_end: spec.foreground_end.unwrap_or(kept),
        };
        let channel_weights = self.channel_weights(dims[1], &device)?.cast(FloatDType::from(bins.p.dtype()));
        let global_rows = self.global_rows(&bins, dims[0], dims[1]);
        let mut global = weighted_mean(global_rows.clone(), channel_weights.clone());
        if let Some(categorical) = categorical {
            global = global + categorical.cast(FloatDType::from(bins.p.dtype())) * config.categorical_cross_entropy;
        }
        let (blob_rows, instance_counts) = self.blob_rows(&bins, dims[0], dims[1]);
        let (blob, elements_with_instances) =
            nested_mean(blob_rows.clone(), instance_counts.clone(), channel_weights.clone());
        let mut total = global.clone() * config.global_weight + blob.clone() * config.blob_weight;
        let false_positive_rows = false_positives
            .sums(values, input, config.engine, config.max_bins)?
            .map(|[p, p2, size]| false_positive_term(p, p2, size, [dims[0], dims[1]]));
        let false_positive = match false_positive_rows {
            Some((rows, counts)) => {
                let term = nested_mean(rows, counts, channel_weights).0;
                total = total + term.clone() * config.false_positive_weight;
                term
            }
            None => Tensor::zeros([1], (&device, global.dtype())),
        };
        if on_flex {
            let value = total.clone().into_scalar::<f64>();
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss { value });
            }
        }
        Ok(BlobLossOutput {
            total: total.cast(dtype),
            global: global.cast(dtype),
            blob: blob.cast(dtype),
            false_positive: false_positive.cast(dtype),
            elements_with_instances: elements_with_instances.detach().cast(dtype),
            unreduced: UnreducedParts {
                global: global_rows.cast(dtype),
                blob: blob_rows.cast(dtype),
                instances: instance_counts.detach().cast(dtype),
            },
        })
    }

    fn needs_p2(&self) -> bool {
        self.config.global_loss.needs_p2() || self.config.blob_loss.needs_p2()
    }

    fn needs_bce(&self) -> bool {
        self.config.global_loss.needs_bce() || self.config.blob_loss.needs_bce()
    }

    /// The weight of every channel, `[1, C]`: its class weight, 0 for channel 0 without
    /// `include_background`.
    fn channel_weights(&self, channels: usize, device: &burn::tensor::Device) -> Result<Tensor<2>, Error> {
        let mut weights = match &self.config.class_weights {
            Some(w) if w.len() != channels => {
                return Err(Error::InvalidArgument(format!(
                    "class_weights has {} values for {channels} channels: give one per channel",
                    w.len()
                )));
            }
            Some(w) => w.clone(),
            None => vec![1.0; channels],
        };
        if !self.config.include_background {
            if channels < 2 {
                return Err(Error::InvalidArgument(
                    "include_background = false leaves no channel of a single-channel output".into(),
                ));
            }
            weights[0] = 0.0;
        }
        Ok(Tensor::<1>::from_floats(weights.as_slice(), device).reshape([1, channels]))
    }

    /// The global base loss of every `(element, channel)`, `[B, C]` (`[1, C]` with batch Dice).
    fn global_rows(&self, b: &Bins, batch: usize, channels: usize) -> Tensor<2> {
        let [rows, bins] = b.p.dims();
        let end = b.foreground_end;
        // Inverse-size weights per bin: every instance, and the background (bin 0 and any cell
        // bins) as one component.
        // No operation touches a zero-sized tensor (a batch without instances has no instance
        // bins): on wgpu under fusion such operations corrupted other tensors.
        let has_instances = end > 1;
        let weights = self.config.global_size_weighting.then(|| {
            let instances = has_instances.then(|| b.count.clone().slice([0..rows, 1..end]));
            let voxels = b.voxels.clone();
            let (components, background) = match &instances {
                Some(instances) => (
                    instances.clone().clamp_max(1.0).sum_dim(1) + 1.0, // [rows, 1]
                    voxels.clone() - instances.clone().sum_dim(1),
                ),
                None => (voxels.ones_like(), voxels.clone()),
            };
            let weight = |size: Tensor<2>| {
                (voxels.clone() / (components.clone() * size.clamp_min(1.0))).clamp_max(self.config.max_size_weight)
            };
            let background = weight(background);
            let mut columns = vec![background.clone()];
            columns.extend(instances.map(weight));
            if end < bins {
                columns.push(background.expand([rows, bins - end]));
            }
            Tensor::cat(columns, 1)
        });
        let weighted = |t: &Tensor<2>| match &weights {
            Some(w) => t.clone() * w.clone(),
            None => t.clone(),
        };
        let (sum_p, count) = (weighted(&b.p), weighted(&b.count));
        // Per (element, channel) as [B, C], or summed over the batch as [1, C].
        let batch_sum = self.config.batch_global;
        let region = |t: Tensor<2>| {
            let t = t.reshape([batch, channels]);
            if batch_sum { t.sum_dim(0) } else { t }
        };
        let foreground = |t: &Tensor<2>| {
            let sums = if has_instances {
                t.clone().slice([0..rows, 1..end]).sum_dim(1)
            } else {
                t.zeros_like().slice([0..rows, 0..1])
            };
            region(sums)
        };
        let sums = RegionSums {
            p: region(sum_p.clone().sum_dim(1)),
            p2: b.p2.as_ref().map(|t| region(weighted(t).sum_dim(1))),
            tp: foreground(&sum_p),
            t: foreground(&count),
            bce: b.bce.as_ref().map(|t| region(weighted(t).sum_dim(1))),
            voxels: region(b.voxels.clone()),
        };
        self.config.global_loss.score(&sums)
    }

    /// The blob term of every `(element, channel)`: the mean over its instances of each
    /// instance's loss on its domain, `[B, C]` (0 without instances), and the instance counts.
    fn blob_rows(&self, b: &Bins, batch: usize, channels: usize) -> (Tensor<2>, Tensor<2>) {
        let (sum_p, sum_p2, sum_bce, count) = (&b.p, &b.p2, &b.bce, &b.count);
        let [rows, bins] = sum_p.dims();
        let end = b.foreground_end;
        if end == 1 {
            // No instance anywhere: no zero-sized tensors (see `global_rows`).
            let zeros = Tensor::<2>::zeros([batch, channels], (&sum_p.device(), sum_p.dtype()));
            return (zeros.clone(), zeros);
        }
        let instance = |t: &Tensor<2>| t.clone().slice([0..rows, 1..end]);
        // The rest of instance k's domain: the background of its cell (bins `end..`, in the
        // instances' order), or the whole background (broadcast).
        let rest = |t: &Tensor<2>| match self.config.partition {
            Partition::Voronoi => t.clone().slice([0..rows, end..bins]),
            Partition::Exclude | Partition::Reference => t.clone().slice([0..rows, 0..1]),
        };
        let size = instance(count);
        // Inverse-size weights inside each domain: its two components weigh alike.
        let (w_instance, w_rest) = if self.config.blob_size_weighting {
            let rest_size = rest(count) + size.clone().zeros_like();
            let domain = size.clone() + rest_size.clone();
            let max = self.config.max_size_weight;
            let weight = |part: Tensor<2>| (domain.clone() / (part.clamp_min(1.0) * 2.0)).clamp_max(max);
            (Some(weight(size.clone())), Some(weight(rest_size)))
        } else {
            (None, None)
        };
        let times = |t: Tensor<2>, w: &Option<Tensor<2>>| match w {
            Some(w) => t * w.clone(),
            None => t,
        };
        let weighted_instance = |t: &Tensor<2>| times(instance(t), &w_instance);
        let domain = |t: &Tensor<2>| weighted_instance(t) + times(rest(t), &w_rest);
        let mut sums = RegionSums {
            p: domain(sum_p),
            p2: sum_p2.as_ref().map(domain),
            tp: weighted_instance(sum_p),
            t: weighted_instance(count),
            bce: sum_bce.as_ref().map(domain),
            voxels: match self.config.partition {
                Partition::Voronoi => instance(count) + rest(count),
                _ => b.voxels.clone(),
            },
        };
        if self.config.partition == Partition::Reference {
            // The other instances' voxels, at logit 0: p = 0.5, p^2 = 0.25, cross-entropy ln 2.
            let others = size.clone().neg() + size.clone().sum_dim(1);
            sums.p = sums.p + others.clone() * 0.5;
            sums.p2 = sums.p2.map(|p2| p2 + others.clone() * 0.25);
            sums.bce = sums.bce.map(|bce| bce + others * std::f64::consts::LN_2);
        }
        let per_instance = self.config.blob_loss.score(&sums);
        region_means(per_instance, size, batch, channels)
    }
}

/// The prediction term of every `(element, channel)` from its components' sums of `p`, `p^2` and
/// voxels (`[rows, components]` each): the mean of `sum(p sg(p)) / sg(sum p)` over its
/// components, `[B, C]`, and their counts.
fn false_positive_term(p: Tensor<2>, p2: Tensor<2>, size: Tensor<2>, dims: [usize; 2]) -> (Tensor<2>, Tensor<2>) {
    // d/dp of p^2 / (2 sg(sum p)) is p / sum p; its detached copy doubles the value to
    // sum(p^2) / sum(p).
    let half = p2 / (p.detach().clamp_min(f64::from(f32::MIN_POSITIVE)) * 2.0);
    let per_component = half.clone() + half.detach();
    region_means(per_component, size, dims[0], dims[1])
}

/// The per-bin sums, `[rows, bins]` each; bin 0 of a row is its background, bins
/// `1..foreground_end` its instances, the bins after them (with [`Partition::Voronoi`]) the
/// background of each instance's cell.
struct Bins {
    p: Tensor<2>,
    p2: Option<Tensor<2>>,
    bce: Option<Tensor<2>>,
    count: Tensor<2>,
    /// The voxels of every row, ignored ones left out, `[rows, 1]`.
    voxels: Tensor<2>,
    foreground_end: usize,
}
