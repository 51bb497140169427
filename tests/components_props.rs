//! Properties of `components::label` under proptest.

mod common;

use blob_loss::components::{Connectivity, label};
use ndarray::{Array3, ArrayD, IxDyn, ShapeBuilder};
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

    /// Renaming the classes (a bijection of the non-zero values) changes no label.
    #[test]
    fn relabelling_the_classes_keeps_the_labels(mask in mask_strategy(), shift in 1u8..200) {
        let renamed = mask.mapv(|v| if v == 0 { 0 } else { v.wrapping_add(shift).max(1).wrapping_mul(1) });
        // The map v -> v + shift is injective on 1..=3 and never hits 0 for shift < 253.
        for &c in all(mask.ndim()) {
            prop_assert_eq!(label(mask.view(), c).unwrap(), label(renamed.view(), c).unwrap());
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
