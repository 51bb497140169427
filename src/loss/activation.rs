//! How network outputs become probabilities.

use burn::config::Config;
use burn::tensor::{DType, FloatDType, Tensor};

/// The activation that turns the network's outputs into probabilities before the loss.
///
/// # Example
/// ```
/// use blob_loss::loss::{Activation, BlobLossConfig};
///
/// let config = BlobLossConfig::new().with_activation(Activation::Softmax);
/// assert_eq!(config.activation, Activation::Softmax);
/// ```
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Activation {
    /// A sigmoid per channel: every channel is its own binary problem (the paper's setting).
    Sigmoid,
    /// A softmax over the channels (axis 1): one class per voxel.
    Softmax,
    /// The inputs already are probabilities in `[0, 1]`.
    None,
}

/// The outputs in a dtype whose exponential the device can take, for a softmax: GPU shaders have
/// no `f64` `exp`, so `f64` outputs off flex (the CPU backend) are cast to `f32`.
pub(crate) fn exponentiable<const D: usize>(outputs: Tensor<D>, on_flex: bool) -> Tensor<D> {
    if outputs.dtype() == DType::F64 && !on_flex { outputs.cast(FloatDType::F32) } else { outputs }
}
