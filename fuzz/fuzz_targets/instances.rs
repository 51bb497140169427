//! `instances_to_tensor` on arbitrary instance maps: `Ok` with every id kept exactly when all
//! ids fit the device's `i32`, else `Error::InstanceIdTooLarge`; never a panic.
#![no_main]

use arbitrary::Arbitrary;
use blob_loss::Error;
use blob_loss::loss::instances_to_tensor;
use burn::tensor::{Device, Int, Tensor};
use libfuzzer_sys::fuzz_target;
use ndarray::{ArrayD, IxDyn};

#[derive(Arbitrary, Debug)]
struct Input {
    sides: [u8; 3],
    ids: Vec<u32>,
}

fuzz_target!(|input: Input| {
    let shape: Vec<usize> = input.sides.iter().map(|&s| usize::from(s % 16)).collect();
    let mut ids = input.ids.iter().cycle();
    let map = ArrayD::from_shape_fn(IxDyn(&shape), |_| ids.next().copied().unwrap_or(0));
    let fits = map.iter().all(|&id| id <= i32::MAX as u32);
    let device = Device::flex();
    match instances_to_tensor::<3, _, _>(map.view(), &device) {
        Ok(tensor) => {
            assert!(fits);
            let back: Tensor<3, Int> = tensor;
            let values: Vec<i64> = back.into_data().convert::<i64>().try_to_vec::<i64>().expect("i64");
            assert!(values.iter().zip(map.iter()).all(|(&a, &b)| a == i64::from(b)));
        }
        Err(Error::InstanceIdTooLarge { .. }) => assert!(!fits),
        Err(other) => panic!("unexpected error {other}"),
    }
    // A rank that does not match is an error, not a panic.
    assert!(matches!(instances_to_tensor::<2, _, _>(map.view(), &device), Err(Error::UnsupportedRank { .. })));
});
