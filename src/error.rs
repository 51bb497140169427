//! The crate's error type.

use crate::components::Connectivity;

/// Everything that can go wrong in `blob-loss`, with a message that says what to fix.
///
/// Fallible functions return `Result<_, Error>`; the losses' panicking `forward` methods panic
/// with the [`Display`](std::fmt::Display) text of the same value.
///
/// # Example
/// ```
/// use blob_loss::{Error, components::{label, Connectivity}};
/// use ndarray::Array2;
///
/// let mask = Array2::<u8>::zeros((4, 4));
/// let err = label(mask.view(), Connectivity::Six).unwrap_err();
/// assert!(matches!(err, Error::ConnectivityRank { ndim: 2, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A neighbour count that is none of 4, 8 (2D) or 6, 18, 26 (3D).
    #[error("invalid connectivity {0}: expected 4 or 8 (2D) or 6, 18 or 26 (3D)")]
    InvalidConnectivity(u32),

    /// A connectivity used on an array of the other dimensionality (for example `Six` on a 2D mask).
    #[error("connectivity {connectivity:?} is for {expected}D arrays, but the array is {ndim}D")]
    ConnectivityRank {
        /// The connectivity that was asked for.
        connectivity: Connectivity,
        /// The dimensionality that connectivity is defined for.
        expected: usize,
        /// The dimensionality of the array.
        ndim: usize,
    },

    /// An array of a rank the function does not handle.
    #[error("unsupported rank {ndim} for {what}: expected {expected}")]
    UnsupportedRank {
        /// What the array is (for example "mask" or "logits").
        what: &'static str,
        /// The rank that was given.
        ndim: usize,
        /// The ranks that are accepted, in words.
        expected: &'static str,
    },

    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// What was compared (for example "output buffer").
        what: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        found: Vec<usize>,
    },

    /// More components (or foreground runs) than fit in the `u32` label type.
    #[error("too many components: the mask has more than {limit} foreground runs, which may not fit in u32 labels")]
    TooManyComponents {
        /// The largest number of foreground runs that can be labelled.
        limit: usize,
    },

    /// A class index that is negative or not below `num_classes`.
    #[error("class value {value} out of range: expected 0..{num_classes}")]
    ClassOutOfRange {
        /// The offending value, as a signed integer.
        value: i128,
        /// The number of classes that was given.
        num_classes: usize,
    },

    /// A negative instance id in an instance map.
    #[error("negative instance id {value}: instance maps hold 0 for background and positive ids")]
    NegativeInstanceId {
        /// The offending id.
        value: i64,
    },

    /// Instance ids so large that the per-instance bins would not fit in memory.
    #[error(
        "instance id {max_id} is too large: {bins} bins would exceed the limit of {limit}; \
         relabel the instances (components::label_batch numbers them 1..=count)"
    )]
    InstanceIdTooLarge {
        /// The largest id found.
        max_id: i64,
        /// The number of bins it would need.
        bins: u128,
        /// The largest number of bins allowed.
        limit: u128,
    },

    /// More instances (or cells) than the per-instance bins may hold, after renumbering each
    /// row's ids.
    #[error(
        "too many instances: {bins} bins (blob loss: batch elements x channels x (1 + instances of the fullest \
         row); BiCC: batch elements x (2 + 2 x cells of the fullest element)) would take {bytes} bytes, above the \
         limit of {limit} bins (the loss configuration's max_bins)"
    )]
    TooManyInstances {
        /// The bins one call would need.
        bins: u128,
        /// The memory of their sums, in bytes.
        bytes: u128,
        /// The largest number of bins allowed.
        limit: u128,
    },

    /// The loss is NaN or infinite: the network outputs hold NaN (or, as probabilities, values
    /// outside `[0, 1]`). Found where it costs nothing, on the CPU backend.
    #[error("the loss is {value}: the outputs hold NaN or, as probabilities, values outside [0, 1]")]
    NonFiniteLoss {
        /// The loss value.
        value: f64,
    },

    /// A configuration value that is out of its domain (negative or non-finite weight, ...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// An argument value out of its domain (threshold outside [0, 1], NaN probability, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
