//! Data-parallel training: the gradient of blob loss on a batch split across two devices, each
//! shard's parts weighted by its share of the rows and of the elements with instances, equals the
//! gradient on the whole batch; unweighted shard means (what summing per-device mean losses
//! gives) do not, when the shards hold different numbers of elements with instances.
//!
//! The two devices are two handles of flex (burn has one CPU device: this checks the arithmetic
//! of the split), or flex and wgpu with `--features wgpu` (two backends, the shards' gradients
//! moved across).

mod common;

use blob_loss::loss::{BlobLoss, BlobLossConfig};
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData, Tolerance};
use common::Rng;

/// A model without batch statistics (batch norm would make the shards' forward passes differ).
#[derive(Module, Debug)]
struct Net {
    conv: Conv2d,
}

impl Net {
    fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        self.conv.forward(images)
    }
}

const SHAPE: [usize; 4] = [4, 1, 16, 16];

/// The second device: another flex handle, or wgpu with `--features wgpu`.
fn second_device() -> Device {
    #[cfg(feature = "wgpu")]
    return Device::wgpu(Default::default()).autodiff();
    #[cfg(not(feature = "wgpu"))]
    return Device::flex().autodiff();
}

/// Four images and their instance maps; element 2 has no instance, so the first half of the
/// batch holds two elements with instances and the second half one.
fn batch(device: &Device) -> (Tensor<4>, Tensor<4, Int>) {
    let mut rng = Rng(11);
    let n: usize = SHAPE.iter().product();
    let per_element = n / SHAPE[0];
    let images: Vec<f32> = (0..n).map(|_| rng.unit() as f32).collect();
    let ids: Vec<i32> =
        (0..n).map(|i| if i / per_element == 2 || rng.unit() > 0.1 { 0 } else { 1 + rng.below(5) as i32 }).collect();
    (
        Tensor::from_data(TensorData::new(images, SHAPE.to_vec()), device),
        Tensor::from_data(TensorData::new(ids, SHAPE.to_vec()), device),
    )
}

/// The gradients of `loss` on elements `range` of the batch, on `device`, each part weighted by
/// the shard's share (`weighted`) or not, moved back to `main`.
fn shard_gradients(
    net: &Net,
    loss: &BlobLoss,
    range: std::ops::Range<usize>,
    device: &Device,
    main: &Device,
    weighted: bool,
) -> GradientsParams {
    let (images, instances) = batch(main);
    let len = range.len();
    let images = images.narrow(0, range.start, len).to_device(device);
    let instances = instances.narrow(0, range.start, len).to_device(device);
    let shard_net = net.clone().fork(device);
    let parts = loss.forward_parts(shard_net.forward(images), instances);
    let config = &loss.config;
    let objective = if weighted {
        // The whole batch: 4 rows (elements x channels), 3 elements with instances.
        let (rows, elements) = (SHAPE[0] * SHAPE[1], 3.0);
        let shard_elements = f64::from(parts.elements_with_instances.clone().into_scalar::<f32>());
        parts.global * (config.global_weight * (len * SHAPE[1]) as f64 / rows as f64)
            + parts.blob * (config.blob_weight * shard_elements / elements)
    } else {
        parts.total
    };
    GradientsParams::from_grads(objective.backward(), &shard_net).to_device(main, &shard_net)
}

fn sum_of_shards(net: &Net, loss: &BlobLoss, main: &Device, weighted: bool) -> GradientsParams {
    let mut accumulator = GradientsAccumulator::<Net>::new();
    accumulator.accumulate(net, shard_gradients(net, loss, 0..2, main, main, weighted));
    accumulator.accumulate(net, shard_gradients(net, loss, 2..4, &second_device(), main, weighted));
    accumulator.grads()
}

#[test]
fn weighted_shards_give_the_whole_batch_gradient() {
    let main = Device::flex().autodiff();
    main.seed(3);
    let conv = Conv2dConfig::new([1, 1], [3, 3]).with_padding(PaddingConfig2d::Same).init(&main);
    let net = Net { conv };
    let loss = BlobLossConfig::new().init();

    let (images, instances) = batch(&main);
    let parts = loss.forward_parts(net.forward(images), instances);
    assert_eq!(parts.elements_with_instances.clone().into_scalar::<f32>(), 3.0);
    let whole = GradientsParams::from_grads(parts.total.backward(), &net);

    let shards = sum_of_shards(&net, &loss, &main, true);
    let naive = sum_of_shards(&net, &loss, &main, false);
    let weight = net.conv.weight.id;
    let bias = net.conv.bias.as_ref().expect("a bias").id;
    let tolerance = Tolerance::<f32>::rel_abs(1e-4, 1e-6);
    shards
        .get::<4>(weight)
        .unwrap()
        .into_data()
        .assert_approx_eq(&whole.get::<4>(weight).unwrap().into_data(), tolerance);
    shards.get::<1>(bias).unwrap().into_data().assert_approx_eq(&whole.get::<1>(bias).unwrap().into_data(), tolerance);

    // Summing the shards' mean losses weights the lone element of the second half twice as much
    // as the others in the blob term (and doubles the global term): not the whole batch's gradient.
    let naive = naive.get::<4>(weight).unwrap();
    let whole = whole.get::<4>(weight).unwrap();
    let gap = (naive - whole.clone() * 2.0).abs().max().into_scalar::<f32>();
    let scale = whole.abs().max().into_scalar::<f32>();
    assert!(gap > 1e-3 * scale, "unweighted shards should differ: gap {gap}, scale {scale}");
}
