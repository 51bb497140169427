//! What the sums know of the device a tensor lives on: which engine serves it, whether its
//! memory is the host's, and which float math its kernels have.

#[cfg(feature = "cube")]
use burn::backend::DispatchDevice;
use burn::tensor::{DType, Device, FloatDType, Tensor};

pub(crate) use crate::backend::{has_extension_ops as has_fused_op, host_backed};

/// Whether the device's kernels take 64-bit integers: always on the host and on CUDA; on wgpu
/// only where the adapter has `SHADER_INT64`.
pub(crate) fn int64_kernels(device: &Device) -> bool {
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(cube_device) => super::cube::int64_kernels(&cube_device.client()),
        _ => true,
    }
}

/// `outputs` in a dtype whose exponential the device can take: GPU shaders have no `f64` `exp`,
/// so `f64` outputs off the host are cast to `f32` (for a softmax).
pub(crate) fn exponentiable<const D: usize>(outputs: Tensor<D>) -> Tensor<D> {
    if outputs.dtype() == DType::F64 && !host_backed(&outputs.device()) {
        outputs.cast(FloatDType::F32)
    } else {
        outputs
    }
}

/// Whether the cube kernel adds instance runs with the device's native `f32` atomics (`true`) or
/// a compare-and-swap loop (`false`); `None` for devices it does not run on (flex takes host
/// passes). For benchmarks and diagnostics.
///
/// # Example
/// ```
/// use blob_loss::loss::sums::native_float_atomics;
/// use burn::tensor::Device;
///
/// assert_eq!(native_float_atomics(&Device::flex()), None);
/// ```
pub fn native_float_atomics(device: &Device) -> Option<bool> {
    #[allow(unreachable_patterns)]
    match device.clone().without_autodiff().as_dispatch() {
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(cube_device) => {
            Some(super::cube::atomic_add(&cube_device.client()) == super::cube::AtomicAdd::Native)
        }
        _ => None,
    }
}
