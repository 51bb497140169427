//! A small 2D U-Net: two down-sampling levels, batch norm, transposed-convolution up-sampling and
//! skip connections, one output channel of logits.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Two 3x3 convolutions, each followed by batch norm and ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
}

impl ConvBlock {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        let conv = |i, o| Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Same).init(device);
        Self {
            conv1: conv(input, output),
            norm1: BatchNormConfig::new(output).init(device),
            conv2: conv(output, output),
            norm2: BatchNormConfig::new(output).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.norm1.forward(self.conv1.forward(x)));
        relu(self.norm2.forward(self.conv2.forward(x)))
    }
}

/// The U-Net. Input `[B, 1, H, W]` with `H` and `W` multiples of 4; output `[B, 1, H, W]` logits.
#[derive(Module, Debug)]
pub struct UNet {
    enc1: ConvBlock,
    enc2: ConvBlock,
    bottom: ConvBlock,
    up2: ConvTranspose2d,
    dec2: ConvBlock,
    up1: ConvTranspose2d,
    dec1: ConvBlock,
    head: Conv2d,
    pool: MaxPool2d,
}

impl UNet {
    /// A U-Net whose first level has `width` channels (doubled at every level down).
    pub fn new(width: usize, device: &Device) -> Self {
        let (c1, c2, c3) = (width, 2 * width, 4 * width);
        let up = |i, o| ConvTranspose2dConfig::new([i, o], [2, 2]).with_stride([2, 2]).init(device);
        Self {
            enc1: ConvBlock::new(1, c1, device),
            enc2: ConvBlock::new(c1, c2, device),
            bottom: ConvBlock::new(c2, c3, device),
            up2: up(c3, c2),
            dec2: ConvBlock::new(2 * c2, c2, device),
            up1: up(c2, c1),
            dec1: ConvBlock::new(2 * c1, c1, device),
            head: Conv2dConfig::new([c1, 1], [1, 1]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Logits `[B, 1, H, W]` for images `[B, 1, H, W]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let e1 = self.enc1.forward(images);
        let e2 = self.enc2.forward(self.pool.forward(e1.clone()));
        let b = self.bottom.forward(self.pool.forward(e2.clone()));
        let d2 = self.dec2.forward(Tensor::cat(vec![self.up2.forward(b), e2], 1));
        let d1 = self.dec1.forward(Tensor::cat(vec![self.up1.forward(d2), e1], 1));
        self.head.forward(d1)
    }
}
