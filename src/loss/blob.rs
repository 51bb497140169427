//! Blob loss (Kofler et al., IPMI 2023, arXiv 2205.08209) on burn tensors, in one pass: the
//! module and its forward methods. One evaluation goes through the loss's parts in order:
//! the targets are checked ([`targets`](super::targets)), the bin map of every voxel is built
//! ([`bins`](super::bins)) and summed ([`sums`](super::sums)), the terms are scored
//! ([`global_term`](super::global_term), [`blob_term`](super::blob_term),
//! [`false_positives`](super::false_positives)) and reduced ([`reduce`](super::reduce)).

use burn::module::Module;
use burn::tensor::{FloatDType, Tensor};

use super::bins::{BinMaps, BinSums, bin_map};
use super::blob_term::blob_rows;
use super::categorical::categorical_cross_entropy;
use super::config::BlobLossConfig;
use super::false_positives::{false_positive_components, false_positive_rows};
use super::global_term::global_rows;
use super::output::{BlobLossOutput, UnreducedParts};
use super::partition::Partition;
use super::reduce::{nested_mean, weighted_mean};
use super::sums::InstanceSumsSpec;
use super::sums::device::host_backed;
use super::targets::{LossTargets, check_shapes};
use crate::Error;

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
    ///   [`Activation::None`](super::Activation::None)).
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
        let dtype = FloatDType::from(outputs.dtype());
        let terms = self.terms(outputs, targets.into())?;
        let config = &self.config;
        let weights = terms.channel_weights;
        let mut global = weighted_mean(terms.global, weights.clone());
        if let Some(categorical) = terms.categorical {
            global = global + categorical * config.categorical_cross_entropy;
        }
        let (blob, elements_with_instances) = nested_mean(terms.blob, terms.instances, weights.clone());
        let mut total = global.clone() * config.global_weight + blob.clone() * config.blob_weight;
        let false_positive = match terms.false_positive {
            Some((rows, counts)) => {
                let term = nested_mean(rows, counts, weights).0;
                total = total + term.clone() * config.false_positive_weight;
                term
            }
            None => global.zeros_like(),
        };
        // Reading the value costs nothing where tensors are host memory; a GPU would synchronise.
        if host_backed(&total.device()) {
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
        })
    }

    /// The terms of every `(element, channel)` before the means over elements and channels
    /// (burn-nn's `forward_no_reduction`): the global and blob terms, `[B, C]`, and the instance
    /// counts, for reductions of your own.
    ///
    /// # Panics
    /// With the message of the error [`try_forward_no_reduction`](Self::try_forward_no_reduction)
    /// would return.
    ///
    /// # Example
    /// ```
    /// use blob_loss::loss::BlobLossConfig;
    /// use burn::tensor::{Device, Int, Tensor};
    ///
    /// let device = Device::flex();
    /// let logits = Tensor::<4>::zeros([2, 1, 1, 4], &device);
    /// let instances = Tensor::<4, Int>::from_ints([[[[1, 0, 2, 0]]], [[[0, 0, 0, 0]]]], &device);
    /// let unreduced = BlobLossConfig::new().init().forward_no_reduction(logits, instances);
    /// assert_eq!(unreduced.blob.dims(), [2, 1]);
    /// assert_eq!(unreduced.instances.into_data().to_vec::<f32>().unwrap(), [2.0, 0.0]);
    /// ```
    pub fn forward_no_reduction<const D: usize>(
        &self,
        outputs: Tensor<D>,
        targets: impl Into<LossTargets<D>>,
    ) -> UnreducedParts {
        self.try_forward_no_reduction(outputs, targets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_no_reduction`](Self::forward_no_reduction), returning bad input as an error.
    ///
    /// # Errors
    /// As [`try_forward`](Self::try_forward), except [`Error::NonFiniteLoss`] (nothing is reduced
    /// to one value).
    pub fn try_forward_no_reduction<const D: usize>(
        &self,
        outputs: Tensor<D>,
        targets: impl Into<LossTargets<D>>,
    ) -> Result<UnreducedParts, Error> {
        let dtype = FloatDType::from(outputs.dtype());
        let terms = self.terms(outputs, targets.into())?;
        Ok(UnreducedParts {
            global: terms.global.cast(dtype),
            blob: terms.blob.cast(dtype),
            instances: terms.instances.detach().cast(dtype),
        })
    }

    /// Every term of every `(element, channel)`, in the sums' dtype.
    fn terms<const D: usize>(&self, outputs: Tensor<D>, targets: LossTargets<D>) -> Result<Terms, Error> {
        let config = &self.config;
        let dims = outputs.dims();
        let LossTargets { instances, cells, false_positives } = self.checked_targets(&outputs, targets)?;
        // Ignored voxels enter no term and get no gradient, whatever their outputs: masked before
        // the activation (a NaN or infinite output there would otherwise reach the gradient
        // through the activation's derivative, times a zero upstream gradient).
        let outputs =
            if config.ignore_negative_ids { outputs.mask_fill(instances.clone().lower_elem(0), 0.0) } else { outputs };
        let [batch, channels] = [dims[0], dims[1]];
        let (rows, voxels) = (batch * channels, dims[2..].iter().product::<usize>());
        let categorical = (config.categorical_cross_entropy > 0.0)
            .then(|| categorical_cross_entropy(outputs.clone(), instances.clone()));
        let (values, input) = config.activation.sum_input(outputs);
        let values = values.reshape([rows, voxels]);
        let maps = BinMaps {
            instances: instances.reshape([rows, voxels]),
            cells: cells.map(|cells| cells.reshape([rows, voxels])),
            false_positives: false_positives.map(|map| map.reshape([rows, voxels])),
            ignore_negative: config.ignore_negative_ids,
        };
        let spec =
            InstanceSumsSpec::new(input, 0).with_squares(config.needs_p2()).with_cross_entropy(config.needs_bce());
        let map = bin_map(maps, config.max_bins, spec)?;
        let sums = BinSums::of(values.clone(), &map, config.engine);
        let sums_dtype = FloatDType::from(sums.p.dtype());
        let channel_weights = config.channel_weights(channels, &values.device())?.cast(sums_dtype);
        let global = global_rows(config, &sums, batch, channels);
        let (blob, instances) = blob_rows(config, &sums, batch, channels);
        let false_positive =
            false_positive_rows(map.false_positives, values, input, config.engine, config.max_bins, [batch, channels])?;
        Ok(Terms {
            global,
            blob,
            instances,
            false_positive,
            categorical: categorical.map(|c| c.cast(sums_dtype)),
            channel_weights,
        })
    }

    /// The targets checked against the outputs, with what the configuration needs: the cells for
    /// [`Partition::Voronoi`] (dropped otherwise), the false-positive components when their term
    /// is on (found from the outputs when not given; dropped when the term is off).
    fn checked_targets<const D: usize>(
        &self,
        outputs: &Tensor<D>,
        targets: LossTargets<D>,
    ) -> Result<LossTargets<D>, Error> {
        let config = &self.config;
        let maps = [
            ("instances vs outputs", Some(&targets.instances)),
            ("cells vs outputs", targets.cells.as_ref()),
            ("false positives vs outputs", targets.false_positives.as_ref()),
        ];
        check_shapes(outputs.dims(), &maps)?;
        let LossTargets { instances, cells, false_positives } = targets.in_kernel_ints()?;
        let cells = match (config.partition, cells) {
            (Partition::Voronoi, None) => {
                return Err(Error::InvalidArgument(
                    "Partition::Voronoi scores each instance on its Voronoi cell: give the cells \
                     (LossTargets::with_cells, from components::voronoi_batch of the instance map)"
                        .into(),
                ));
            }
            (Partition::Voronoi, cells) => cells,
            (_, _) => None,
        };
        let false_positives = match (config.false_positive_weight > 0.0, false_positives) {
            (true, Some(map)) => Some(map),
            (true, None) => Some(false_positive_components(
                outputs.clone(),
                instances.clone(),
                config.activation,
                config.false_positive_threshold,
            )?),
            (false, _) => None,
        };
        Ok(LossTargets { instances, cells, false_positives })
    }
}

/// The terms of one evaluation before the means, in the sums' dtype.
struct Terms {
    /// `[B, C]` (`[1, C]` with batch Dice).
    global: Tensor<2>,
    /// `[B, C]`.
    blob: Tensor<2>,
    /// The instances of every `(element, channel)`, `[B, C]`.
    instances: Tensor<2>,
    /// The false-positive term and its component counts, `[B, C]` each, when any row has one.
    false_positive: Option<(Tensor<2>, Tensor<2>)>,
    /// The categorical cross-entropy, `[1]`, when on.
    categorical: Option<Tensor<1>>,
    /// `[1, C]`.
    channel_weights: Tensor<2>,
}
