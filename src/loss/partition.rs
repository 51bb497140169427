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
    /// The connected-component (CC) loss of "Learning to Look Closer" (Bouteille, Jaus et al., ISBI
    /// 2026, arXiv 2511.17146): instance `k` is scored on its Voronoi cell only, the voxels nearer
    /// to it than to any other instance ([`LossTargets::cells`](super::LossTargets::cells), from
    /// [`voronoi_batch`](crate::components::voronoi_batch)); BCE is divided by the cell's size. A
    /// false positive counts only in the cell it falls in. With Dice + BCE as the base loss this is
    /// the paper's per-cell `1 - 2 I_k / (P_k + G_k)` plus the cell's mean cross-entropy (with
    /// `smooth_nr`/`smooth_dr` of `1e-5` where the paper clamps the denominator at `1e-7`). An
    /// element without instances has no cells and no term (the global term scores it; the paper's
    /// code scores its whole image as one cell, whose Dice is then constant).
    Voronoi,
}
