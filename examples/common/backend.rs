//! The `--backend` flag of the training examples, and the autodiff device it names.

use burn::tensor::Device;
use clap::ValueEnum;

/// The burn backend a training example runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// burn's CPU backend.
    Flex,
    /// wgpu (Vulkan, Metal, DX12); needs `--features wgpu`.
    Wgpu,
    /// CUDA; needs `--features cuda`.
    Cuda,
}

/// The autodiff device of `backend`; an error when the crate was built without its feature.
pub fn autodiff_device(backend: Backend) -> Result<Device, String> {
    let device = match backend {
        Backend::Flex => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Device::wgpu(Default::default()),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Device::cuda(0),
        #[allow(unreachable_patterns)]
        other => return Err(format!("--backend {other:?} needs the crate's feature of that name (--features ...)")),
    };
    Ok(device.autodiff())
}
