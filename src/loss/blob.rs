//! Blob loss (Kofler et al., IPMI 2023, arXiv 2205.08209) on burn tensors, in one pass.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{FloatDType, Int, Tensor};

use super::activation::Activation;
use super::base::{BaseLossConfig, RegionSums};
use super::ids::bin_ids;
use super::sums::{Engine, InstanceSumsSpec, Statistic, SumInput, is_flex, sums_unchecked};
use crate::Error;

/// The default of [`BlobLossConfig::max_bins`]: `2^27` bins, 1 GiB of `f64` sums per statistic.
pub const MAX_BINS: usize = 1 << 27;

/// How the voxels of the *other* instances enter instance `k`'s term.
///
/// # Example
/// ```
/// use blob_loss::loss::{BlobLossConfig, Masking};
///
/// let reference = BlobLossConfig::new().with_masking(Masking::Reference);
/// assert!(reference.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Masking {
    /// The paper's semantics: other instances are removed from instance `k`'s term; it is scored
    /// on the background plus instance `k` only.
    Exclude,
    /// Bit for bit what the published reference code computes: the *logits* of the other
    /// instances are set to 0, so they count as probability 0.5 (and `ln 2` of cross-entropy),
    /// target 0. Only with [`Activation::Sigmoid`]; for reproducing numbers made with that code.
    Reference,
}

/// Configuration of [`BlobLoss`].
///
/// `L = global_weight * L_global + blob_weight * L_blob`, where `L_global` is `global_loss` over
/// every `(element, channel)` (averaged) and `L_blob` is `blob_loss` per instance, averaged over
/// the instances of a channel, then over the channels that have instances, then over the batch
/// elements that have any.
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
    /// How other instances enter an instance's term.
    #[config(default = "Masking::Exclude")]
    pub masking: Masking,
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
    /// [`Error::InvalidConfig`] for a negative or non-finite weight or smoothing term, base losses
    /// with every weight 0, or [`Masking::Reference`] without a sigmoid.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, value) in [("global_weight", self.global_weight), ("blob_weight", self.blob_weight)] {
            if !value.is_finite() || value < 0.0 {
                return Err(Error::InvalidConfig(format!("{name} must be finite and >= 0, got {value}")));
            }
        }
        self.global_loss.validate("global_loss")?;
        self.blob_loss.validate("blob_loss")?;
        if self.masking == Masking::Reference && self.activation != Activation::Sigmoid {
            return Err(Error::InvalidConfig(
                "Masking::Reference reproduces the reference code, which applies a sigmoid to masked logits: \
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

/// The blob loss, its two unweighted parts and the count behind the blob mean.
///
/// All three losses are differentiable: backpropagate `total`, or any weighted combination of
/// `global` and `blob` (a schedule of the weights, a warm-up).
///
/// `global` is a mean over every `(element, channel)`, `blob` a mean over the batch elements that
/// have instances, [`elements_with_instances`](Self::elements_with_instances) of them. To get
/// the gradient of a whole batch from shards of it (data-parallel training, gradient
/// accumulation), weight each shard's parts by its share of those counts and sum the shards'
/// gradients: `global_weight * global * rows_k / rows + blob_weight * blob * n_k / n`, where
/// `rows_k` and `n_k` are the shard's, `rows` and `n` the whole batch's (`tests/multi_device.rs`
/// checks it).
///
/// # Example
/// ```
/// use blob_loss::loss::BlobLossConfig;
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<4>::zeros([2, 1, 1, 4], &device);
/// // Element 0 has two instances, element 1 none.
/// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2, 0]]], [[[0, 0, 0, 0]]]], &device);
/// let parts = BlobLossConfig::new().init().forward_parts(logits, instances);
/// assert_eq!(parts.elements_with_instances.into_scalar::<f32>(), 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct BlobLossOutput {
    /// `global_weight * global + blob_weight * blob`, shape `[1]`.
    pub total: Tensor<1>,
    /// The global term, unweighted, shape `[1]`.
    pub global: Tensor<1>,
    /// The blob term, unweighted, shape `[1]` (0, with a zero gradient, when no element has an
    /// instance).
    pub blob: Tensor<1>,
    /// How many batch elements have at least one instance (the denominator of the blob mean),
    /// shape `[1]`, as a float without gradient.
    pub elements_with_instances: Tensor<1>,
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
    /// The loss: `global_weight * global + blob_weight * blob`, shape `[1]`.
    ///
    /// - `outputs`: `[B, C, spatial..]` (D = 3, 4 or 5), logits (or probabilities with
    ///   [`Activation::None`]).
    /// - `instances`: the same shape; for channel `c`, 0 is background and each positive id one
    ///   instance of class `c` (ids need not be contiguous).
    ///
    /// # Panics
    /// With the message of the error [`try_forward`](Self::try_forward) would return.
    pub fn forward<const D: usize>(&self, outputs: Tensor<D>, instances: Tensor<D, Int>) -> Tensor<1> {
        self.try_forward(outputs, instances).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward`](Self::forward), returning bad input as an error.
    ///
    /// # Errors
    /// [`Error::UnsupportedRank`], [`Error::ShapeMismatch`], [`Error::InvalidArgument`] for a
    /// shape with a zero-sized axis, [`Error::NegativeInstanceId`], [`Error::TooManyInstances`]; on the CPU backend, where reading the value costs nothing,
    /// [`Error::NonFiniteLoss`] when the outputs hold NaN (GPU backends return the NaN loss).
    pub fn try_forward<const D: usize>(
        &self,
        outputs: Tensor<D>,
        instances: Tensor<D, Int>,
    ) -> Result<Tensor<1>, Error> {
        Ok(self.try_forward_parts(outputs, instances)?.total)
    }

    /// The loss with its unweighted global and blob parts.
    ///
    /// # Panics
    /// With the message of the error [`try_forward_parts`](Self::try_forward_parts) would return.
    pub fn forward_parts<const D: usize>(&self, outputs: Tensor<D>, instances: Tensor<D, Int>) -> BlobLossOutput {
        self.try_forward_parts(outputs, instances).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_parts`](Self::forward_parts), returning bad input as an error.
    ///
    /// # Errors
    /// As [`try_forward`](Self::try_forward).
    pub fn try_forward_parts<const D: usize>(
        &self,
        outputs: Tensor<D>,
        instances: Tensor<D, Int>,
    ) -> Result<BlobLossOutput, Error> {
        let config = &self.config;
        let dims = outputs.dims();
        if !(3..=5).contains(&D) {
            return Err(Error::UnsupportedRank {
                what: "outputs",
                ndim: D,
                expected: "3, 4 or 5 ([B, C, spatial..] with 1 to 3 spatial axes)",
            });
        }
        if instances.dims() != dims {
            return Err(Error::ShapeMismatch {
                what: "instances vs outputs",
                expected: dims.to_vec(),
                found: instances.dims().to_vec(),
            });
        }
        if dims.contains(&0) {
            // burn reads a 0 in a reshape target as "keep this axis": refuse empty tensors here.
            return Err(Error::InvalidArgument(format!(
                "outputs of shape {dims:?} have no voxels: the loss needs at least one element, channel and voxel"
            )));
        }
        let rows = dims[0] * dims[1];
        let voxels: usize = dims[2..].iter().product();
        let device = outputs.device();
        let dtype = FloatDType::from(outputs.dtype());
        let on_flex = is_flex(&device);
        let (values, input) = match config.activation {
            Activation::Sigmoid => (outputs.reshape([rows, voxels]), SumInput::Logits),
            Activation::Softmax => {
                // GPU shaders have no f64 exp: there the softmax of f64 outputs is taken in f32.
                let outputs =
                    if dtype == FloatDType::F64 && !on_flex { outputs.cast(FloatDType::F32) } else { outputs };
                (softmax(outputs, 1).reshape([rows, voxels]), SumInput::Probabilities)
            }
            Activation::None => (outputs.reshape([rows, voxels]), SumInput::Probabilities),
        };
        let spec = InstanceSumsSpec::new(input, 0).with_squares(self.needs_p2()).with_cross_entropy(self.needs_bce());
        let ids = bin_ids(instances.reshape([rows, voxels]), config.max_bins, spec.statistics())?;
        let spec = InstanceSumsSpec { bins: ids.bins, ..spec };
        let sums = sums_unchecked(values, ids.ids, spec, config.engine);
        let stat = |s: Statistic| {
            spec.index(s).map(|i| sums.clone().slice([0..rows, i..i + 1, 0..ids.bins]).reshape([rows, ids.bins]))
        };
        let bins = Bins {
            p: stat(Statistic::Probability).expect("always summed"),
            p2: stat(Statistic::Square),
            bce: stat(Statistic::CrossEntropy),
            count: stat(Statistic::Count).expect("always summed"),
            voxels: voxels as f64,
        };
        let global = self.global_term(&bins);
        let (blob, elements_with_instances) = self.blob_term(&bins, dims[0], dims[1]);
        let total = global.clone() * config.global_weight + blob.clone() * config.blob_weight;
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
            elements_with_instances: elements_with_instances.detach().cast(dtype),
        })
    }

    fn needs_p2(&self) -> bool {
        self.config.global_loss.needs_p2() || self.config.blob_loss.needs_p2()
    }

    fn needs_bce(&self) -> bool {
        self.config.global_loss.needs_bce() || self.config.blob_loss.needs_bce()
    }

    /// The global base loss of every `(element, channel)`, averaged.
    fn global_term(&self, b: &Bins) -> Tensor<1> {
        let (sum_p, sum_p2, sum_bce, count, voxels) = (&b.p, &b.p2, &b.bce, &b.count, b.voxels);
        let [rows, bins] = sum_p.dims();
        let foreground = |t: &Tensor<2>| t.clone().slice([0..rows, 1..bins]).sum_dim(1);
        let sums = RegionSums {
            p: sum_p.clone().sum_dim(1),
            p2: sum_p2.as_ref().map(|t| t.clone().sum_dim(1)),
            tp: foreground(sum_p),
            t: foreground(count),
            bce: sum_bce.as_ref().map(|t| t.clone().sum_dim(1)),
            voxels,
        };
        self.config.global_loss.score(&sums).mean()
    }

    /// The blob term: every instance scored on the background plus itself, then the nested means;
    /// and the number of elements with instances, shape `[1]`.
    fn blob_term(&self, b: &Bins, batch: usize, channels: usize) -> (Tensor<1>, Tensor<1>) {
        let (sum_p, sum_p2, sum_bce, count, voxels) = (&b.p, &b.p2, &b.bce, &b.count, b.voxels);
        let [rows, bins] = sum_p.dims();
        let background = |t: &Tensor<2>| t.clone().slice([0..rows, 0..1]);
        let instance = |t: &Tensor<2>| t.clone().slice([0..rows, 1..bins]);
        // Per instance k: the background plus k.
        let with_background = |t: &Tensor<2>| instance(t) + background(t);
        let size = instance(count);
        let mut sums = RegionSums {
            p: with_background(sum_p),
            p2: sum_p2.as_ref().map(with_background),
            tp: instance(sum_p),
            t: size.clone(),
            bce: sum_bce.as_ref().map(with_background),
            voxels,
        };
        if self.config.masking == Masking::Reference {
            // The other instances' voxels, at logit 0: p = 0.5, p^2 = 0.25, cross-entropy ln 2.
            let others = size.clone().neg() + size.clone().sum_dim(1);
            sums.p = sums.p + others.clone() * 0.5;
            sums.p2 = sums.p2.map(|p2| p2 + others.clone() * 0.25);
            sums.bce = sums.bce.map(|bce| bce + others * std::f64::consts::LN_2);
        }
        let per_instance = self.config.blob_loss.score(&sums);

        // Means over present instances, channels with instances, elements with instances. Absent
        // bins (rows with fewer instances than the fullest) are selected out, not multiplied by 0.
        let absent = size.clone().lower_elem(0.5); // sizes are whole numbers
        let present = size.clamp_max(1.0); // 1 where present, 0 elsewhere
        let n_instances = present.sum_dim(1); // [rows, 1]
        let channel_loss = per_instance.mask_fill(absent, 0.0).sum_dim(1) / n_instances.clone().clamp_min(1.0);
        let channel_has = n_instances.clone().clamp_max(1.0);
        let channel_loss = channel_loss.reshape([batch, channels]);
        let channel_has = channel_has.reshape([batch, channels]);
        let n_channels = channel_has.clone().sum_dim(1); // [batch, 1]
        let element_loss = (channel_loss * channel_has).sum_dim(1) / n_channels.clone().clamp_min(1.0);
        let element_has = n_channels.clone().clamp_max(1.0);
        let n_elements = element_has.clone().sum();
        let blob = (element_loss * element_has).sum() / n_elements.clone().clamp_min(1.0);
        (blob.reshape([1]), n_elements.reshape([1]))
    }
}

/// The per-bin sums, `[rows, bins]` each; bin 0 of a row is its background.
struct Bins {
    p: Tensor<2>,
    p2: Option<Tensor<2>>,
    bce: Option<Tensor<2>>,
    count: Tensor<2>,
    voxels: f64,
}
