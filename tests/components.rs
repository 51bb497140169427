//! `components` against a naive flood fill: identical labels, not only the same partition.

mod common;

use blob_loss::Error;
use blob_loss::components::{Connectivity, instances_from_classes, label, label_batch, label_batch_into, label_into};
use common::{Rng, connectivities, naive_label, random_mask};
use ndarray::{Array2, Array3, Array4, ArrayD, Axis, IxDyn, ShapeBuilder, Slice, s};

fn check(mask: &ArrayD<u8>) {
    for &c in connectivities(mask.ndim()) {
        let (expected, n) = naive_label(mask, c);
        let got = label(mask.view(), c).unwrap();
        assert_eq!(got.count, n, "count, {c:?}, shape {:?}", mask.shape());
        assert_eq!(got.labels, expected, "labels, {c:?}, shape {:?}\nmask {mask:?}", mask.shape());
        // And into a dirty buffer.
        let mut out = ArrayD::<u32>::from_elem(mask.raw_dim(), 77);
        assert_eq!(label_into(mask.view(), c, out.view_mut()).unwrap(), n);
        assert_eq!(out, expected);
    }
}

const SHAPES: &[&[usize]] = &[
    &[1, 1],
    &[1, 17],
    &[17, 1],
    &[2, 2],
    &[7, 9],
    &[16, 33],
    &[40, 40],
    &[1, 1, 1],
    &[1, 5, 7],
    &[5, 1, 7],
    &[5, 7, 1],
    &[2, 2, 2],
    &[6, 7, 8],
    &[13, 11, 17],
];

#[test]
fn random_binary_masks_match_flood_fill() {
    let mut rng = Rng(1);
    for shape in SHAPES {
        for density in [0.05, 0.3, 0.5, 0.7, 0.95] {
            for _ in 0..3 {
                check(&random_mask(&mut rng, shape, density, 1));
            }
        }
    }
}

#[test]
fn random_multilabel_masks_match_flood_fill() {
    let mut rng = Rng(2);
    for shape in SHAPES {
        for density in [0.3, 0.8, 1.0] {
            for values in [2, 4] {
                check(&random_mask(&mut rng, shape, density, values));
            }
        }
    }
}

#[test]
fn zero_sized_and_background_masks_have_no_components() {
    for shape in [&[0usize, 5][..], &[5, 0], &[0, 0], &[0, 3, 3], &[3, 0, 3], &[3, 3, 0], &[4, 4], &[3, 4, 5]] {
        let mask = ArrayD::<u8>::zeros(IxDyn(shape));
        for &c in connectivities(shape.len()) {
            let got = label(mask.view(), c).unwrap();
            assert_eq!(got.count, 0);
            assert_eq!(got.labels.shape(), shape);
            assert!(got.labels.iter().all(|&l| l == 0));
        }
    }
}

#[test]
fn all_foreground_is_one_component() {
    for shape in [&[1usize, 1][..], &[9, 13], &[1, 1, 1], &[4, 5, 6]] {
        let mask = ArrayD::<u8>::ones(IxDyn(shape));
        for &c in connectivities(shape.len()) {
            let got = label(mask.view(), c).unwrap();
            assert_eq!(got.count, 1);
            assert!(got.labels.iter().all(|&l| l == 1));
        }
    }
}

#[test]
fn checkerboards_split_by_connectivity() {
    let board2 = Array2::from_shape_fn((6, 7), |(y, x)| ((y + x) % 2 == 0) as u8).into_dyn();
    assert_eq!(label(board2.view(), Connectivity::Four).unwrap().count, 21);
    assert_eq!(label(board2.view(), Connectivity::Eight).unwrap().count, 1);
    check(&board2);
    let board3 = Array3::from_shape_fn((4, 5, 6), |(z, y, x)| ((z + y + x) % 2 == 0) as u8).into_dyn();
    assert_eq!(label(board3.view(), Connectivity::Six).unwrap().count, 60);
    assert_eq!(label(board3.view(), Connectivity::Eighteen).unwrap().count, 1);
    assert_eq!(label(board3.view(), Connectivity::TwentySix).unwrap().count, 1);
    check(&board3);
}

#[test]
fn diagonal_only_contacts_in_3d() {
    // Edge contact: (0,0,0)-(0,1,1) and (0,0,0)-(1,1,0); corner contact: (0,0,0)-(1,1,1).
    let cases: [(&[[usize; 3]], [usize; 3]); 3] = [
        (&[[0, 0, 0], [0, 1, 1]], [2, 1, 1]),
        (&[[0, 0, 0], [1, 1, 0]], [2, 1, 1]),
        (&[[0, 0, 0], [1, 1, 1]], [2, 2, 1]),
    ];
    for (voxels, [six, eighteen, twentysix]) in cases {
        for flip in 0..8usize {
            let mut mask = Array3::<u8>::zeros((2, 2, 2));
            for v in voxels {
                let p = [v[0] ^ (flip & 1), v[1] ^ (flip >> 1 & 1), v[2] ^ (flip >> 2 & 1)];
                mask[p] = 1;
            }
            assert_eq!(label(mask.view(), Connectivity::Six).unwrap().count, six);
            assert_eq!(label(mask.view(), Connectivity::Eighteen).unwrap().count, eighteen);
            assert_eq!(label(mask.view(), Connectivity::TwentySix).unwrap().count, twentysix);
            check(&mask.into_dyn());
        }
    }
}

#[test]
fn touching_classes_stay_separate() {
    let mask = ndarray::array![[1u8, 1, 2, 2], [1, 3, 3, 2], [0, 0, 3, 0]];
    let got = label(mask.view(), Connectivity::Eight).unwrap();
    assert_eq!(got.count, 3);
    assert_eq!(got.labels, ndarray::array![[1, 1, 2, 2], [1, 3, 3, 2], [0, 0, 3, 0]]);
}

/// One-byte types (`u8`, `i8`, `bool`) compare whole 64-column blocks with SIMD, the others
/// element by element: rows of several blocks and a partial one, dense enough to be joined by
/// their masks, give the same labels with every type.
#[test]
fn every_element_type_gives_the_same_labels() {
    let mut rng = Rng(3);
    for shape in [&[9usize, 10, 11][..], &[5, 8, 150], &[20, 200]] {
        let mask = random_mask(&mut rng, shape, 0.4, 3);
        for &connectivity in connectivities(shape.len()) {
            let expected = label(mask.view(), connectivity).unwrap();
            assert_eq!((expected.labels.clone(), expected.count), naive_label(&mask, connectivity));
            macro_rules! same {
                ($($t:ty),*) => {$(
                    let m = mask.mapv(|v| v as $t);
                    assert_eq!(label(m.view(), connectivity).unwrap(), expected, stringify!($t));
                )*};
            }
            same!(u16, u32, u64, usize, i8, i16, i32, i64, isize);
            // Negative values are labels like any other.
            let negative = mask.mapv(|v| -(v as i32));
            assert_eq!(label(negative.view(), connectivity).unwrap(), expected);
            let negative = mask.mapv(|v| -(v as i8));
            assert_eq!(label(negative.view(), connectivity).unwrap(), expected);
            let binary = mask.mapv(|v| v != 0);
            let binary_u8 = mask.mapv(|v| u8::from(v != 0));
            let binary_u32 = mask.mapv(|v| u32::from(v != 0));
            let expected = label(binary_u32.view(), connectivity).unwrap();
            assert_eq!(label(binary.view(), connectivity).unwrap(), expected);
            assert_eq!(label(binary_u8.view(), connectivity).unwrap(), expected);
        }
    }
}

/// Smooth masks of boxes a few voxels across, of one value or of several touching ones, with
/// rows over several 64-column blocks: most rows are dense, and most voxels match the voxel below
/// or before them, which spares their other comparisons.
#[test]
fn smooth_masks_match_flood_fill() {
    let mut rng = Rng(5);
    for shape in [&[6usize, 9, 150][..], &[12, 12, 12], &[9, 7, 64], &[30, 140]] {
        for values in [1, 4] {
            for _ in 0..3 {
                let mut mask = ArrayD::<u8>::zeros(IxDyn(shape));
                for _ in 0..mask.len() / 12 {
                    // Value 0 carves background out of earlier boxes.
                    let value = rng.below(values + 1) as u8;
                    let corner: Vec<usize> = shape.iter().map(|&n| rng.below(n as u64) as usize).collect();
                    let sides: Vec<usize> = shape.iter().map(|_| 1 + rng.below(5) as usize).collect();
                    mask.slice_each_axis_mut(|axis| {
                        let a = axis.axis.index();
                        Slice::from(corner[a]..(corner[a] + sides[a]).min(shape[a]))
                    })
                    .fill(value);
                }
                check(&mask);
            }
        }
    }
}

/// Large masks are labelled in bands on several threads; the bands must not show.
#[test]
fn parallel_bands_match_flood_fill() {
    let mut rng = Rng(4);
    let cases: &[(&[usize], f64, u64)] = &[
        (&[64, 64, 80], 0.5, 1),   // split between planes
        (&[3, 200, 450], 0.45, 2), // fewer planes than bands: split inside planes
        (&[600, 600], 0.55, 1),    // 2D, split between rows
        (&[700, 400], 0.6, 3),     // 2D multi-label
    ];
    for &(shape, density, values) in cases {
        let mask = random_mask(&mut rng, shape, density, values);
        let expected: Vec<_> = connectivities(shape.len()).iter().map(|&c| naive_label(&mask, c)).collect();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for (&c, (labels, n)) in connectivities(shape.len()).iter().zip(&expected) {
                    let got = label(mask.view(), c).unwrap();
                    assert_eq!(got.count, *n, "{shape:?} {c:?} {threads} threads");
                    assert!(got.labels == *labels, "{shape:?} {c:?} {threads} threads");
                }
            });
        }
    }
}

#[test]
fn any_layout_gives_logical_order_labels() {
    let mut rng = Rng(5);
    let c_order = random_mask(&mut rng, &[7, 8, 9], 0.5, 2).into_dimensionality::<ndarray::Ix3>().unwrap();
    let expected = label(c_order.view(), Connectivity::Six).unwrap();
    let mut fortran = Array3::<u8>::zeros((7, 8, 9).f());
    fortran.assign(&c_order);
    assert_eq!(label(fortran.view(), Connectivity::Six).unwrap(), expected);
    // A transposed view labels like its C-ordered copy.
    let transposed = c_order.view().reversed_axes();
    let copy = transposed.as_standard_layout().into_owned();
    assert_eq!(label(transposed, Connectivity::Six).unwrap(), label(copy.view(), Connectivity::Six).unwrap());
    // Strided and negatively strided views, and a strided output buffer.
    let strided = c_order.slice(s![..;2, ..;-1, 1..;3]);
    let copy = strided.to_owned();
    let want = label(copy.view(), Connectivity::TwentySix).unwrap();
    let mut out = Array3::<u32>::zeros((4, 8, 6));
    let mut out_view = out.slice_mut(s![.., .., ..;2]);
    assert_eq!(label_into(strided, Connectivity::TwentySix, out_view.view_mut()).unwrap(), want.count);
    assert_eq!(out_view, want.labels);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let mask2 = Array2::<u8>::zeros((3, 3));
    let mask3 = Array3::<u8>::zeros((3, 3, 3));
    assert_eq!(
        label(mask2.view(), Connectivity::Six).unwrap_err(),
        Error::ConnectivityRank { connectivity: Connectivity::Six, expected: 3, ndim: 2 }
    );
    assert!(matches!(label(mask3.view(), Connectivity::Eight), Err(Error::ConnectivityRank { ndim: 3, .. })));
    let mask1 = ndarray::Array1::<u8>::zeros(4);
    assert!(matches!(label(mask1.view(), Connectivity::Four), Err(Error::UnsupportedRank { ndim: 1, .. })));
    let mask4 = Array4::<u8>::zeros((2, 2, 2, 2));
    let err = label(mask4.view(), Connectivity::Six).unwrap_err();
    assert!(matches!(err, Error::UnsupportedRank { ndim: 4, .. }));
    assert!(err.to_string().contains("unsupported rank 4"), "{err}");
    let mut out = Array2::<u32>::zeros((3, 4));
    assert!(matches!(label_into(mask2.view(), Connectivity::Four, out.view_mut()), Err(Error::ShapeMismatch { .. })));
    assert!(Connectivity::try_from(7).unwrap_err().to_string().contains("invalid connectivity 7"));
}

#[test]
fn batches_label_each_slice_independently() {
    let mut rng = Rng(6);
    let masks = random_mask(&mut rng, &[3, 2, 9, 10], 0.5, 1).into_dimensionality::<ndarray::Ix4>().unwrap();
    let batch = label_batch(masks.view(), Connectivity::Four).unwrap();
    let mut dirty = Array4::<u32>::from_elem(masks.raw_dim(), 5);
    let counts = label_batch_into(masks.view(), Connectivity::Four, dirty.view_mut()).unwrap();
    assert_eq!(counts, batch.counts);
    assert_eq!(dirty, batch.labels);
    for b in 0..3 {
        for c in 0..2 {
            let slice = masks.index_axis(Axis(0), b).index_axis(Axis(0), c).to_owned();
            let single = label(slice.view(), Connectivity::Four).unwrap();
            assert_eq!(batch.counts[[b, c]], single.count);
            assert_eq!(batch.labels.index_axis(Axis(0), b).index_axis(Axis(0), c), single.labels);
        }
    }
    // 3D spatial, with a 2D connectivity: an error, not a panic.
    let masks5 = ndarray::Array5::<u8>::zeros((1, 1, 2, 2, 2));
    assert!(matches!(label_batch(masks5.view(), Connectivity::Four), Err(Error::ConnectivityRank { .. })));
    assert!(matches!(
        label_batch(masks.index_axis(Axis(0), 0), Connectivity::Four),
        Err(Error::UnsupportedRank { ndim: 3, .. })
    ));
    let empty = Array4::<u8>::zeros((0, 2, 3, 3));
    assert_eq!(label_batch(empty.view(), Connectivity::Four).unwrap().counts.shape(), &[0, 2]);
}

#[test]
fn classes_become_one_vs_rest_instances() {
    let mut rng = Rng(7);
    let classes = random_mask(&mut rng, &[2, 6, 7, 8], 0.6, 3); // classes 0..=3
    let classes = classes.into_dimensionality::<ndarray::Ix4>().unwrap();
    let inst = instances_from_classes(classes.view(), 4, Connectivity::Six).unwrap();
    assert_eq!(inst.labels.shape(), &[2, 4, 6, 7, 8]);
    for b in 0..2 {
        assert_eq!(inst.counts[[b, 0]], 0);
        assert!(inst.labels.slice(s![b, 0, .., .., ..]).iter().all(|&l| l == 0));
        for c in 1..4 {
            let binary = classes.index_axis(Axis(0), b).mapv(|v| u8::from(v as usize == c));
            let want = label(binary.view(), Connectivity::Six).unwrap();
            assert_eq!(inst.counts[[b, c]], want.count);
            assert_eq!(inst.labels.slice(s![b, c, .., .., ..]), want.labels);
        }
    }
    let err = instances_from_classes(classes.view(), 3, Connectivity::Six).unwrap_err();
    assert_eq!(err, Error::ClassOutOfRange { value: 3, num_classes: 3 });
    let negative = ndarray::array![[[0i32, -1]]];
    assert!(matches!(
        instances_from_classes(negative.view(), 2, Connectivity::Four),
        Err(Error::ClassOutOfRange { value: -1, .. })
    ));
    // So many classes that the instance maps would exceed the address space (the second: their
    // size overflows `usize`): an error, not a panic inside ndarray or the allocator.
    for num_classes in [usize::MAX / 2, usize::MAX / 2 + 1] {
        let err = instances_from_classes(negative.mapv(i32::abs).view(), num_classes, Connectivity::Four).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("do not fit in memory")), "{err}");
    }
}
