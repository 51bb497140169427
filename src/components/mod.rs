//! Connected-component labelling of ground-truth masks: the instances of blob loss.
//!
//! - [`label`] / [`label_into`]: one 2D or 3D mask, any integer or `bool` element type, any
//!   memory layout, 4/8 (2D) or 6/18/26 (3D) [`Connectivity`], binary or multi-label.
//! - [`label_batch`] / [`label_batch_into`]: every `(element, channel)` slice of a channel-first
//!   batch, in parallel.
//! - [`instances_from_classes`]: a class-index map to one-vs-rest instance maps.
//! - [`distance_transform`]: the exact Euclidean distance transform with nearest-voxel indices,
//!   any dimension and voxel spacing; [`voronoi`] / [`voronoi_into`]: the Voronoi cells of an
//!   instance map.
//! - [`label_tensor`], [`voronoi_tensor`]: the same labels and cells of burn tensors, computed on
//!   the tensors' device (kernels on wgpu and cuda, the host code on flex), for the loss's
//!   partitions of the prediction.
//!
//! Labels are `u32`, numbered `1..=count` by first voxel in row-major order of the logical
//! indices, exactly as `scipy.ndimage.label` and cc3d number them.
//!
//! The algorithm is run-based: one scan extracts the runs of equal non-background values along
//! the last axis, with bit masks of each row's foreground and run boundaries; runs of
//! neighbouring rows are joined in a union-find forest that always keeps the earliest run as
//! root (sparse rows run by run, dense rows from their bit masks, skipping the comparisons that a
//! match in the row below or before already implies); and a forward pass over the runs numbers
//! the roots. Its cost grows with the number of runs, not of voxels, so sparse masks cost little
//! more than reading them.
//!
//! # Example
//! ```
//! use blob_loss::components::{label, Connectivity};
//! use ndarray::array;
//!
//! // Two classes that touch stay two components.
//! let mask = array![[1u8, 1, 2], [0, 0, 2]];
//! let labeling = label(mask.view(), Connectivity::Eight).unwrap();
//! assert_eq!(labeling.count, 2);
//! assert_eq!(labeling.labels, array![[1, 1, 2], [0, 0, 2]]);
//! ```

mod band;
mod batch;
mod bits;
pub(crate) mod buffer;
mod connectivity;
mod distance;
mod element;
mod join;
mod label;
mod runs;
pub(crate) mod tensor;
mod union_find;

pub use batch::{BatchLabeling, instances_from_classes, label_batch, label_batch_into};
pub use connectivity::Connectivity;
pub use distance::{DistanceTransform, distance_map, distance_transform, voronoi, voronoi_batch, voronoi_into};
pub use element::MaskElement;
pub use label::{Labeling, label, label_into};
pub use tensor::{ComponentsBackend, GridSpacing, TensorLabeling, label_tensor, voronoi_tensor};
