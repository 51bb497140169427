//! The extension on flex (CPU): the host labeller and distance transform on the tensors' memory.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::IntTensorOps;
use burn::backend::{Bytes, Flex};
use burn::tensor::{DType, IntDType, Shape};
use ndarray::{ArrayView3, ArrayView4, ArrayView5, ArrayViewMut3, ArrayViewMut4, ArrayViewMut5};
use rayon::prelude::*;

use super::{ComponentsBackend, GridSpacing, apart_on_host};
use crate::components::{Connectivity, MaskElement, label_batch_into, voronoi_into};

impl ComponentsBackend for Flex {
    fn label_components(mask: FlexTensor, connectivity: Connectivity) -> FlexTensor {
        let shape = grid_shape(&mask);
        let mut labels = vec![0u32; shape.iter().product()];
        let mask = readable(mask);
        match mask.dtype() {
            DType::I64 => label_slices(mask.as_slice::<i64>().expect("i64"), shape, connectivity, &mut labels),
            _ => label_slices(mask.as_slice::<i32>().expect("i32"), shape, connectivity, &mut labels),
        }
        into_i32_tensor(labels, shape)
    }

    fn voronoi_cells(labels: FlexTensor, spacing: GridSpacing) -> FlexTensor {
        let shape = grid_shape(&labels);
        let ids = ids_u32(labels);
        let voxels = shape[1] * shape[2] * shape[3];
        let mut cells = vec![0u32; ids.len()];
        // Slices in parallel; each distance transform is itself parallel over lines.
        cells.par_chunks_mut(voxels).zip(ids.par_chunks(voxels)).for_each(|(out, slice)| {
            // A 2D image is a grid of depth 1: the axis of one voxel moves no distance or tie.
            let slice = ArrayView3::from_shape([shape[1], shape[2], shape[3]], slice).expect("one per voxel");
            let out = ArrayViewMut3::from_shape([shape[1], shape[2], shape[3]], out).expect("one per voxel");
            voronoi_into(slice, &spacing.0, out).expect("checked by the caller");
        });
        into_i32_tensor(cells, shape)
    }

    fn components_apart(labels: FlexTensor, other: FlexTensor) -> FlexTensor {
        let shape = grid_shape(&labels);
        let voxels = shape[1] * shape[2] * shape[3];
        let labels = ids_u32(labels);
        let other = readable(other);
        let apart = match other.dtype() {
            DType::I64 => apart_on_host(&labels, other.as_slice::<i64>().expect("i64"), voxels),
            _ => apart_on_host(&labels, other.as_slice::<i32>().expect("i32"), voxels),
        };
        FlexTensor::new(Bytes::from_elems(apart), Layout::contiguous(Shape::new(shape)), DType::I32)
    }
}

/// `[slices, depth, height, width]` of a grid tensor.
fn grid_shape(t: &FlexTensor) -> [usize; 4] {
    let shape = t.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// The tensor as one row-major run of `i32` or `i64` (other integer types cast to `i32`).
fn readable(t: FlexTensor) -> FlexTensor {
    let t = match t.dtype() {
        DType::I32 | DType::I64 => t,
        _ => Flex::int_cast(t, IntDType::I32),
    };
    if t.is_contiguous() { t } else { t.to_contiguous() }
}

/// The non-negative ids of an integer tensor (checked by the callers) as `u32`, row-major.
fn ids_u32(t: FlexTensor) -> Vec<u32> {
    let t = readable(t);
    match t.dtype() {
        DType::I64 => t.as_slice::<i64>().expect("i64").par_iter().map(|&v| v as u32).collect(),
        _ => t.as_slice::<i32>().expect("i32").par_iter().map(|&v| v as u32).collect(),
    }
}

/// Labels the slices of a `[slices, depth, height, width]` mask into `out` with the host labeller
/// (a 2D connectivity takes depth 1).
fn label_slices<A: MaskElement>(mask: &[A], shape: [usize; 4], connectivity: Connectivity, out: &mut [u32]) {
    let labelled = if connectivity.ndim() == 2 {
        let dims = [shape[0], 1, shape[2], shape[3]];
        let mask = ArrayView4::from_shape(dims, mask).expect("one per voxel");
        let out = ArrayViewMut4::from_shape(dims, out).expect("one per voxel");
        label_batch_into(mask, connectivity, out).map(drop)
    } else {
        let dims = [shape[0], 1, shape[1], shape[2], shape[3]];
        let mask = ArrayView5::from_shape(dims, mask).expect("one per voxel");
        let out = ArrayViewMut5::from_shape(dims, out).expect("one per voxel");
        label_batch_into(mask, connectivity, out).map(drop)
    };
    labelled.expect("checked by the caller: the connectivity fits, the grid is under 2^31 voxels");
}

/// `u32` ids below `2^31` as an `i32` tensor.
fn into_i32_tensor(ids: Vec<u32>, shape: [usize; 4]) -> FlexTensor {
    let ids: Vec<i32> = ids.into_par_iter().map(|v| v as i32).collect();
    FlexTensor::new(Bytes::from_elems(ids), Layout::contiguous(Shape::new(shape)), DType::I32)
}
