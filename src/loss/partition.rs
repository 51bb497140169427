//! Which voxels each instance is scored on.

use burn::config::Config;

/// The domain each instance is scored on: which voxels enter instance `k`'s term.
///
/// # Example
/// ```
/// use blob_loss::loss::{BlobLossConfig, Partition};
///
/// let reference = BlobLossConfig::new().with_partition(Partition::Reference);
/// assert!(reference.validate().is_ok());
/// ```
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum Partition {
    /// Blob loss, the paper's semantics: the other instances are removed from instance `k`'s
    /// term; it is scored on the background plus instance `k`. A false positive anywhere counts
    /// in every instance's term.
    Exclude,
    /// Bit for bit what the published blob loss code computes: the *logits* of the other instances
    /// are set to 0, so they count as probability 0.5 (and `ln 2` of cross-entropy), target 0. Only
    /// with [`Activation::Sigmoid`](super::Activation::Sigmoid); for reproducing numbers made with
    /// that code.
    Reference,
    /// Each instance scored on its Voronoi cell only, the voxels nearer to it than to any other
    /// instance ([`LossTargets::cells`](super::LossTargets::cells), from
    /// [`voronoi_batch`](crate::components::voronoi_batch)): the domain of the CC family, inside
    /// blob loss (any base loss, per channel, sigmoid or softmax); BCE is divided by the cell's
    /// size. A false positive counts only in the cell it falls in. It is not CC-DiceCE or the CC
    /// loss as published: their cells come from full-connectivity components, they use a
    /// two-class softmax, no smoothing (here `smooth_nr`/`smooth_dr`), and score an element
    /// without ground truth as one whole-image cell (here such an element has no blob term).
    /// For the published losses use [`BiccLossConfig::cc_dice_ce`](super::BiccLossConfig::cc_dice_ce)
    /// and [`BiccLossConfig::cc_loss`](super::BiccLossConfig::cc_loss).
    Voronoi,
}
