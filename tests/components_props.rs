//! Properties of `components::label` under proptest.

mod common;

use std::collections::HashMap;

use blob_loss::components::{Connectivity, label};
use ndarray::{Array3, ArrayD, Axis, IxDyn, ShapeBuilder};
use proptest::prelude::*;

fn mask_strategy() -> impl Strategy<Value = ArrayD<u8>> {
    (prop::sample::select(vec![2usize, 3]), 1usize..9, 1usize..9, 1usize..9, 1u8..4).prop_flat_map(
        |(nd, a, b, c, values)| {
            let shape: Vec<usize> = if nd == 2 { vec![a, b] } else { vec![a, b, c] };
            let n = shape.iter().product::<usize>();
            prop::collection::vec(prop_oneof![2 => Just(0u8), 3 => 1..=values], n)
                .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap())
        },
    )
}

fn all(ndim: usize) -> &'static [Connectivity] {
    common::connectivities(ndim)
}

/// Whether two label maps of the same shape make the same partition: background in the same
/// places, and a one-to-one correspondence between their labels.
fn same_partition(a: &ArrayD<u32>, b: &ArrayD<u32>) -> bool {
    let (mut forward, mut backward) = (HashMap::new(), HashMap::new());
    a.shape() == b.shape()
        && a.iter().zip(b.iter()).all(|(&x, &y)| {
            (x == 0) == (y == 0) && *forward.entry(x).or_insert(y) == y && *backward.entry(y).or_insert(x) == x
        })
}

/// The axis orders of a 2D or 3D array other than the identity.
fn permutations(ndim: usize) -> Vec<Vec<usize>> {
    if ndim == 2 {
        vec![vec![1, 0]]
    } else {
        vec![vec![0, 2, 1], vec![1, 0, 2], vec![1, 2, 0], vec![2, 0, 1], vec![2, 1, 0]]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Labels appear in row-major order as 1, 2, 3, ...: every new label is one more than the
    /// largest seen so far, and the largest is the count.
    #[test]
    fn numbering_is_first_appearance_order(mask in mask_strategy()) {
        for &c in all(mask.ndim()) {
            let got = label(mask.view(), c).unwrap();
            let mut max_seen = 0;
            for &l in got.labels.iter() {
                prop_assert!(l <= max_seen + 1);
                max_seen = max_seen.max(l);
            }
            prop_assert_eq!(max_seen as usize, got.count);
            prop_assert!(got.labels.iter().zip(mask.iter()).all(|(&l, &m)| (l == 0) == (m == 0)));
        }
    }

    /// Renaming the classes (a random permutation of the non-zero values) changes no label.
    #[test]
    fn relabelling_the_classes_keeps_the_labels(
        mask in mask_strategy(),
        permutation in Just((1..=255u8).collect::<Vec<u8>>()).prop_shuffle(),
    ) {
        let renamed = mask.mapv(|v| if v == 0 { 0 } else { permutation[v as usize - 1] });
        for &c in all(mask.ndim()) {
            prop_assert_eq!(label(mask.view(), c).unwrap(), label(renamed.view(), c).unwrap());
        }
    }

    /// Labelling commutes with permuting the axes: the labels of a transposed volume make the
    /// transposed partition (the numbers differ: they follow the new row-major order), with the
    /// same count.
    #[test]
    fn transposing_transposes_the_partition(mask in mask_strategy()) {
        for &c in all(mask.ndim()) {
            let labels = label(mask.view(), c).unwrap();
            for axes in permutations(mask.ndim()) {
                let transposed = mask.view().permuted_axes(IxDyn(&axes)).as_standard_layout().into_owned();
                let got = label(transposed.view(), c).unwrap();
                prop_assert_eq!(got.count, labels.count);
                let expected = labels.labels.view().permuted_axes(IxDyn(&axes)).as_standard_layout().into_owned();
                prop_assert!(same_partition(&got.labels, &expected), "axes {:?}, {:?}", axes, c);
            }
        }
    }

    /// Flipping any axis flips the partition and keeps the count.
    #[test]
    fn flipping_flips_the_partition(mask in mask_strategy()) {
        for &c in all(mask.ndim()) {
            let labels = label(mask.view(), c).unwrap();
            for axis in 0..mask.ndim() {
                let mut flipped = mask.view();
                flipped.invert_axis(Axis(axis));
                let got = label(flipped.as_standard_layout().view(), c).unwrap();
                prop_assert_eq!(got.count, labels.count);
                let mut expected = labels.labels.view();
                expected.invert_axis(Axis(axis));
                prop_assert!(same_partition(&got.labels, &expected.to_owned()), "axis {}, {:?}", axis, c);
            }
        }
    }

    /// C order, Fortran order and transposed views all number by the logical row-major index.
    #[test]
    fn layout_does_not_change_labels(mask in mask_strategy()) {
        if mask.ndim() == 3 {
            let c_order = mask.clone().into_dimensionality::<ndarray::Ix3>().unwrap();
            let mut fortran = Array3::<u8>::zeros(c_order.raw_dim().f());
            fortran.assign(&c_order);
            let t = c_order.view().permuted_axes([2, 0, 1]);
            let t_copy = t.as_standard_layout().into_owned();
            for &c in all(3) {
                prop_assert_eq!(label(fortran.view(), c).unwrap(), label(c_order.view(), c).unwrap());
                prop_assert_eq!(label(t, c).unwrap(), label(t_copy.view(), c).unwrap());
            }
        } else {
            let t = mask.view().reversed_axes();
            let t_copy = t.as_standard_layout().into_owned();
            for &c in all(2) {
                prop_assert_eq!(label(t.view(), c).unwrap(), label(t_copy.view(), c).unwrap());
            }
        }
    }

    /// Same partition as the flood fill (and, stronger, the same labels).
    #[test]
    fn matches_flood_fill(mask in mask_strategy()) {
        for &c in all(mask.ndim()) {
            let (want, n) = common::naive_label(&mask, c);
            let got = label(mask.view(), c).unwrap();
            prop_assert_eq!(got.count, n);
            prop_assert_eq!(got.labels, want);
        }
    }
}
