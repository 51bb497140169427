//! `label` and `label_into` on arbitrary 2D and 3D masks (zero-sized axes, 1 x N and other long
//! thin shapes), in every layout (C and Fortran order, reversed axes, strided and permuted views),
//! element types and connectivities, against the breadth-first flood fill of the integration
//! tests; and `label_tensor` on flex.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

use arbitrary::Arbitrary;
use blob_loss::components::{Connectivity, MaskElement, label, label_into, label_tensor};
use burn::tensor::{Device, Int, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, ShapeBuilder, Slice};

#[derive(Arbitrary, Debug)]
struct Input {
    three_d: bool,
    sides: [u8; 3],
    /// One axis may be long (up to 4096) for extreme aspect ratios.
    long_axis: u8,
    long_side: u16,
    classes: u8,
    connectivity: u8,
    element: u8,
    layout: u8,
    values: Vec<u8>,
}

/// At most this many voxels, so that the oracle stays fast.
const MAX_VOXELS: usize = 4096;

fuzz_target!(|input: Input| {
    let ndim = if input.three_d { 3 } else { 2 };
    let mut shape: Vec<usize> = input.sides[..ndim].iter().map(|&s| usize::from(s % 24)).collect();
    if let Some(side) = shape.get_mut(usize::from(input.long_axis % 4)) {
        if input.long_side > 0 {
            *side = usize::from(input.long_side % 4097);
        }
    }
    let voxels: usize = shape.iter().product();
    if voxels > MAX_VOXELS {
        return;
    }
    let classes = 1 + input.classes % 4;
    let mut values = input.values.iter().cycle();
    let mask = ArrayD::from_shape_fn(IxDyn(&shape), |_| values.next().map_or(0, |v| v % (classes + 1)));
    let connectivities = common::connectivities(ndim);
    let connectivity = connectivities[usize::from(input.connectivity) % connectivities.len()];
    let layout = input.layout;
    match input.element % 6 {
        0 => check(&mask, |v| v, connectivity, layout),
        1 => check(&mask, |v| u16::from(v) * 1000, connectivity, layout),
        2 => check(&mask, |v| u32::from(v) << 24, connectivity, layout),
        3 => check(&mask, |v| i64::from(v) * 1_000_000_000_007, connectivity, layout),
        // Negative classes are classes too.
        4 => check(&mask, |v| -(v as i8) * 31, connectivity, layout),
        _ => check(&mask.mapv(|v| u8::from(v > 0)), |v| v > 0, connectivity, layout),
    }
    check_tensor(&mask, connectivity);
});

/// `label_tensor` (flex) of `mask` as a `[1, 1, spatial..]` tensor gives the flood fill's labels.
fn check_tensor(mask: &ArrayD<u8>, connectivity: Connectivity) {
    let (want, count) = common::naive_label(mask, connectivity);
    let want: Vec<i32> = want.iter().map(|&l| l as i32).collect();
    let mut shape = vec![1, 1];
    shape.extend_from_slice(mask.shape());
    let values: Vec<i32> = mask.iter().map(|&v| i32::from(v)).collect();
    let data = TensorData::new(values, shape);
    let device = Device::flex();
    let (labels, counts) = if mask.ndim() == 2 {
        let got = label_tensor(Tensor::<4, Int>::from_data(data, &device), connectivity).expect("a valid mask");
        (got.labels.into_data(), got.counts.into_data())
    } else {
        let got = label_tensor(Tensor::<5, Int>::from_data(data, &device), connectivity).expect("a valid mask");
        (got.labels.into_data(), got.counts.into_data())
    };
    assert_eq!(labels.convert::<i32>().try_to_vec::<i32>().unwrap(), want, "label_tensor");
    assert_eq!(counts.convert::<i64>().try_to_vec::<i64>().unwrap(), [count as i64], "label_tensor counts");
}

/// Labels `mask` mapped to another element type (an injective map that keeps 0), in the layout
/// `layout` selects, and compares with the flood fill of `mask`.
fn check<A: MaskElement>(mask: &ArrayD<u8>, map: impl Fn(u8) -> A, connectivity: Connectivity, layout: u8) {
    let (want, count) = common::naive_label(mask, connectivity);
    let typed = mask.mapv(map);
    with_layout(&typed, layout, |view| {
        let got = label(view.clone(), connectivity).expect("a valid 2D or 3D mask");
        assert_eq!(got.count, count, "count, layout {layout}");
        assert_eq!(got.labels, want, "labels, layout {layout}");
        let mut out = ArrayD::<u32>::from_elem(IxDyn(mask.shape()), 7);
        assert_eq!(label_into(view.clone(), connectivity, out.view_mut()).expect("same shape"), count);
        assert_eq!(out, want, "label_into, layout {layout}");
        let mut fortran = ArrayD::<u32>::from_elem(IxDyn(mask.shape()).f(), 7);
        assert_eq!(label_into(view, connectivity, fortran.view_mut()).expect("same shape"), count);
        assert_eq!(fortran, want, "label_into a Fortran-order buffer, layout {layout}");
    });
}

/// Calls `f` with a view whose logical content is `a`, stored in one of several layouts.
fn with_layout<A: Clone + Default>(a: &ArrayD<A>, layout: u8, f: impl FnOnce(ArrayViewD<'_, A>)) {
    let ndim = a.ndim();
    match layout % 5 {
        // C order.
        0 => f(a.view()),
        // Fortran order.
        1 => {
            let mut fortran = ArrayD::<A>::default(IxDyn(a.shape()).f());
            fortran.assign(a);
            f(fortran.view())
        }
        // A reversed axis (negative stride) over a flipped copy.
        2 => {
            let axis = Axis(usize::from(layout / 5) % ndim);
            let mut flipped = a.view();
            flipped.invert_axis(axis);
            let storage = flipped.as_standard_layout().into_owned();
            let mut view = storage.view();
            view.invert_axis(axis);
            f(view)
        }
        // Every other element of a buffer twice as long along the first axis.
        3 => {
            let mut shape = a.shape().to_vec();
            shape[0] *= 2;
            let mut storage = ArrayD::<A>::default(IxDyn(&shape));
            storage.slice_axis_mut(Axis(0), Slice::new(0, None, 2)).assign(a);
            f(storage.slice_axis(Axis(0), Slice::new(0, None, 2)))
        }
        // A permuted view of a transposed copy.
        _ => {
            let order: Vec<usize> = (0..ndim).rev().collect();
            let storage = a.view().permuted_axes(IxDyn(&order)).as_standard_layout().into_owned();
            f(storage.view().permuted_axes(IxDyn(&order)))
        }
    }
}
