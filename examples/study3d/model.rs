//! A small 3D U-Net, the 2D one of `examples/train` in three dimensions: two levels down (by
//! strided 2x2x2 convolutions, as nnU-Net does, since burn has no 3D max pooling), batch norm,
//! transposed-convolution up-sampling and skip connections, one output channel of logits.

use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Two 3x3x3 convolutions, each followed by batch norm and ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv3d,
    norm1: BatchNorm,
    conv2: Conv3d,
    norm2: BatchNorm,
}

impl ConvBlock {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        let conv = |i, o| Conv3dConfig::new([i, o], [3, 3, 3]).with_padding(PaddingConfig3d::Same).init(device);
        Self {
            conv1: conv(input, output),
            norm1: BatchNormConfig::new(output).init(device),
            conv2: conv(output, output),
            norm2: BatchNormConfig::new(output).init(device),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = relu(self.norm1.forward(self.conv1.forward(x)));
        relu(self.norm2.forward(self.conv2.forward(x)))
    }
}

/// The U-Net. Input `[B, 1, D, H, W]` with `D`, `H` and `W` multiples of 4; output logits of the
/// same shape.
#[derive(Module, Debug)]
pub struct UNet3d {
    enc1: ConvBlock,
    down1: Conv3d,
    enc2: ConvBlock,
    down2: Conv3d,
    bottom: ConvBlock,
    up2: ConvTranspose3d,
    dec2: ConvBlock,
    up1: ConvTranspose3d,
    dec1: ConvBlock,
    head: Conv3d,
}

impl UNet3d {
    /// A U-Net whose first level has `width` channels (doubled at every level down).
    pub fn new(width: usize, device: &Device) -> Self {
        let (c1, c2, c3) = (width, 2 * width, 4 * width);
        let down = |c| Conv3dConfig::new([c, c], [2, 2, 2]).with_stride([2, 2, 2]).init(device);
        let up = |i, o| ConvTranspose3dConfig::new([i, o], [2, 2, 2]).with_stride([2, 2, 2]).init(device);
        Self {
            enc1: ConvBlock::new(1, c1, device),
            down1: down(c1),
            enc2: ConvBlock::new(c1, c2, device),
            down2: down(c2),
            bottom: ConvBlock::new(c2, c3, device),
            up2: up(c3, c2),
            dec2: ConvBlock::new(2 * c2, c2, device),
            up1: up(c2, c1),
            dec1: ConvBlock::new(2 * c1, c1, device),
            head: Conv3dConfig::new([c1, 1], [1, 1, 1]).init(device),
        }
    }

    /// Logits `[B, 1, D, H, W]` for volumes `[B, 1, D, H, W]`.
    pub fn forward(&self, volumes: Tensor<5>) -> Tensor<5> {
        let e1 = self.enc1.forward(volumes);
        let e2 = self.enc2.forward(self.down1.forward(e1.clone()));
        let b = self.bottom.forward(self.down2.forward(e2.clone()));
        let d2 = self.dec2.forward(Tensor::cat(vec![self.up2.forward(b), e2], 1));
        let d1 = self.dec1.forward(Tensor::cat(vec![self.up1.forward(d2), e1], 1));
        self.head.forward(d1)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::UNet3d;

    /// flex draws initial weights from one generator per process: the tests that draw take turns,
    /// as the study's runs do.
    static DRAWS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_unet_keeps_the_volume_shape() {
        let _turn = DRAWS.lock().unwrap();
        let device = Device::flex();
        let out = UNet3d::new(2, &device).forward(Tensor::zeros([2, 1, 8, 12, 16], &device));
        assert_eq!(out.dims(), [2, 1, 8, 12, 16]);
    }

    #[test]
    fn a_seed_draws_the_same_initial_network_for_every_loss() {
        let _turn = DRAWS.lock().unwrap();
        let device = Device::flex();
        let input = || Tensor::<5>::ones([1, 1, 8, 8, 8], &device);
        let output = |seed| {
            device.seed(seed);
            UNet3d::new(2, &device).forward(input()).into_data().try_to_vec::<f32>().unwrap()
        };
        assert_eq!(output(3), output(3));
        assert_ne!(output(3), output(4));
    }
}
