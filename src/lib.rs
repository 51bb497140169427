//! # blob-loss
//!
//! Instance-imbalance-aware segmentation for [burn](https://burn.dev): the blob loss of
//! Kofler et al. ("blob loss: instance imbalance aware loss functions for semantic
//! segmentation", IPMI 2023, arXiv 2205.08209), and everything around it.
//!
//! - [`components`]: connected-component labelling of ground-truth masks (2D 4/8, 3D 6/18/26
//!   connectivity; binary and multi-label) on ndarray, for the data pipeline.
//! - [`loss`]: the blob loss on burn tensors, differentiable on every backend, one pass for any
//!   number of instances.
//! - [`metrics`]: instance-level detection metrics (F1, sensitivity, precision, panoptic
//!   quality) on ndarray.
//!
//! # Example
//! ```
//! use blob_loss::components::{label, Connectivity};
//! use ndarray::Array3;
//!
//! let mut mask = Array3::<u8>::zeros((8, 8, 8));
//! mask[[1, 1, 1]] = 1;
//! mask[[6, 6, 6]] = 1;
//! assert_eq!(label(mask.view(), Connectivity::TwentySix).unwrap().count, 2);
//! ```
//!
//! # Cargo features
//! - `flex` (default): burn's CPU backend, with the loss's fused host passes. Without it
//!   (`default-features = false`) the crate needs only burn's core, autodiff and backend
//!   extensions, for a GPU-only build.
//! - `wgpu`, `cuda`: burn's GPU backends, with the loss's cube kernel (the feature `cube`, which
//!   both turn on and which brings burn's kernel fusion).
//! - `learner`: burn-train, for the `learner` example only.
#![deny(missing_docs)]
// Two `unsafe` blocks in the crate: advice to the kernel (`components/buffer.rs`) and SSE2
// comparisons of bytes (`components/bits.rs`).
#![deny(unsafe_code)]

mod backend;
pub mod components;
mod error;
pub mod loss;
pub mod metrics;

pub use error::Error;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use loss::{BlobLoss, BlobLossConfig, BlobLossOutput};
