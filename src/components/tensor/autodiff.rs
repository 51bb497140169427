//! The extension under burn's autodiff: integer maps carry no gradient, so the inner backend's
//! ops serve as they are.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::IntTensor;
use burn::backend::{Autodiff, Backend};

use super::{ComponentsBackend, GridSpacing};
use crate::components::Connectivity;

impl<B: Backend + ComponentsBackend, C: CheckpointStrategy> ComponentsBackend for Autodiff<B, C> {
    fn label_components(mask: IntTensor<Self>, connectivity: Connectivity) -> IntTensor<Self> {
        B::label_components(mask, connectivity)
    }

    fn voronoi_cells(labels: IntTensor<Self>, spacing: GridSpacing) -> IntTensor<Self> {
        B::voronoi_cells(labels, spacing)
    }

    fn components_apart(labels: IntTensor<Self>, other: IntTensor<Self>) -> IntTensor<Self> {
        B::components_apart(labels, other)
    }
}
