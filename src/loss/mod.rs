//! Blob loss on burn tensors: exact, differentiable, one pass for any number of instances.
//!
//! - [`BlobLossConfig`] -> [`BlobLoss`]: `alpha * L_global + beta * L_blob` (Kofler et al.,
//!   IPMI 2023), with soft Dice, BCE and Tversky as base losses ([`BaseLossConfig`]); each
//!   instance's domain chosen by [`Partition`] (blob loss, its reference code, or Voronoi
//!   cells), an optional false-positive component term, inverse-size weighting, and MONAI's
//!   options (`include_background`, class weights, batch Dice, ignored voxels, the unreduced
//!   `[B, C]` terms).
//! - [`BiccLossConfig`] -> [`BiccLoss`]: the CC family as its published code computes it: BiCC,
//!   the CC loss and CC-DiceCE, with the ground truth's and the prediction's Voronoi cells
//!   ([`prediction_cells`]).
//! - [`LossTargets`]: the instance map, the Voronoi cells, the false-positive components;
//!   [`false_positive_components`] finds the latter.
//! - [`instances_to_tensor`]: instance maps from [`components`](crate::components) to burn.
//! - [`sums`]: the engine, one differentiable op that sums voxel statistics per instance, with a
//!   host pass on the CPU and a cube kernel on wgpu and cuda.
//!
//! # Example
//! ```
//! use blob_loss::components::{label_batch, Connectivity};
//! use blob_loss::loss::{BlobLossConfig, instances_to_tensor};
//! use burn::tensor::{Device, Tensor};
//! use ndarray::Array4;
//!
//! let device = Device::flex().autodiff();
//! let mut masks = Array4::<u8>::zeros((2, 1, 16, 16));
//! masks[[0, 0, 2, 2]] = 1;
//! masks[[0, 0, 10, 10]] = 1;
//! let instances = instances_to_tensor(label_batch(masks.view(), Connectivity::Eight)?.labels.view(), &device)?;
//! let logits = Tensor::<4>::zeros([2, 1, 16, 16], &device).require_grad();
//! let loss = BlobLossConfig::new().init().forward(logits.clone(), instances);
//! let grads = loss.backward();
//! assert!(logits.grad(&grads).is_some());
//! # Ok::<(), blob_loss::Error>(())
//! ```

mod activation;
mod base;
mod bicc;
mod bins;
mod blob;
mod blob_term;
mod categorical;
mod cell_maps;
mod cell_term;
mod config;
mod convert;
mod false_positives;
mod global_term;
mod output;
mod partition;
mod reduce;
pub mod sums;
mod targets;

pub use activation::Activation;
pub use base::BaseLossConfig;
pub use bicc::{BiccLoss, BiccLossConfig, BiccLossOutput, BiccTargets, BiccUnreduced, CellTerms, EmptyCellLoss};
pub use blob::BlobLoss;
pub use cell_maps::prediction_cells;
pub use config::{BlobLossConfig, MAX_BINS};
pub use convert::instances_to_tensor;
pub use false_positives::false_positive_components;
pub use output::{BlobLossOutput, UnreducedParts};
pub use partition::Partition;
pub use sums::Engine;
pub use targets::LossTargets;
