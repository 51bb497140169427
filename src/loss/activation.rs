//! How network outputs become probabilities.

use burn::config::Config;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::sums::SumInput;
use super::sums::device::exponentiable;

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

impl Activation {
    /// What the sums read for `outputs` (`[rows, channels, voxels]`-like, channels on axis 1): the
    /// logits themselves with a sigmoid (the sums take the sigmoid voxel by voxel), the softmax
    /// probabilities, or the outputs as they are.
    pub(crate) fn sum_input<const D: usize>(self, outputs: Tensor<D>) -> (Tensor<D>, SumInput) {
        match self {
            Activation::Sigmoid => (outputs, SumInput::Logits),
            Activation::Softmax => (softmax(exponentiable(outputs), 1), SumInput::Probabilities),
            Activation::None => (outputs, SumInput::Probabilities),
        }
    }
}
