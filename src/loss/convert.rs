//! From ndarray instance maps to burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};
use ndarray::{ArrayView, Dimension};

use crate::Error;
use crate::components::MaskElement;

/// Copies an instance map (for example [`BatchLabeling::labels`](crate::components::BatchLabeling))
/// into an integer burn tensor on `device`, in the device's default integer type. Any integer
/// element type is accepted (`u32` labels, `u16` or `i64` maps read from files).
///
/// # Errors
/// [`Error::UnsupportedRank`] when `D` does not match the array's rank,
/// [`Error::NegativeInstanceId`] for a negative id, and [`Error::InstanceIdTooLarge`] for an id
/// above `i32::MAX` (the default integer type of flex and wgpu is `i32`).
///
/// # Example
/// ```
/// use blob_loss::components::{label_batch, Connectivity};
/// use blob_loss::loss::instances_to_tensor;
/// use burn::tensor::{Device, Int, Tensor};
/// use ndarray::Array4;
///
/// let masks = Array4::<u8>::ones((1, 1, 4, 4));
/// let batch = label_batch(masks.view(), Connectivity::Four)?;
/// let instances: Tensor<4, Int> = instances_to_tensor(batch.labels.view(), &Device::flex())?;
/// assert_eq!(instances.dims(), [1, 1, 4, 4]);
/// // Other integer types too.
/// let ids = ndarray::array![[[[0i64, 7], [7, 0]]]];
/// assert_eq!(instances_to_tensor::<4, _, _>(ids.view(), &Device::flex())?.dims(), [1, 1, 2, 2]);
/// # Ok::<(), blob_loss::Error>(())
/// ```
pub fn instances_to_tensor<const D: usize, A: MaskElement, Dim: Dimension>(
    instances: ArrayView<'_, A, Dim>,
    device: &Device,
) -> Result<Tensor<D, Int>, Error> {
    if instances.ndim() != D {
        return Err(Error::UnsupportedRank {
            what: "instance map",
            ndim: instances.ndim(),
            expected: "the tensor's rank D",
        });
    }
    let mut values = Vec::with_capacity(instances.len());
    for &id in instances.iter() {
        let id = id.as_i128();
        if id < 0 {
            return Err(Error::NegativeInstanceId { value: id.max(i64::MIN as i128) as i64 });
        }
        let id = i32::try_from(id).map_err(|_| Error::InstanceIdTooLarge {
            max_id: id.min(i64::MAX as i128) as i64,
            bins: id as u128 + 1,
            limit: i32::MAX as u128,
        })?;
        values.push(id);
    }
    let data = TensorData::new(values, instances.shape().to_vec());
    Ok(Tensor::from_data(data, device))
}
