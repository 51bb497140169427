//! Helpers shared by the integration tests: a seeded generator and a naive labeller.
#![allow(dead_code)]

use blob_loss::components::Connectivity;
use ndarray::{ArrayD, IxDyn};

#[path = "../../examples/common/rng.rs"]
mod rng;
pub use rng::Rng;

/// A random mask: each voxel is background with probability `1 - density`, else one of
/// `1..=values`.
pub fn random_mask(rng: &mut Rng, shape: &[usize], density: f64, values: u64) -> ArrayD<u8> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || if rng.unit() < density { 1 + rng.below(values) as u8 } else { 0 })
}

/// Breadth-first flood fill in row-major discovery order: the definition `label` must match.
pub fn naive_label(mask: &ArrayD<u8>, connectivity: Connectivity) -> (ArrayD<u32>, usize) {
    let shape = mask.shape().to_vec();
    let max_nonzero = match connectivity {
        Connectivity::Four | Connectivity::Six => 1,
        Connectivity::Eighteen => 2,
        Connectivity::Eight | Connectivity::TwentySix => 3,
    };
    let nd = shape.len();
    let mut offsets = Vec::new();
    for code in 0..3usize.pow(nd as u32) {
        let off: Vec<isize> = (0..nd).map(|d| (code / 3usize.pow(d as u32) % 3) as isize - 1).collect();
        let nonzero = off.iter().filter(|&&o| o != 0).count();
        if (1..=max_nonzero).contains(&nonzero) {
            offsets.push(off);
        }
    }
    let mut labels = ArrayD::<u32>::zeros(IxDyn(&shape));
    let mut count = 0u32;
    let indices: Vec<IxDyn> = mask.indexed_iter().map(|(i, _)| i).collect();
    for start in indices {
        if mask[&start] == 0 || labels[&start] != 0 {
            continue;
        }
        count += 1;
        let value = mask[&start];
        labels[&start] = count;
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(p) = queue.pop_front() {
            for off in &offsets {
                let q: Option<Vec<usize>> = (0..nd)
                    .map(|d| {
                        let c = p[d] as isize + off[d];
                        (c >= 0 && (c as usize) < shape[d]).then_some(c as usize)
                    })
                    .collect();
                let Some(q) = q else { continue };
                let q = IxDyn(&q);
                if mask[&q] == value && labels[&q] == 0 {
                    labels[&q] = count;
                    queue.push_back(q);
                }
            }
        }
    }
    (labels, count as usize)
}

pub const CONNECTIVITIES_2D: [Connectivity; 2] = [Connectivity::Four, Connectivity::Eight];
pub const CONNECTIVITIES_3D: [Connectivity; 3] = [Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix];

pub fn connectivities(ndim: usize) -> &'static [Connectivity] {
    if ndim == 2 { &CONNECTIVITIES_2D } else { &CONNECTIVITIES_3D }
}
