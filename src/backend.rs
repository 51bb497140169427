//! What the crate knows of the backend behind a device: whether this build has its backend
//! extensions (the instance sums, the labelling and the Voronoi cells) for it, whether its
//! memory is the host's, and how to read a tensor on the host (in place on flex).

use burn::backend::DispatchDevice;
#[cfg(feature = "flex")]
use burn::backend::flex::FlexTensor;
#[cfg(feature = "flex")]
use burn::backend::{BackendTensor, DispatchTensorKind};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::Error;

/// Whether this build has the crate's backend extensions for the device's backend: flex (the
/// crate feature `flex`) and burn's cube backend (`wgpu`, `cuda`).
pub(crate) fn has_extension_ops(device: &Device) -> bool {
    let device = device.clone().without_autodiff();
    #[allow(unreachable_patterns)]
    match device.as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(_) => true,
        _ => false,
    }
}

/// Whether the device's tensors are host memory (burn's CPU backend, flex): reading a value costs
/// no transfer and no synchronisation, and maps can be read in place.
pub(crate) fn host_backed(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Flex(_));
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// An integer tensor's values on the host: flex's own memory, read in place where it holds them
/// as one row-major run of `i32` or `i64`; otherwise a copy (`i32` and `i64` as they are, other
/// types converted to `i64`).
#[derive(Debug)]
pub(crate) enum HostInts {
    /// A flex tensor whose memory is read in place.
    #[cfg(feature = "flex")]
    Flex(FlexTensor),
    /// A copy, `i32` or `i64`.
    Data(TensorData),
}

/// The values of [`HostInts`] in their type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IntSlice<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl HostInts {
    /// The values of `map`, row-major.
    pub(crate) fn read<const D: usize>(map: Tensor<D, Int>) -> Self {
        #[cfg(feature = "flex")]
        if let Some(flex) = flex_primitive(map.clone().into_dispatch().kind)
            .filter(|t| t.as_slice::<i32>().is_some() || t.as_slice::<i64>().is_some())
        {
            return Self::Flex(flex);
        }
        let data = map.into_data();
        match data.dtype() {
            DType::I32 | DType::I64 => Self::Data(data),
            _ => Self::Data(data.convert::<i64>()),
        }
    }

    /// The values, row-major.
    pub(crate) fn slice(&self) -> IntSlice<'_> {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex(t) => {
                t.as_slice().map_or_else(|| IntSlice::I64(t.as_slice().expect("i32 or i64")), IntSlice::I32)
            }
            Self::Data(d) => {
                d.as_slice().map_or_else(|_| IntSlice::I64(d.as_slice().expect("i32 or i64")), IntSlice::I32)
            }
        }
    }

    /// The values when they are `i32`.
    pub(crate) fn as_i32(&self) -> Option<&[i32]> {
        match self.slice() {
            IntSlice::I32(values) => Some(values),
            IntSlice::I64(_) => None,
        }
    }

    /// The values as `i64` (a copy).
    pub(crate) fn to_i64(&self) -> Vec<i64> {
        match self.slice() {
            IntSlice::I32(values) => values.iter().map(|&v| v.into()).collect(),
            IntSlice::I64(values) => values.to_vec(),
        }
    }
}

/// A float tensor's values on the host as `f32`: flex's own `f32` memory, read in place where it
/// is one row-major run; otherwise a copy converted to `f32`.
#[derive(Debug)]
pub(crate) enum HostFloats {
    /// A flex tensor whose memory is read in place.
    #[cfg(feature = "flex")]
    Flex(FlexTensor),
    /// A copy in `f32`.
    Data(TensorData),
}

impl HostFloats {
    /// The values of `t` (without its autodiff graph), row-major.
    pub(crate) fn read_f32<const D: usize>(t: Tensor<D>) -> Self {
        let t = t.without_autodiff();
        #[cfg(feature = "flex")]
        if let Some(flex) = flex_primitive(t.clone().into_dispatch().kind).filter(|t| t.as_slice::<f32>().is_some()) {
            return Self::Flex(flex);
        }
        let data = t.into_data();
        Self::Data(if data.dtype() == DType::F32 { data } else { data.convert::<f32>() })
    }

    /// The values, row-major.
    pub(crate) fn as_f32(&self) -> &[f32] {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex(t) => t.as_slice().expect("checked in read_f32"),
            Self::Data(d) => d.as_slice().expect("f32"),
        }
    }
}

/// The flex tensor behind a tensor of a flex device (an autodiff tensor's, for an int tensor).
#[cfg(feature = "flex")]
fn flex_primitive(kind: DispatchTensorKind) -> Option<FlexTensor> {
    let kind = match kind {
        DispatchTensorKind::Autodiff(inner) => *inner,
        kind => kind,
    };
    #[allow(unreachable_patterns)]
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Int(t) | BackendTensor::Float(t)) => Some(t),
        _ => None,
    }
}

/// The smallest and largest id, in one host read (0 and 0 for an empty map).
///
/// # Errors
/// [`Error::NegativeInstanceId`] when the smallest is negative.
pub(crate) fn id_range<const D: usize>(ids: &Tensor<D, Int>) -> Result<(i64, i64), Error> {
    let n = ids.shape().num_elements();
    if n == 0 {
        return Ok((0, 0));
    }
    let flat = ids.clone().reshape([1, n]);
    let extremes = Tensor::cat(vec![row_extreme(flat.clone(), Extreme::Min), row_extreme(flat, Extreme::Max)], 1)
        .into_data()
        .convert::<i64>();
    let extremes: Vec<i64> = extremes.try_to_vec().expect("converted to i64");
    if extremes[0] < 0 {
        return Err(Error::NegativeInstanceId { value: extremes[0] });
    }
    Ok((extremes[0], extremes[1]))
}

/// Which extreme [`row_extreme`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extreme {
    Min,
    Max,
}

/// Values per row of one stage of [`row_extreme`].
const STAGE: usize = 1024;

/// The smallest or largest value of every row of `t` (`[rows, n]`, `n > 0`), `[rows, 1]`, in
/// stages of at most [`STAGE`] values a row. burn 0.22's one-pass reductions on the cube backend
/// lose values in tensors beyond about 2^19 elements on some devices (lavapipe: the maximum of
/// 884,736 values missed the largest); rows of [`STAGE`] values are reduced correctly.
pub(crate) fn row_extreme(t: Tensor<2, Int>, extreme: Extreme) -> Tensor<2, Int> {
    let mut t = t;
    loop {
        let [rows, n] = t.dims();
        if n <= STAGE {
            return match extreme {
                Extreme::Min => t.min_dim(1),
                Extreme::Max => t.max_dim(1),
            };
        }
        let m = n.div_ceil(STAGE);
        // Padded with each row's first value, which changes neither extreme.
        if m * STAGE > n {
            let first = t.clone().slice([0..rows, 0..1]).repeat_dim(1, m * STAGE - n);
            t = Tensor::cat(vec![t, first], 1);
        }
        let stages = t.reshape([rows * m, STAGE]);
        t = match extreme {
            Extreme::Min => stages.min_dim(1),
            Extreme::Max => stages.max_dim(1),
        }
        .reshape([rows, m]);
    }
}

/// The sum of every row of `t` (`[rows, n]`), `[rows, 1]`, in stages of at most [`STAGE`] values
/// a row (see [`row_extreme`]: burn's one-pass reductions lose values in large tensors on some
/// devices). Differentiable.
pub(crate) fn row_sum(t: Tensor<2>) -> Tensor<2> {
    let mut t = t;
    loop {
        let [rows, n] = t.dims();
        if n <= STAGE {
            return t.sum_dim(1);
        }
        let m = n.div_ceil(STAGE);
        if m * STAGE > n {
            let zeros = Tensor::<2>::zeros([rows, m * STAGE - n], (&t.device(), t.dtype()));
            t = Tensor::cat(vec![t, zeros], 1);
        }
        t = t.reshape([rows * m, STAGE]).sum_dim(1).reshape([rows, m]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_reductions_see_every_value() {
        let device = Device::flex();
        // Rows of 2,500,000 values: three stages, each row padded.
        let n: usize = 2_500_000;
        let values: Vec<i32> =
            (0..2 * n).map(|i| (i % 1000) as i32 - 500 + if i == n + 1_234_567 { 9_000 } else { 0 }).collect();
        let t = Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(values, [2, n]), &device);
        let max: Vec<i64> = row_extreme(t.clone(), Extreme::Max).into_data().convert::<i64>().try_to_vec().unwrap();
        let min: Vec<i64> = row_extreme(t.clone(), Extreme::Min).into_data().convert::<i64>().try_to_vec().unwrap();
        assert_eq!((max, min), (vec![499, 9_067], vec![-500, -500]));
        let sums: Vec<f64> = row_sum(t.float()).into_data().convert::<f64>().try_to_vec().unwrap();
        assert_eq!(sums, [-1_250_000.0, -1_250_000.0 + 9_000.0]);
        assert_eq!(id_range(&Tensor::<1, Int>::from_ints([3, 0, 7], &device)).unwrap(), (0, 7));
    }
}
