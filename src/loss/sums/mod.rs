//! The engine of the loss: per-instance sums of voxel statistics, one differentiable burn op.
//!
//! [`instance_sums`] reads a `[rows, voxels]` tensor of network outputs and a `[rows, voxels]` map
//! of bin indices (instance ids: 0 is the background) and returns, for every row and every bin,
//! the sums of the voxel statistics a region loss needs ([`Statistic`]): the probabilities, the
//! voxel count, the squared probabilities and the binary cross-entropy. Every base loss of the
//! crate (soft Dice, Tversky, BCE) is a function of these sums, so one pass over the voxels
//! scores every instance, however many there are.
//!
//! It is a burn backend extension ([`InstanceSumsBackend`]) with its own backward pass:
//! - flex (CPU; crate feature `flex`, on by default): fused host passes with rayon, sums in `f64`;
//! - burn's cube backend (wgpu, cuda; crate feature `wgpu` or `cuda`): one kernel for the sums
//!   (background voxels reduced per workgroup, instance voxels added into per-chunk bins with
//!   float atomics, or a compare-and-swap loop where the device has none; `f32` partials summed in
//!   a tree) and one for the gradient, through burn's kernel fusion as well;
//! - autodiff on either: the gradient of the sums with respect to the outputs is a gather of the
//!   upstream bin gradients by id, chained through the activation.
//!
//! On other backends (and with [`Engine::Scatter`](crate::loss::Engine)) the same sums are made
//! from burn's tensor operations (`scatter` with `Add`): same values, slower.

mod autodiff;
#[cfg(feature = "cube")]
mod cube;
pub(crate) mod device;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub(crate) mod host;
mod scatter;
mod spec;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, backend_extension};
use burn::tensor::{Int, Tensor};

use device::has_fused_op;
pub use device::native_float_atomics;
use scatter::scatter_sums;
pub use spec::{InstanceSumsSpec, MAX_LOGIT_CROSS_ENTROPY, PROBABILITY_FLOOR, Statistic, SumInput};

use crate::Error;
pub(crate) use crate::backend::id_range;

/// The backend extension behind [`instance_sums`]: the forward sums and their backward pass.
///
/// Implemented for burn's flex backend (with the crate feature `flex`, on by default), its cube
/// backend (with the crate feature `wgpu` or `cuda`), kernel fusion over it, and autodiff over any
/// of them. Call it through
/// [`instance_sums`], which checks its inputs: the methods index bins by id without bounds
/// checks on the GPU.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::{instance_sums, InstanceSumsSpec, SumInput};
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_floats([[0.0, 0.0, 0.0]], &device);
/// let ids = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let sums = instance_sums(logits, ids, InstanceSumsSpec::new(SumInput::Logits, 2))?;
/// assert_eq!(sums.dims(), [1, 2, 2]); // [rows, statistics, bins]
/// # Ok::<(), blob_loss::Error>(())
/// ```
#[backend_extension(Flex: cfg(feature = "flex"), Cube: cfg(feature = "cube"), Fusion: cfg(feature = "cube"), Autodiff)]
pub trait InstanceSumsBackend: Backend {
    /// The sums, `[maps * rows, statistics, bins]`, from outputs `x` `[rows, voxels]` and bin
    /// indices `ids` `[maps * rows, voxels]` (`maps` = [`spec.maps`](InstanceSumsSpec::maps)),
    /// each in `0..spec.bins`. `f64` on flex, `f32` on the cube backend.
    #[fusion(dtype = burn::tensor::DType::F32, shape = spec.output_shape(x))]
    fn instance_sums(x: FloatTensor<Self>, ids: IntTensor<Self>, spec: InstanceSumsSpec) -> FloatTensor<Self>;

    /// The gradient with respect to `x` (in `x`'s dtype) of a scalar whose gradient with respect
    /// to the sums is `grad` (`[maps * rows, statistics, bins]`).
    #[fusion(dtype = x, shape = x)]
    fn instance_sums_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        ids: IntTensor<Self>,
        spec: InstanceSumsSpec,
    ) -> FloatTensor<Self>;
}

/// Per-bin sums of voxel statistics, differentiable with respect to `values`.
///
/// - `values`: `[rows, voxels]` logits ([`SumInput::Logits`]) or probabilities
///   ([`SumInput::Probabilities`]), any float dtype.
/// - `ids`: `[rows, voxels]` bin indices in `0..spec.bins` (0 is the background: its voxels
///   have target 0, every other bin's target 1); `[maps * rows, voxels]` with
///   [`spec.maps`](InstanceSumsSpec::maps) maps.
///
/// Returns `[spec.maps * rows, spec.statistics(), spec.bins]`, statistics in the order of [`Statistic`]:
/// `f64` on flex, `f32` on GPU backends. One host read (the smallest and largest id) checks
/// the ids first.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `ids` is not `[maps * rows, voxels]`,
/// [`Error::NegativeInstanceId`] and [`Error::InvalidArgument`] for ids outside `0..spec.bins`
/// or no map.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::{instance_sums, InstanceSumsSpec, Statistic, SumInput};
/// use burn::tensor::{Device, Int, Tensor};
///
/// let device = Device::flex().autodiff();
/// let p = Tensor::<2>::from_floats([[0.5, 1.0, 0.25]], &device).require_grad();
/// let ids = Tensor::<2, Int>::from_ints([[0, 1, 1]], &device);
/// let spec = InstanceSumsSpec::new(SumInput::Probabilities, 2);
/// let sums = instance_sums(p.clone(), ids, spec)?;
/// let at = |s: Statistic, bin: usize| -> f64 {
///     sums.clone().slice([0..1, spec.index(s).unwrap()..spec.index(s).unwrap() + 1, bin..bin + 1]).into_scalar()
/// };
/// assert_eq!(at(Statistic::Probability, 1), 1.25);
/// assert_eq!(at(Statistic::Count, 0), 1.0);
/// // d(sum of p in bin 1) / dp = 1 on the voxels of bin 1.
/// let grads = sums.slice([0..1, 0..1, 1..2]).sum().backward();
/// let g: Vec<f32> = p.grad(&grads).unwrap().into_data().to_vec().unwrap();
/// assert_eq!(g, [0.0, 1.0, 1.0]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn instance_sums(values: Tensor<2>, ids: Tensor<2, Int>, spec: InstanceSumsSpec) -> Result<Tensor<3>, Error> {
    if spec.maps == 0 {
        return Err(Error::InvalidArgument("the sums need at least one bin map (spec.maps is 0)".into()));
    }
    let [rows, voxels] = values.dims();
    let expected = [rows * spec.maps, voxels];
    if ids.dims() != expected {
        return Err(Error::ShapeMismatch {
            what: "ids vs values (maps x rows, voxels)",
            expected: expected.to_vec(),
            found: ids.dims().to_vec(),
        });
    }
    let (_, max) = id_range(&ids)?;
    if values.shape().num_elements() > 0 && max as u128 >= spec.bins as u128 {
        return Err(Error::InvalidArgument(format!("id {max} is not below the number of bins {}", spec.bins)));
    }
    Ok(sums_unchecked(values, ids, spec, Engine::Fused))
}

/// How the sums are computed.
#[derive(burn::config::Config, Debug, PartialEq, Eq, Copy, Hash)]
pub enum Engine {
    /// The [`InstanceSumsBackend`] op: host passes on flex, the cube kernel on wgpu and cuda.
    /// Backends without it (for example a build without the crate's `wgpu` feature running on a
    /// wgpu device) take [`Engine::Scatter`].
    Fused,
    /// burn's generic tensor operations (`scatter` with `Add` into the bins): the reference,
    /// several times slower; its gradient comes from burn's autodiff.
    Scatter,
}

/// [`instance_sums`] without the checks: `ids` must be in `0..spec.bins`.
pub(crate) fn sums_unchecked(
    values: Tensor<2>,
    ids: Tensor<2, Int>,
    spec: InstanceSumsSpec,
    engine: Engine,
) -> Tensor<3> {
    if engine == Engine::Scatter || !has_fused_op(&values.device()) {
        return scatter_sums(values, ids, spec);
    }
    // Each backend reads the ids in the integer types it has (flex: i32 and i64 as they are; the
    // cube kernel casts to i32).
    let sums = <burn::backend::Dispatch as InstanceSumsBackend>::instance_sums(
        values.into_dispatch(),
        ids.into_dispatch(),
        spec,
    );
    Tensor::from_dispatch(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn bad_inputs_are_clear_errors() {
        let device = Device::flex();
        let values = Tensor::<2>::zeros([1, 3], &device);
        let spec = InstanceSumsSpec::new(SumInput::Logits, 2);
        let err = instance_sums(values.clone(), Tensor::<2, Int>::zeros([1, 2], &device), spec).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        let negative = Tensor::<2, Int>::from_ints([[0, -2, 1]], &device);
        assert_eq!(instance_sums(values.clone(), negative, spec).unwrap_err(), Error::NegativeInstanceId { value: -2 });
        let too_large = Tensor::<2, Int>::from_ints([[0, 2, 1]], &device);
        let err = instance_sums(values.clone(), too_large, spec).unwrap_err();
        assert!(err.to_string().contains("id 2 is not below the number of bins 2"), "{err}");
        let no_map = instance_sums(values.clone(), Tensor::<2, Int>::zeros([1, 3], &device), spec.with_maps(0));
        assert!(no_map.unwrap_err().to_string().contains("at least one bin map"));
        let ok = instance_sums(values, Tensor::<2, Int>::from_ints([[0, 1, 1]], &device), spec).unwrap();
        assert_eq!(ok.dims(), [1, 2, 2]);
    }
}
