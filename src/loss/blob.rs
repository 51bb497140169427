//! Blob loss (Kofler et al., IPMI 2023, arXiv 2205.08209) on burn tensors, in one pass.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};

use super::activation::Activation;
use super::base::{BaseLossConfig, RegionSums};
use super::host;
use crate::Error;

/// The most bins (`B x C x (largest id + 1)`) one call may use, about 1 GiB of `f64` sums
/// for each statistic.
pub const MAX_BINS: u128 = 1 << 27;

/// Voxels per accumulation chunk on backends that accumulate in `f32` (GPU): short enough that
/// the `f32` sum of one chunk stays exact to about `1e-7` relative.
const GPU_CHUNK: usize = 1 << 14;

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
    /// On burn's CPU backend (flex), with [`Activation::Sigmoid`] or [`Activation::None`], compute
    /// the bin sums and the gradient in fused host passes (rayon) instead of generic tensor ops:
    /// the same values and gradients, several times faster. Other backends and the softmax always
    /// take the generic path.
    #[config(default = true)]
    pub fused_cpu: bool,
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

/// The blob loss and its two unweighted parts, for logging.
///
/// Backpropagate `total`. `global` and `blob` are values for logging: on the fused CPU path
/// ([`BlobLossConfig::fused_cpu`]) they carry no gradient.
#[derive(Debug, Clone)]
pub struct BlobLossOutput {
    /// `global_weight * global + blob_weight * blob`, shape `[1]`.
    pub total: Tensor<1>,
    /// The global term, unweighted, shape `[1]`.
    pub global: Tensor<1>,
    /// The blob term, unweighted, shape `[1]` (0, with a zero gradient, when no element has an
    /// instance).
    pub blob: Tensor<1>,
}

/// Blob loss: instance-imbalance-aware segmentation loss, stateless.
///
/// Built with [`BlobLossConfig::init`]. Every instance of every `(element, channel)` is scored in
/// one pass: the per-voxel statistics are scatter-added into bins indexed by instance id (bin 0
/// is the background), and every base loss is computed from those bin sums. The cost is
/// `O(voxels + instances)` whatever the number of instances, with one small host read per call
/// (the smallest and largest id). On the CPU backend (flex) the sums are accumulated in `f64`;
/// on GPU backends in `f32` bins per chunk of 16384 voxels, summed afterwards; either way the
/// value does not drift on large volumes. On flex with a sigmoid or no activation the default
/// ([`BlobLossConfig::fused_cpu`]) computes the sums and the gradient in fused host passes.
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
    /// [`Error::UnsupportedRank`], [`Error::ShapeMismatch`], [`Error::NegativeInstanceId`],
    /// [`Error::InstanceIdTooLarge`].
    pub fn try_forward<const D: usize>(
        &self,
        outputs: Tensor<D>,
        instances: Tensor<D, Int>,
    ) -> Result<Tensor<1>, Error> {
        Ok(self.try_forward_parts(outputs, instances)?.total)
    }

    /// The loss with its unweighted global and blob parts, for logging.
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
        let rows = dims[0] * dims[1];
        let voxels: usize = dims[2..].iter().product();
        let device = outputs.device();
        let on_flex = device.clone().without_autodiff() == Device::flex();
        if config.fused_cpu && config.activation != Activation::Softmax && on_flex {
            return self.forward_host(outputs, instances, rows);
        }
        let max_id = check_ids(&instances, rows)?;
        let bins = max_id as usize + 1;

        // Per-voxel statistics, [rows, voxels], computed in f32 (GPU shaders have no f64
        // exp/log), accumulated exactly enough: in f64 on flex; on other backends, whose f64
        // atomics are not dependable, in f32 bins per chunk of voxels, summed afterwards.
        let (accumulate, chunk) = if on_flex {
            (FloatDType::F64, voxels.max(1))
        } else {
            let chunks_fitting = (MAX_BINS as usize / (rows * bins).max(1)).max(1);
            (FloatDType::F32, GPU_CHUNK.max(voxels.div_ceil(chunks_fitting)))
        };
        let chunks = voxels.div_ceil(chunk).max(1);
        let probabilities = config.activation.apply(outputs.clone());
        let ids = instances.reshape([rows, voxels]);
        let target = ids.clone().greater_elem(0).float();
        let p = probabilities.reshape([rows, voxels]);
        let slots = if chunks == 1 {
            ids
        } else {
            let offsets =
                Tensor::<1, Int>::arange(0..voxels as i64, &device).div_scalar(chunk as i64).mul_scalar(bins as i64);
            ids + offsets.unsqueeze::<2>()
        };
        let scatter = |values: Tensor<2>| {
            let dtype: DType = accumulate.into();
            let per_chunk = Tensor::<2>::zeros([rows, chunks * bins], (&device, dtype)).scatter(
                1,
                slots.clone(),
                values.cast(accumulate),
                IndexingUpdateOp::Add,
            );
            if chunks == 1 {
                per_chunk
            } else {
                per_chunk.reshape([rows, chunks, bins]).sum_dim(1).reshape([rows, bins])
            }
        };
        let sum_bce = self.needs_bce().then(|| {
            let bce = match config.activation {
                Activation::Sigmoid => {
                    // -ln p where t = 1 and -ln(1 - p) where t = 0, as softplus(x (1 - 2t)).
                    let x = outputs.reshape([rows, voxels]) * (target.clone() * -2.0 + 1.0);
                    relu(x.clone()) + x.abs().neg().exp().log1p()
                }
                _ => {
                    let p_true = p.clone() * target.clone() + (p.clone().neg() + 1.0) * (target.clone().neg() + 1.0);
                    p_true.log().clamp_min(-100.0).neg()
                }
            };
            scatter(bce)
        });
        let sums = Bins {
            p: scatter(p.clone()),
            p2: self.needs_p2().then(|| scatter(p.clone() * p.clone())),
            bce: sum_bce,
            count: scatter(target).detach(),
            voxels: voxels as f64,
        };
        let global = self.global_term(&sums);
        let blob = self.blob_term(&sums, dims[0], dims[1]);
        let total = global.clone() * config.global_weight + blob.clone() * config.blob_weight;
        let to_f32 = |t: Tensor<1>| if on_flex { t.cast(FloatDType::F32) } else { t };
        Ok(BlobLossOutput { total: to_f32(total), global: to_f32(global), blob: to_f32(blob) })
    }

    fn needs_p2(&self) -> bool {
        self.config.global_loss.needs_p2() || self.config.blob_loss.needs_p2()
    }

    fn needs_bce(&self) -> bool {
        self.config.global_loss.needs_bce() || self.config.blob_loss.needs_bce()
    }

    /// The fused CPU path (see [`host`]): host sums, bin gradients by autodiff on the small bin
    /// tensors, the voxel gradient by the chain rule, and a surrogate carrying it.
    fn forward_host<const D: usize>(
        &self,
        outputs: Tensor<D>,
        instances: Tensor<D, Int>,
        rows: usize,
    ) -> Result<BlobLossOutput, Error> {
        // Read both on the host, without a conversion where the dtypes are the usual ones. The
        // outputs are shared (the caller and the graph hold them), and reading a shared tensor
        // copies it twice on flex (a byte copy, then one to realign it); a copy made by a tensor
        // op (`x * 1`, exact) belongs to this call alone, and reading it moves its buffer out.
        let data = outputs.clone().detach().mul_scalar(1.0).into_data();
        let converted;
        let x: &[f32] = if data.dtype() == DType::F32 {
            data.as_slice().expect("f32 data")
        } else {
            converted = data.convert::<f32>();
            converted.as_slice().expect("converted to f32")
        };
        let ids = instances.into_data();
        match ids.dtype() {
            DType::I32 => self.forward_host_ids(outputs, x, ids.as_slice::<i32>().expect("i32 data"), rows),
            DType::I64 => self.forward_host_ids(outputs, x, ids.as_slice::<i64>().expect("i64 data"), rows),
            _ => {
                let ids = ids.convert::<i64>();
                self.forward_host_ids(outputs, x, ids.as_slice::<i64>().expect("converted to i64"), rows)
            }
        }
    }

    /// [`forward_host`](Self::forward_host) on the host copies of the inputs.
    fn forward_host_ids<I: host::InstanceId, const D: usize>(
        &self,
        outputs: Tensor<D>,
        x: &[f32],
        ids: &[I],
        rows: usize,
    ) -> Result<BlobLossOutput, Error> {
        let config = &self.config;
        let dims = outputs.dims();
        let device = outputs.device();
        let (min, max) = host::id_range(ids);
        check_range(min, max, rows)?;
        let bins = max as usize + 1;
        let needs = host::Needs { p2: self.needs_p2(), bce: self.needs_bce() };
        // The probabilities, then the gradient, in one buffer that becomes the gradient tensor.
        let mut buffer = vec![0f32; x.len()];
        let sums = host::sums(config.activation, needs, x, ids, &mut buffer, rows, bins);
        let track = device.is_autodiff();

        // Both terms scored once on leaf tensors of the bin sums; when tracked, the gradient of
        // the weighted total with respect to every bin.
        let leaves = Bins {
            p: host::leaf(&sums.p, rows, bins, &device, track),
            p2: sums.p2.as_ref().map(|v| host::leaf(v, rows, bins, &device, track)),
            bce: sums.bce.as_ref().map(|v| host::leaf(v, rows, bins, &device, track)),
            count: host::leaf(&sums.count, rows, bins, &device, false),
            voxels: (x.len() / rows.max(1)) as f64,
        };
        let global_term = self.global_term(&leaves);
        let blob_term = self.blob_term(&leaves, dims[0], dims[1]);
        let global_value = global_term.clone().into_scalar::<f64>();
        let blob_value = blob_term.clone().into_scalar::<f64>();
        let constant = |value: f64| Tensor::<1>::from_data(TensorData::new(vec![value as f32], vec![1]), &device);
        let (global, blob) = (constant(global_value), constant(blob_value));
        let total_value = config.global_weight * global_value + config.blob_weight * blob_value;
        let total = if track {
            let grads = (global_term * config.global_weight + blob_term * config.blob_weight).backward();
            let grad_of = |t: &Tensor<2>| -> Vec<f64> {
                t.grad(&grads)
                    .map(|g| g.into_data().convert::<f64>().try_to_vec::<f64>().expect("converted to f64"))
                    .unwrap_or_else(|| vec![0.0; rows * bins])
            };
            let bin_grads = host::BinGradients {
                p: grad_of(&leaves.p),
                p2: leaves.p2.as_ref().map(grad_of),
                bce: leaves.bce.as_ref().map(grad_of),
            };
            // The gradient of the total, carried to `outputs` by a surrogate whose value is 0:
            // `outputs . gradient` as a [1, n] x [n, 1] product, whose forward is a dot product
            // (no full-size tensor) and whose backward is `upstream * gradient`.
            host::voxel_gradient_in_place(config.activation, needs, ids, &mut buffer, bins, &bin_grads);
            let n = buffer.len();
            let gradient = Tensor::<2>::from_data(TensorData::new(buffer, vec![n, 1]), &device);
            let carrier = outputs.reshape([1, n]).matmul(gradient).reshape([1]);
            constant(total_value) + (carrier.clone() - carrier.detach())
        } else {
            constant(total_value)
        };
        Ok(BlobLossOutput { total, global, blob })
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

    /// The blob term: every instance scored on the background plus itself, then the nested means.
    fn blob_term(&self, b: &Bins, batch: usize, channels: usize) -> Tensor<1> {
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

        // Means over present instances, channels with instances, elements with instances.
        let present = size.clamp_max(1.0); // sizes are whole numbers: 1 where present, 0 elsewhere
        let n_instances = present.clone().sum_dim(1); // [rows, 1]
        let channel_loss = (per_instance * present).sum_dim(1) / n_instances.clone().clamp_min(1.0);
        let channel_has = n_instances.clone().clamp_max(1.0);
        let channel_loss = channel_loss.reshape([batch, channels]);
        let channel_has = channel_has.reshape([batch, channels]);
        let n_channels = channel_has.clone().sum_dim(1); // [batch, 1]
        let element_loss = (channel_loss * channel_has).sum_dim(1) / n_channels.clone().clamp_min(1.0);
        let element_has = n_channels.clone().clamp_max(1.0);
        let n_elements = element_has.clone().sum();
        ((element_loss * element_has).sum() / n_elements.clamp_min(1.0)).reshape([1])
    }
}

/// The per-bin sums, `[rows, bins]` f64 each; bin 0 of a row is its background.
struct Bins {
    p: Tensor<2>,
    p2: Option<Tensor<2>>,
    bce: Option<Tensor<2>>,
    count: Tensor<2>,
    voxels: f64,
}

/// Checks that no id is negative and that the bins fit; returns the largest id. One host read.
fn check_ids<const D: usize>(instances: &Tensor<D, Int>, rows: usize) -> Result<i64, Error> {
    if instances.shape().num_elements() == 0 {
        return Ok(0);
    }
    let flat = instances.clone().reshape([-1]);
    let extremes = Tensor::cat(vec![flat.clone().min(), flat.max()], 0).into_data().convert::<i64>();
    let extremes: Vec<i64> = extremes.try_to_vec::<i64>().expect("converted to i64");
    check_range(extremes[0], extremes[1], rows)?;
    Ok(extremes[1])
}

/// The id checks shared by both paths.
fn check_range(min: i64, max: i64, rows: usize) -> Result<(), Error> {
    if min < 0 {
        return Err(Error::NegativeInstanceId { value: min });
    }
    let bins = rows as u128 * (max as u128 + 1);
    if bins > MAX_BINS {
        return Err(Error::InstanceIdTooLarge { max_id: max, bins, limit: MAX_BINS });
    }
    Ok(())
}
