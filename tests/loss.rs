//! `loss`: the one-pass blob loss against a naive per-instance loop, hand-computed cases,
//! finite differences and bad input.

mod common;

use blob_loss::Error;
use blob_loss::components::voronoi_batch;
use blob_loss::loss::{
    Activation, BaseLossConfig, BlobLossConfig, Engine, LossTargets, Partition, false_positive_components,
};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use common::Rng;

/// The backend under test: flex, or wgpu when built with `--features wgpu` (the same suite).
fn base_device() -> Device {
    #[cfg(feature = "wgpu")]
    return Device::wgpu(Default::default());
    #[cfg(not(feature = "wgpu"))]
    return Device::flex();
}

fn device() -> Device {
    base_device().autodiff()
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(t.into_scalar::<f32>())
}

fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// A random batch `[B, C, spatial..]`: logits and instance ids (sparse, non-contiguous ids,
/// single-voxel instances, and some empty elements).
fn random_batch(rng: &mut Rng, shape: &[usize], max_id: i32, density: f64) -> (Vec<f32>, Vec<i32>) {
    let n: usize = shape.iter().product();
    let per_element: usize = shape[1..].iter().product();
    let logits = (0..n).map(|_| (rng.unit() * 8.0 - 4.0) as f32).collect();
    let ids = (0..n)
        .map(|i| {
            // Element 1 (when there is one) stays empty.
            if i / per_element == 1 || rng.unit() >= density { 0 } else { 1 + 3 * rng.below(max_id as u64) as i32 }
        })
        .collect();
    (logits, ids)
}

fn tensors<const D: usize>(
    shape: [usize; D],
    logits: &[f32],
    ids: &[i32],
    device: &Device,
) -> (Tensor<D>, Tensor<D, Int>) {
    let mut x = Tensor::<D>::from_data(TensorData::new(logits.to_vec(), shape.to_vec()), device);
    if device.is_autodiff() {
        x = x.require_grad();
    }
    let y = Tensor::<D, Int>::from_data(TensorData::new(ids.to_vec(), shape.to_vec()), device);
    (x, y)
}

/// The parts of the loss: total, global, blob, false positive.
type Parts = (Tensor<1>, Tensor<1>, Tensor<1>, Tensor<1>);

/// The naive reference: an explicit loop over elements, channels and instances, each instance
/// scored on an explicit mask (the background plus itself, or its Voronoi cell from `cells`), and
/// each false-positive component of `fp` on its voxels, with plain burn ops (f32).
fn naive<const D: usize>(
    config: &BlobLossConfig,
    x: Tensor<D>,
    ids: &[i32],
    cells: Option<&[i32]>,
    fp: Option<&[i32]>,
) -> Parts {
    let dims = x.dims();
    let (b, c) = (dims[0], dims[1]);
    let n: usize = dims[2..].iter().product();
    let device = x.device();
    let x = x.reshape([b, c, n]);
    let p = match config.activation {
        Activation::Sigmoid => sigmoid(x.clone()),
        Activation::Softmax => softmax(x.clone(), 1),
        Activation::None => x.clone(),
    };
    let row = |t: &Tensor<3>, bi: usize, ci: usize| t.clone().slice([bi..bi + 1, ci..ci + 1, 0..n]).reshape([n]);
    // A base loss on explicit voxels, each weighing `w` (1 without size weighting).
    let score =
        |base: &BaseLossConfig, p: Tensor<1>, logits: Option<Tensor<1>>, t: Vec<f32>, w: Vec<f32>, voxels: usize| {
            let t = Tensor::<1>::from_floats(t.as_slice(), &device);
            let w = Tensor::<1>::from_floats(w.as_slice(), &device);
            let tp = (p.clone() * t.clone() * w.clone()).sum();
            let mut loss = Tensor::<1>::zeros([1], &device);
            if base.dice_weight > 0.0 {
                let pred = if base.squared_denominator { p.clone() * p.clone() } else { p.clone() };
                let dice = (tp.clone() * 2.0 + base.smooth_nr)
                    / ((pred * w.clone()).sum() + (t.clone() * w.clone()).sum() + base.smooth_dr);
                loss = loss + (dice.neg() + 1.0) * base.dice_weight;
            }
            if base.tversky_weight > 0.0 {
                let fp = (p.clone() * (t.clone().neg() + 1.0) * w.clone()).sum();
                let fn_ = ((p.clone().neg() + 1.0) * t.clone() * w.clone()).sum();
                let tv = (tp.clone() + base.smooth_nr)
                    / (tp.clone() + fp * base.tversky_alpha_fp + fn_ * base.tversky_beta_fn + base.smooth_dr);
                loss = loss + (tv.neg() + 1.0) * base.tversky_weight;
            }
            if base.bce_weight > 0.0 {
                let per_voxel = match logits {
                    // -t ln sigmoid(x) - (1 - t) ln(1 - sigmoid(x)), written plainly.
                    Some(x) => {
                        let s = sigmoid(x);
                        (t.clone() * s.clone().log() + (t.clone().neg() + 1.0) * (s.neg() + 1.0).log()).neg()
                    }
                    // The crate's floor: q clamped at 1e-12.
                    None => (t.clone() * p.clone().clamp_min(1e-12).log()
                        + (t.clone().neg() + 1.0) * (p.clone().neg() + 1.0).clamp_min(1e-12).log())
                    .neg(),
                };
                loss = loss + (per_voxel * w).sum() * (base.bce_weight / voxels as f64);
            }
            loss
        };
    let max_weight = config.max_size_weight as f32;
    // Inverse-size weights of voxels by component: `N / (components |C|)`, clipped.
    // `parts` components in all, empty ones included.
    let size_weights = |components: &[i64], parts: usize, on: bool| -> Vec<f32> {
        if !on {
            return vec![1.0; components.len()];
        }
        let mut sizes = std::collections::HashMap::new();
        for &c in components {
            *sizes.entry(c).or_insert(0usize) += 1;
        }
        let n = components.len() as f32;
        components.iter().map(|c| (n / (parts as f32 * sizes[c] as f32)).min(max_weight)).collect()
    };
    let sigmoid_logits = config.activation == Activation::Sigmoid;
    // Channel weights: class weights, channel 0 left out without include_background.
    let channel_weight = |ci: usize| {
        let w = config.class_weights.as_ref().map_or(1.0, |w| w[ci]);
        if ci == 0 && !config.include_background { 0.0 } else { w }
    };
    let counted = (0..c).filter(|&ci| channel_weight(ci) > 0.0).count() as f64;
    let mut global = Vec::new();
    let mut element_losses = Vec::new();
    for bi in 0..b {
        let mut channel_losses = Vec::new();
        for ci in 0..c {
            if channel_weight(ci) == 0.0 {
                continue;
            }
            let row_ids = &ids[(bi * c + ci) * n..(bi * c + ci + 1) * n];
            // Ignored voxels (negative ids) are in no term.
            let kept: Vec<i32> = (0..n).filter(|&v| row_ids[v] >= 0).map(|v| v as i32).collect();
            let kept_idx = Tensor::<1, Int>::from_ints(kept.as_slice(), &device);
            let t: Vec<f32> = kept.iter().map(|&v| f32::from(u8::from(row_ids[v as usize] > 0))).collect();
            let logits = sigmoid_logits.then(|| row(&x, bi, ci).select(0, kept_idx.clone()));
            // Globally the background is one component, however many instances there are.
            let components: Vec<i64> = kept.iter().map(|&v| i64::from(row_ids[v as usize])).collect();
            let k = components.iter().filter(|&&c| c > 0).collect::<std::collections::HashSet<_>>().len();
            let w = size_weights(&components, k + 1, config.global_size_weighting);
            if !config.batch_global {
                let p = row(&p, bi, ci).select(0, kept_idx);
                global.push(score(&config.global_loss, p, logits, t, w, kept.len()) * channel_weight(ci));
            }
            let mut instances: Vec<i32> = row_ids.iter().copied().filter(|&i| i > 0).collect();
            instances.sort();
            instances.dedup();
            let mut instance_losses = Vec::new();
            for &k in &instances {
                let t: Vec<f32> = row_ids.iter().map(|&i| f32::from(u8::from(i == k))).collect();
                let row_cells = cells.map(|map| &map[(bi * c + ci) * n..(bi * c + ci + 1) * n]);
                match config.partition {
                    Partition::Exclude | Partition::Voronoi => {
                        let in_domain = |v: usize| match row_cells {
                            Some(cells) => row_ids[v] == k || (row_ids[v] == 0 && cells[v] == k),
                            None => row_ids[v] == 0 || row_ids[v] == k,
                        };
                        let keep: Vec<i32> = (0..n).filter(|&v| in_domain(v)).map(|v| v as i32).collect();
                        let idx = Tensor::<1, Int>::from_ints(keep.as_slice(), &device);
                        let t: Vec<f32> = keep.iter().map(|&v| t[v as usize]).collect();
                        let logits = sigmoid_logits.then(|| row(&x, bi, ci).select(0, idx.clone()));
                        let voxels = if row_cells.is_some() { keep.len() } else { kept.len() };
                        let p = row(&p, bi, ci).select(0, idx);
                        // Inside the domain: the instance and the rest, two components.
                        let parts: Vec<i64> = keep.iter().map(|&v| i64::from(row_ids[v as usize] == k)).collect();
                        let w = size_weights(&parts, 2, config.blob_size_weighting);
                        instance_losses.push(score(&config.blob_loss, p, logits, t, w, voxels));
                    }
                    Partition::Reference => {
                        let mask: Vec<f32> = row_ids.iter().map(|&i| f32::from(u8::from(i == 0 || i == k))).collect();
                        let masked = row(&x, bi, ci) * Tensor::<1>::from_floats(mask.as_slice(), &device);
                        let w = vec![1.0; n];
                        instance_losses.push(score(&config.blob_loss, sigmoid(masked.clone()), Some(masked), t, w, n));
                    }
                }
            }
            if !instance_losses.is_empty() {
                let count = instance_losses.len() as f64;
                channel_losses.push(Tensor::cat(instance_losses, 0).sum() / count * channel_weight(ci));
            }
        }
        if !channel_losses.is_empty() {
            let count = channel_losses.len() as f64;
            element_losses.push(Tensor::cat(channel_losses, 0).sum() / count);
        }
    }
    if config.batch_global {
        // Batch Dice: each channel over the whole batch at once.
        for ci in (0..c).filter(|&ci| channel_weight(ci) > 0.0) {
            let rows: Vec<usize> = (0..b).collect();
            let cat = |t: &Tensor<3>| Tensor::cat(rows.iter().map(|&bi| row(t, bi, ci)).collect(), 0);
            let row_ids: Vec<i32> =
                rows.iter().flat_map(|&bi| ids[(bi * c + ci) * n..(bi * c + ci + 1) * n].to_vec()).collect();
            let kept: Vec<i32> = (0..row_ids.len()).filter(|&v| row_ids[v] >= 0).map(|v| v as i32).collect();
            let kept_idx = Tensor::<1, Int>::from_ints(kept.as_slice(), &device);
            let t: Vec<f32> = kept.iter().map(|&v| f32::from(u8::from(row_ids[v as usize] > 0))).collect();
            let w = vec![1.0; t.len()];
            let logits = sigmoid_logits.then(|| cat(&x).select(0, kept_idx.clone()));
            let p = cat(&p).select(0, kept_idx);
            global.push(score(&config.global_loss, p, logits, t, w, kept.len()) * channel_weight(ci));
        }
    }
    let rows = if config.batch_global { 1.0 } else { b as f64 };
    let global = Tensor::cat(global, 0).sum() / (counted * rows);
    let mean = |losses: Vec<Tensor<1>>| {
        if losses.is_empty() {
            Tensor::<1>::zeros([1], &device)
        } else {
            let count = losses.len() as f64;
            Tensor::cat(losses, 0).sum() / count
        }
    };
    let blob = mean(element_losses);
    // The false-positive term: sum(p sg(p)) / sg(sum p) per component, then the same means.
    let mut fp_elements = Vec::new();
    for bi in 0..b {
        let mut channels = Vec::new();
        for ci in 0..c {
            let Some(fp) = fp else { continue };
            let row_fp = &fp[(bi * c + ci) * n..(bi * c + ci + 1) * n];
            let mut components: Vec<i32> = row_fp.iter().copied().filter(|&i| i > 0).collect();
            components.sort();
            components.dedup();
            let terms: Vec<Tensor<1>> = components
                .iter()
                .map(|&j| {
                    let keep: Vec<i32> = (0..n).filter(|&v| row_fp[v] == j).map(|v| v as i32).collect();
                    let p = row(&p, bi, ci).select(0, Tensor::<1, Int>::from_ints(keep.as_slice(), &device));
                    (p.clone() * p.clone().detach()).sum() / p.detach().sum()
                })
                .collect();
            if !terms.is_empty() && channel_weight(ci) > 0.0 {
                channels.push(mean(terms) * channel_weight(ci));
            }
        }
        if !channels.is_empty() {
            fp_elements.push(mean(channels));
        }
    }
    let false_positive = mean(fp_elements);
    let total = global.clone() * config.global_weight
        + blob.clone() * config.blob_weight
        + false_positive.clone() * config.false_positive_weight;
    (total, global, blob, false_positive)
}

/// The Voronoi cells of an instance map `[B, C, spatial..]` (anisotropic spacing).
fn cells_of(shape: &[usize], ids: &[i32]) -> Vec<i32> {
    // Ignored voxels (negative ids) are background for the cells.
    let labels =
        ndarray::ArrayD::from_shape_vec(shape.to_vec(), ids.iter().map(|&i| i.max(0) as u32).collect()).unwrap();
    let spacing: Vec<f64> = (2..shape.len()).map(|axis| 1.0 + 0.25 * axis as f64).collect();
    voronoi_batch(labels.view(), &spacing).unwrap().iter().map(|&c| c as i32).collect()
}

/// The targets a configuration needs: the instance map, with its cells for `Partition::Voronoi`.
fn targets_for<const D: usize>(
    config: &BlobLossConfig,
    shape: [usize; D],
    ids: &[i32],
    device: &Device,
) -> LossTargets<D> {
    let int = |values: Vec<i32>| Tensor::<D, Int>::from_data(TensorData::new(values, shape.to_vec()), device);
    let targets = LossTargets::new(int(ids.to_vec()));
    match config.partition {
        Partition::Voronoi => targets.with_cells(int(cells_of(&shape, ids))),
        _ => targets,
    }
}

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!((a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-3), "{what}: {a} vs {b}");
}

/// The fast path matches the naive loop in value and gradient.
fn check_against_naive<const D: usize>(
    config: &BlobLossConfig,
    shape: [usize; D],
    seed: u64,
    max_id: i32,
    density: f64,
) {
    let channels = shape[1];
    if channels < 2 && !config.include_background {
        return; // no channel left: an error, tested apart
    }
    // Class weights cycled to the number of channels.
    let config = &BlobLossConfig {
        class_weights: config.class_weights.as_ref().map(|w| (0..channels).map(|c| w[c % w.len()]).collect()),
        ..config.clone()
    };
    let device = device();
    let mut rng = Rng(seed);
    let (logits, mut ids) = random_batch(&mut rng, &shape, max_id, density);
    if config.ignore_negative_ids {
        // Every 7th voxel ignored.
        ids.iter_mut().step_by(7).for_each(|id| *id = -1 - *id);
    }
    let logits: Vec<f32> = if config.activation == Activation::None {
        logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect()
    } else {
        logits
    };
    let loss = config.init();

    let (x, y) = tensors(shape, &logits, &ids, &device);
    // The cells of the instance map and the false-positive components of the prediction.
    let cells = (config.partition == Partition::Voronoi).then(|| cells_of(&shape, ids.as_slice()));
    let fp: Option<Vec<i32>> = (config.false_positive_weight > 0.0).then(|| {
        let map = false_positive_components(x.clone(), y.clone(), config.activation, config.false_positive_threshold);
        map.unwrap().into_data().convert::<i32>().try_to_vec().unwrap()
    });
    let int = |values: &[i32]| Tensor::<D, Int>::from_data(TensorData::new(values.to_vec(), shape.to_vec()), &device);
    let mut targets = LossTargets::new(y.clone());
    if let Some(cells) = &cells {
        targets = targets.with_cells(int(cells));
    }
    let parts = loss.forward_parts(x.clone(), targets.clone());
    let (x_naive, _) = tensors(shape, &logits, &ids, &device);
    let (total, global, blob, false_positive) = naive(config, x_naive.clone(), &ids, cells.as_deref(), fp.as_deref());

    let what = format!("{config:?} {shape:?}");
    close(scalar(parts.global.clone()), scalar(global), 1e-5, &format!("global, {what}"));
    close(scalar(parts.blob.clone()), scalar(blob), 1e-5, &format!("blob, {what}"));
    close(scalar(parts.false_positive.clone()), scalar(false_positive), 1e-5, &format!("false positive, {what}"));
    close(scalar(parts.total.clone()), scalar(total.clone()), 1e-5, &format!("total, {what}"));
    if let Some(fp) = &fp {
        // Components given by the caller: the same loss as the ones the loss finds itself.
        let given = loss.forward_parts(x.clone(), targets.with_false_positives(int(fp)));
        close(scalar(given.total), scalar(parts.total.clone()), 1e-6, &format!("given components, {what}"));
    }

    let g_fast = to_vec(x.grad(&parts.total.backward()).unwrap().reshape([-1]));
    let g_naive = to_vec(x_naive.grad(&total.backward()).unwrap().reshape([-1]));
    let scale = g_naive.iter().fold(0f32, |m, g| m.max(g.abs())).max(1e-6);
    for (i, (a, b)) in g_fast.iter().zip(&g_naive).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "gradient {i}: {a} vs {b} (max |g| {scale}), {what}");
    }
}

fn configs() -> Vec<BlobLossConfig> {
    vec![
        BlobLossConfig::new(),
        BlobLossConfig::new().with_global_weight(0.0),
        BlobLossConfig::new().with_blob_weight(0.0),
        BlobLossConfig::new().with_blob_loss(BaseLossConfig::new().with_dice_weight(0.0).with_bce_weight(1.0)),
        BlobLossConfig::new()
            .with_global_loss(BaseLossConfig::new().with_bce_weight(0.5).with_squared_denominator(true))
            .with_blob_loss(
                BaseLossConfig::new()
                    .with_tversky_weight(1.0)
                    .with_tversky_alpha_fp(0.3)
                    .with_tversky_beta_fn(0.7)
                    .with_smooth_nr(0.0),
            ),
        BlobLossConfig::new().with_partition(Partition::Reference),
        BlobLossConfig::new()
            .with_partition(Partition::Reference)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true)),
        BlobLossConfig::new().with_activation(Activation::Softmax),
        BlobLossConfig::new()
            .with_activation(Activation::None)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(0.5)),
        // The CC loss: Dice + BCE per Voronoi cell.
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)),
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_activation(Activation::Softmax)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true)),
        // Inverse-size weighting, globally and inside the domains.
        BlobLossConfig::new()
            .with_global_size_weighting(true)
            .with_blob_size_weighting(true)
            .with_max_size_weight(20.0)
            .with_global_loss(BaseLossConfig::new().with_bce_weight(1.0))
            .with_blob_loss(BaseLossConfig::new().with_tversky_weight(1.0).with_bce_weight(0.5)),
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_blob_size_weighting(true)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true)),
        // Ignored voxels, with blob loss, the CC loss and the false-positive term.
        BlobLossConfig::new()
            .with_ignore_negative_ids(true)
            .with_false_positive_weight(0.5)
            .with_global_loss(BaseLossConfig::new().with_bce_weight(1.0))
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)),
        BlobLossConfig::new()
            .with_ignore_negative_ids(true)
            .with_partition(Partition::Voronoi)
            .with_batch_global(true)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)),
        // MONAI's options: no background channel, class weights, batch Dice.
        BlobLossConfig::new()
            .with_activation(Activation::Softmax)
            .with_include_background(false)
            .with_global_loss(BaseLossConfig::new().with_bce_weight(1.0)),
        BlobLossConfig::new()
            .with_class_weights(Some(vec![0.5, 2.0, 0.0]))
            .with_batch_global(true)
            .with_false_positive_weight(0.3)
            .with_global_loss(BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(0.5)),
        // The prediction term, with blob loss and with the CC loss.
        BlobLossConfig::new().with_false_positive_weight(0.7),
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_activation(Activation::None)
            .with_false_positive_weight(1.0)
            .with_false_positive_threshold(0.3)
            .with_blob_loss(BaseLossConfig::new().with_tversky_weight(1.0).with_bce_weight(0.5)),
    ]
}

/// Every configuration on both engines: the fused op and burn's generic tensor operations. On
/// wgpu (lavapipe in CI runs every kernel on the CPU, slowly) the generic engine, which is
/// burn's own code, runs the first configurations only (up to the first Voronoi one).
fn configs_both_paths() -> Vec<BlobLossConfig> {
    let generic = if cfg!(feature = "wgpu") { 10 } else { usize::MAX };
    configs()
        .into_iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let engines: &[Engine] = if i < generic { &ENGINES } else { &[Engine::Fused] };
            engines.iter().map(move |&engine| c.clone().with_engine(engine))
        })
        .collect()
}

const ENGINES: [Engine; 2] = [Engine::Fused, Engine::Scatter];

#[test]
fn matches_naive_loop_in_2d() {
    for (i, config) in configs_both_paths().iter().enumerate() {
        check_against_naive(config, [3, 2, 9, 11], 10 + i as u64, 6, 0.3);
    }
}

#[test]
fn matches_naive_loop_in_3d_and_1d() {
    for (i, config) in configs_both_paths().iter().enumerate() {
        check_against_naive(config, [2, 1, 5, 6, 7], 20 + i as u64, 12, 0.2);
        check_against_naive(config, [2, 3, 40], 30 + i as u64, 4, 0.5);
    }
}

#[test]
fn many_single_voxel_instances() {
    // Ids up to 3 * 300: most instances are one voxel.
    for engine in ENGINES {
        check_against_naive(&BlobLossConfig::new().with_engine(engine), [1, 1, 30, 30], 40, 300, 0.25);
    }
}

#[test]
fn single_instance_blob_is_its_dice() {
    let device = device();
    let p = [0.9f32, 0.8, 0.1, 0.3, 0.6, 0.05];
    let ids = [1, 1, 0, 0, 1, 0];
    let x = Tensor::<3>::from_data(TensorData::new(p.to_vec(), vec![1, 1, 6]), &device);
    let y = Tensor::<3, Int>::from_data(TensorData::new(ids.to_vec(), vec![1, 1, 6]), &device);
    let loss = BlobLossConfig::new().with_activation(Activation::None).init();
    let parts = loss.forward_parts(x, y);
    let (tp, sum_p, sum_t) = (0.9 + 0.8 + 0.6, p.iter().sum::<f32>() as f64, 3.0);
    let dice = 1.0 - (2.0 * tp + 1e-5) / (sum_p + sum_t + 1e-5);
    close(scalar(parts.blob), dice, 1e-6, "blob");
    close(scalar(parts.global), dice, 1e-6, "global");
    close(scalar(parts.total), 3.0 * dice, 1e-6, "total");
}

#[test]
fn missed_small_instance_costs_half_the_blob_term() {
    // A 1000-voxel instance predicted perfectly, a 5-voxel one missed entirely.
    let device = device();
    let n = 2000;
    let mut ids = vec![0i32; n];
    let mut p = vec![0.0f32; n];
    for v in 0..1000 {
        ids[v] = 1;
        p[v] = 1.0;
    }
    for id in ids.iter_mut().skip(1500).take(5) {
        *id = 2;
    }
    let x = Tensor::<3>::from_data(TensorData::new(p, vec![1, 1, n]), &device);
    let y = Tensor::<3, Int>::from_data(TensorData::new(ids, vec![1, 1, n]), &device);
    let parts = BlobLossConfig::new().with_activation(Activation::None).init().forward_parts(x, y);
    let global = scalar(parts.global);
    let blob = scalar(parts.blob);
    assert!(global < 0.003, "global Dice loss {global}: Dice near 1");
    close(blob, 0.5, 1e-4, "blob term near 0.5");
}

#[test]
fn gradient_matches_finite_differences() {
    let device = base_device();
    let shape = [2usize, 2, 3, 4];
    let mut rng = Rng(50);
    let (logits, ids) = random_batch(&mut rng, &shape, 3, 0.5);
    for config in [
        BlobLossConfig::new(),
        BlobLossConfig::new().with_engine(Engine::Scatter),
        BlobLossConfig::new().with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(1.0)),
        BlobLossConfig::new()
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(1.0))
            .with_engine(Engine::Scatter),
        BlobLossConfig::new().with_activation(Activation::Softmax).with_partition(Partition::Exclude),
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)),
    ] {
        let loss = config.init();
        let (x, _) = tensors(shape, &logits, &ids, &device.clone().autodiff());
        let total = loss.forward(x.clone(), targets_for(&config, shape, &ids, &device.clone().autodiff()));
        let grad = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
        let eval = |values: &[f32]| {
            let (x, _) = tensors(shape, values, &ids, &device);
            scalar(loss.forward(x, targets_for(&config, shape, &ids, &device)))
        };
        let eps = 1e-2f32;
        for i in (0..logits.len()).step_by(5) {
            let (mut plus, mut minus) = (logits.clone(), logits.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let fd = (eval(&plus) - eval(&minus)) / (2.0 * f64::from(eps));
            assert!(
                (fd - f64::from(grad[i])).abs() <= 2e-3 + 2e-2 * fd.abs(),
                "voxel {i}: fd {fd} vs autodiff {}",
                grad[i]
            );
        }
    }
}

#[test]
fn batch_without_instances_gives_zero_blob_with_a_gradient() {
    let device = device();
    let x = Tensor::<4>::from_floats([[[[0.5, -1.0], [2.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]], &device).require_grad();
    let y = Tensor::<4, Int>::zeros([2, 1, 2, 2], &device);
    for engine in ENGINES {
        let loss = BlobLossConfig::new().with_global_weight(0.0).with_engine(engine).init();
        let parts = loss.forward_parts(x.clone(), y.clone());
        assert_eq!(scalar(parts.blob.clone()), 0.0);
        let grad = to_vec(x.grad(&parts.total.backward()).expect("the graph reaches the logits").reshape([-1]));
        assert!(grad.iter().all(|&g| g == 0.0), "{grad:?}");
    }
}

/// The fused engine against the generic one on volumes longer than its parallel tasks (and its
/// GPU tiles and chunks), with more bins than a task has voxels, and ids given as `i64` as well
/// as the default `i32`: the same values and the same gradient.
#[test]
fn fused_and_generic_paths_agree_on_large_volumes() {
    let device = device();
    let shape = [2, 2, 37, 41, 29];
    let mut rng = Rng(99);
    for max_id in [5, 20_000] {
        let (logits, ids) = random_batch(&mut rng, &shape, max_id, 0.05);
        for config in [
            BlobLossConfig::new(),
            BlobLossConfig::new()
                .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true)),
        ] {
            let mut results = Vec::new();
            for (engine, dtype) in
                [(Engine::Scatter, DType::I32), (Engine::Fused, DType::I32), (Engine::Fused, DType::I64)]
            {
                if !device.supports_dtype(dtype) {
                    continue;
                }
                let x = Tensor::<5>::from_data(TensorData::new(logits.clone(), shape.to_vec()), &device).require_grad();
                let y = Tensor::<5, Int>::from_data(TensorData::new(ids.clone(), shape.to_vec()), (&device, dtype));
                assert_eq!(y.dtype(), dtype);
                let parts = config.clone().with_engine(engine).init().forward_parts(x.clone(), y);
                let values = [scalar(parts.global), scalar(parts.blob), scalar(parts.total.clone())];
                let grad = to_vec(x.grad(&parts.total.backward()).unwrap().reshape([-1]));
                results.push((values, grad));
            }
            let (generic, generic_grad) = &results[0];
            for (values, grad) in &results[1..] {
                for (a, b) in values.iter().zip(generic) {
                    close(*a, *b, 1e-5, "fused vs generic");
                }
                let scale = generic_grad.iter().fold(0f32, |m, g| m.max(g.abs()));
                for (a, b) in grad.iter().zip(generic_grad) {
                    assert!((a - b).abs() <= 1e-4 * scale, "gradient {a} vs {b} (largest {scale})");
                }
            }
        }
    }
}

/// Ignored voxels get no gradient whatever their outputs: NaN and infinite logits on voxels of
/// negative id give a finite loss (the one of finite logits there) and a zero gradient there,
/// with every activation and both engines (found by the `loss` fuzz target).
#[test]
fn ignored_voxels_with_non_finite_outputs_get_no_gradient() {
    let device = device();
    let shape = [2, 1, 2, 2];
    let ids: Vec<i32> = vec![-1, 3, -1, 0, 2, -1, -1, 2];
    for activation in [Activation::Sigmoid, Activation::None] {
        // Finite outputs: logits, or probabilities without an activation.
        let value =
            |i: usize| if activation == Activation::None { (i + 1) as f32 / 10.0 } else { i as f32 / 4.0 - 1.0 };
        let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        let mut odd = odd.iter().cycle();
        let logits: Vec<f32> =
            ids.iter().enumerate().map(|(i, &id)| if id < 0 { *odd.next().unwrap() } else { value(i) }).collect();
        let finite: Vec<f32> = logits.iter().map(|&l| if l.is_finite() { l } else { 0.5 }).collect();
        for engine in ENGINES {
            let base = BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true);
            let loss = BlobLossConfig::new()
                .with_activation(activation)
                .with_ignore_negative_ids(true)
                .with_engine(engine)
                .with_global_loss(base.clone())
                .with_blob_loss(base)
                .init();
            let run = |values: &[f32]| {
                let x = Tensor::<4>::from_data(TensorData::new(values.to_vec(), shape), &device).require_grad();
                let y = Tensor::<4, Int>::from_data(TensorData::new(ids.clone(), shape), &device);
                let total = loss.try_forward(x.clone(), y).expect("a finite loss");
                (scalar(total.clone()), to_vec(x.grad(&total.backward()).unwrap().reshape([-1])))
            };
            let (value, grad) = run(&logits);
            let (expected, expected_grad) = run(&finite);
            close(value, expected, 1e-6, "ignored outputs change nothing");
            for ((g, e), &id) in grad.iter().zip(&expected_grad).zip(&ids) {
                assert!(g.is_finite(), "{activation:?} {engine:?}: gradient {grad:?}");
                if id < 0 {
                    assert_eq!(*g, 0.0, "{activation:?} {engine:?}: an ignored voxel's gradient");
                } else {
                    assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "{g} vs {e}");
                }
            }
        }
    }
}

/// `instance_sums` with two bin maps (BiCC's two partitions): each map's sums are those of its
/// own call, and the gradient is the sum of the two calls' gradients, with every statistic, on
/// the device under test (flex's host pass, or the cube kernels on wgpu).
#[test]
fn two_bin_maps_are_summed_in_one_pass() {
    use blob_loss::loss::sums::{InstanceSumsSpec, SumInput, instance_sums};
    let device = device();
    let (rows, voxels, bins) = (3, 9_001, 41);
    let mut rng = Rng(5);
    let x: Vec<f32> = (0..rows * voxels).map(|_| rng.below(1_000) as f32 / 80.0 - 6.0).collect();
    // Runs of one bin (cells) and stretches of bin 0, different in each map.
    let mut ids = |run: u64| -> Vec<i32> {
        let mut ids = Vec::with_capacity(rows * voxels);
        while ids.len() < rows * voxels {
            let id = if rng.below(4) == 0 { 0 } else { rng.below(bins as u64) as i32 };
            ids.extend(std::iter::repeat_n(id, 1 + rng.below(run) as usize));
        }
        ids.truncate(rows * voxels);
        ids
    };
    let (a, b) = (ids(40), ids(300));
    let spec = InstanceSumsSpec::new(SumInput::Logits, bins)
        .with_foreground_end(21)
        .with_squares(true)
        .with_cross_entropy(true);
    let int = |ids: Vec<i32>, r: usize| Tensor::<2, Int>::from_data(TensorData::new(ids, [r, voxels]), &device);
    let values = || Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, voxels]), &device).require_grad();
    // A made-up upstream gradient: a weighted sum of every statistic of every bin.
    let weigh = |sums: Tensor<3>| {
        let n = sums.shape().num_elements();
        let w: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.4).collect();
        (sums.cast(FloatDType::F32).reshape([n]) * Tensor::<1>::from_data(TensorData::new(w, [n]), &device)).sum()
    };
    let flat = |t: Tensor<3>| t.cast(FloatDType::F32).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let (xa, xb, x2) = (values(), values(), values());
    let (sa, sb) = (
        instance_sums(xa.clone(), int(a.clone(), rows), spec).unwrap(),
        instance_sums(xb.clone(), int(b.clone(), rows), spec).unwrap(),
    );
    let both = instance_sums(x2.clone(), int([a, b].concat(), 2 * rows), spec.with_maps(2)).unwrap();
    assert_eq!(both.dims(), [2 * rows, spec.statistics(), bins]);
    let separate = [flat(sa.clone()), flat(sb.clone())].concat();
    for (i, (p, q)) in flat(both.clone()).iter().zip(&separate).enumerate() {
        assert!((p - q).abs() <= 1e-5 * q.abs().max(1.0), "sum {i}: {p} vs {q}");
    }
    let half = rows * spec.statistics() * bins;
    let grad = |x: &Tensor<2>, loss: Tensor<1>| to_vec(x.grad(&loss.backward()).unwrap().reshape([-1]));
    let (ga, gb) = (grad(&xa, weigh(sa)), grad(&xb, weigh(sb)));
    // The two maps' halves weighed as the separate calls were.
    let n = 2 * half;
    let w: Vec<f32> = (0..n).map(|i| ((i % half * 37) % 11) as f32 / 11.0 - 0.4).collect();
    let weighted =
        (both.cast(FloatDType::F32).reshape([n]) * Tensor::<1>::from_data(TensorData::new(w, [n]), &device)).sum();
    let g2 = grad(&x2, weighted);
    let scale = ga.iter().chain(&gb).fold(0f32, |m, g| m.max(g.abs()));
    for (i, ((g, a), b)) in g2.iter().zip(&ga).zip(&gb).enumerate() {
        assert!((g - (a + b)).abs() <= 1e-5 * scale, "gradient {i}: {g} vs {} + {}", a, b);
    }
    let wrong = instance_sums(values(), Tensor::<2, Int>::zeros([rows, voxels], &device), spec.with_maps(2));
    assert!(matches!(wrong, Err(Error::ShapeMismatch { .. })), "{wrong:?}");
}

#[test]
fn large_volumes_do_not_drift() {
    // 2 x 128^3 voxels at p = 0.25: f32 running sums would drift visibly; f64 bins do not.
    let device = base_device();
    let n = 128 * 128 * 128;
    let p = Tensor::<5>::full([2, 1, 128, 128, 128], 0.25, &device);
    let mut ids = vec![0i32; 2 * n];
    ids[..n / 2].iter_mut().for_each(|i| *i = 1);
    let y = Tensor::<5, Int>::from_data(TensorData::new(ids, vec![2, 1, 128, 128, 128]), &device);
    for engine in ENGINES {
        let config = BlobLossConfig::new().with_activation(Activation::None).with_engine(engine);
        let parts = config.init().forward_parts(p.clone(), y.clone());
        // Element 0: tp = n/2 * 0.25, sum p = n * 0.25, sum t = n/2. Element 1: no target.
        let n = 128.0 * 128.0 * 128.0;
        let dice0 = 1.0 - (2.0 * n / 8.0 + 1e-5) / (n / 4.0 + n / 2.0 + 1e-5);
        let dice1 = 1.0 - 1e-5 / (n / 4.0 + 1e-5);
        close(scalar(parts.global), (dice0 + dice1) / 2.0, 1e-6, "global");
        close(scalar(parts.blob), dice0, 1e-6, "blob");
    }
}

/// The unreduced terms reduce to the loss: the global mean, and the blob mean over channels with
/// instances, then elements with any.
#[test]
fn unreduced_parts_reduce_to_the_loss() {
    let device = device();
    let shape = [3, 2, 6, 7];
    let (logits, ids) = random_batch(&mut Rng(77), &shape, 4, 0.3);
    let (x, y) = tensors(shape, &logits, &ids, &device);
    let loss = BlobLossConfig::new().init();
    let parts = loss.forward_parts(x.clone(), y.clone());
    let u = loss.forward_no_reduction(x, y);
    close(scalar(u.global.clone().mean()), scalar(parts.global), 1e-6, "global");
    let blob: Vec<f32> = u.blob.into_data().convert::<f32>().try_to_vec().unwrap();
    let counts: Vec<f32> = u.instances.into_data().convert::<f32>().try_to_vec().unwrap();
    let (mut sum, mut elements) = (0.0, 0);
    for b in 0..3 {
        let with: Vec<usize> = (0..2).filter(|&c| counts[b * 2 + c] > 0.0).collect();
        if !with.is_empty() {
            sum += with.iter().map(|&c| f64::from(blob[b * 2 + c])).sum::<f64>() / with.len() as f64;
            elements += 1;
        }
    }
    assert!(elements > 0 && counts.iter().all(|c| c.fract() == 0.0));
    close(sum / f64::from(elements), scalar(parts.blob), 1e-6, "blob");
}

/// A batch without instances or predictions: every member of the family is finite, the instance
/// and false-positive terms are 0, and the gradient is finite.
#[test]
fn empty_batches_give_finite_losses_for_the_whole_family() {
    let device = device();
    let shape = [2, 1, 5, 6];
    let logits = vec![-3.0f32; 60];
    let ids = vec![0i32; 60];
    for config in [
        BlobLossConfig::new().with_partition(Partition::Voronoi).with_false_positive_weight(1.0),
        BlobLossConfig::new()
            .with_partition(Partition::Voronoi)
            .with_blob_size_weighting(true)
            .with_global_size_weighting(true)
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0)),
        BlobLossConfig::new().with_ignore_negative_ids(true).with_batch_global(true).with_false_positive_weight(1.0),
    ] {
        let (x, _) = tensors(shape, &logits, &ids, &device);
        let parts = config.init().forward_parts(x.clone(), targets_for(&config, shape, &ids, &device));
        assert_eq!((scalar(parts.blob.clone()), scalar(parts.false_positive.clone())), (0.0, 0.0), "{config:?}");
        assert!(scalar(parts.total.clone()).is_finite(), "{config:?}");
        let grad = to_vec(x.grad(&parts.total.backward()).unwrap().reshape([-1]));
        assert!(grad.iter().all(|g| g.is_finite()), "{config:?}");
    }
}

/// The categorical cross-entropy of softmax outputs: `-log p_y` per voxel (the class of a voxel
/// is the channel whose map holds it, channel 0 where none does), averaged over the voxels that
/// are not ignored, and its gradient `(softmax - onehot) / N`; by hand in f64.
#[test]
fn categorical_cross_entropy_by_hand() {
    let device = device();
    let shape = [2, 3, 5];
    let mut rng = Rng(90);
    let logits: Vec<f32> = (0..30).map(|_| (rng.unit() * 6.0 - 3.0) as f32).collect();
    // Classes per voxel (element-major); -1 ignored in channel 1 of one voxel.
    let classes = [[0, 1, 2, 2, 0], [1, 1, 0, 2, 1]];
    let mut ids = vec![0i32; 30];
    for b in 0..2 {
        for v in 0..5 {
            let c = classes[b][v];
            if c > 0 {
                ids[(b * 3 + c) * 5 + v] = 7;
            }
        }
    }
    ids[(3 + 1) * 5 + 4] = -1; // element 1, voxel 4: ignored
    let config = |weight: f64| {
        BlobLossConfig::new()
            .with_activation(Activation::Softmax)
            .with_global_weight(1.0)
            .with_blob_weight(0.0)
            .with_ignore_negative_ids(true)
            .with_categorical_cross_entropy(weight)
    };
    let run = |weight: f64| {
        let (x, y) = tensors(shape, &logits, &ids, &device);
        let global = config(weight).init().forward_parts(x.clone(), y).global;
        let value = scalar(global.clone());
        (value, to_vec(x.grad(&global.backward()).unwrap().reshape([-1])))
    };
    let ((with, g_with), (without, g_without)) = (run(0.7), run(0.0));
    let (mut ce, mut kept) = (0.0, 0.0);
    let mut expected_grad = vec![0.0; 30];
    for b in 0..2 {
        for v in 0..5 {
            if b == 1 && v == 4 {
                continue;
            }
            let x: Vec<f64> = (0..3).map(|c| f64::from(logits[(b * 3 + c) * 5 + v])).collect();
            let norm = x.iter().map(|x| x.exp()).sum::<f64>();
            let y = classes[b][v];
            ce -= x[y] - norm.ln();
            kept += 1.0;
            for c in 0..3 {
                expected_grad[(b * 3 + c) * 5 + v] = x[c].exp() / norm - f64::from(u8::from(c == y));
            }
        }
    }
    close(with - without, 0.7 * ce / kept, 1e-5, "categorical cross-entropy");
    for (i, ((a, b), e)) in g_with.iter().zip(&g_without).zip(&expected_grad).enumerate() {
        let e = 0.7 * e / kept;
        assert!((f64::from(a - b) - e).abs() <= 1e-5, "voxel {i}: {} vs {e}", a - b);
    }
    let err = BlobLossConfig::new().with_categorical_cross_entropy(1.0).try_init().unwrap_err();
    assert!(err.to_string().contains("softmax"), "{err}");
}

/// The new maps and settings: missing cells, cells of another shape or naming no instance, bad
/// thresholds, false-positive components of another shape.
#[test]
fn voronoi_and_false_positive_inputs_are_checked() {
    let device = base_device();
    let x = Tensor::<4>::zeros([1, 1, 2, 2], &device);
    let y = Tensor::<4, Int>::from_ints([[[[1, 0], [0, 0]]]], &device);
    let voronoi = BlobLossConfig::new().with_partition(Partition::Voronoi).init();
    let err = voronoi.try_forward(x.clone(), y.clone()).unwrap_err();
    assert!(err.to_string().contains("give the cells"), "{err}");
    let wrong_shape = LossTargets::new(y.clone()).with_cells(Tensor::<4, Int>::zeros([1, 1, 2, 3], &device));
    let err = voronoi.try_forward(x.clone(), wrong_shape).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "cells vs outputs", .. }), "{err}");
    let unknown = LossTargets::new(y.clone()).with_cells(Tensor::<4, Int>::from_ints([[[[1, 1], [2, 1]]]], &device));
    let err = voronoi.try_forward(x.clone(), unknown).unwrap_err();
    assert!(err.to_string().contains("cell id 2 names no instance"), "{err}");
    for threshold in [0.0, 1.0, f64::NAN] {
        let err = BlobLossConfig::new().with_false_positive_threshold(threshold).try_init().unwrap_err();
        assert!(err.to_string().contains("false_positive_threshold"), "{err}");
        let err = false_positive_components(x.clone(), y.clone(), Activation::Sigmoid, threshold).unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
    }
    let err = BlobLossConfig::new().with_class_weights(Some(vec![1.0, f64::NAN])).try_init().unwrap_err();
    assert!(err.to_string().contains("class_weights"), "{err}");
    let two_weights = BlobLossConfig::new().with_class_weights(Some(vec![1.0, 2.0])).init();
    let err = two_weights.try_forward(x.clone(), y.clone()).unwrap_err();
    assert!(err.to_string().contains("class_weights has 2 values for 1 channels"), "{err}");
    let no_background = BlobLossConfig::new().with_include_background(false).init();
    let err = no_background.try_forward(x.clone(), y.clone()).unwrap_err();
    assert!(err.to_string().contains("include_background"), "{err}");
    let err = BlobLossConfig::new().with_max_size_weight(0.5).try_init().unwrap_err();
    assert!(err.to_string().contains("max_size_weight"), "{err}");
    let err = BlobLossConfig::new()
        .with_partition(Partition::Reference)
        .with_blob_size_weighting(true)
        .try_init()
        .unwrap_err();
    assert!(err.to_string().contains("blob_size_weighting"), "{err}");
    let err = BlobLossConfig::new().with_false_positive_weight(-1.0).try_init().unwrap_err();
    assert!(err.to_string().contains("false_positive_weight"), "{err}");
    let fp = BlobLossConfig::new().with_false_positive_weight(1.0).init();
    let wrong_shape = LossTargets::new(y.clone()).with_false_positives(Tensor::<4, Int>::zeros([1, 2, 2, 2], &device));
    let err = fp.try_forward(x.clone(), wrong_shape).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let negative =
        LossTargets::new(y.clone()).with_false_positives(Tensor::<4, Int>::from_ints([[[[0, -3], [1, 0]]]], &device));
    let err = fp.try_forward(x.clone(), negative).unwrap_err();
    assert!(err.to_string().contains("negative false-positive component id -3"), "{err}");
    let negative = LossTargets::new(y.clone()).with_cells(Tensor::<4, Int>::from_ints([[[[1, -1], [1, 1]]]], &device));
    let err = voronoi.try_forward(x.clone(), negative).unwrap_err();
    assert!(err.to_string().contains("negative cell id -1"), "{err}");
    let err = false_positive_components(x, Tensor::<4, Int>::zeros([1, 1, 1, 2], &device), Activation::Sigmoid, 0.5)
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

/// Components given by the caller that cover instance or ignored voxels: those voxels are left out
/// of the components (they are no false positives), as if the map had 0 there.
#[test]
fn given_components_keep_to_the_background() {
    let device = device();
    let x = Tensor::<4>::from_floats([[[[2.0, 1.0, -1.0, 3.0, 0.5, 1.5]]]], &device);
    let y = Tensor::<4, Int>::from_ints([[[[1, 0, 0, -1, 0, 0]]]], &device);
    for partition in [Partition::Exclude, Partition::Voronoi] {
        let loss = BlobLossConfig::new()
            .with_partition(partition)
            .with_ignore_negative_ids(true)
            .with_false_positive_weight(1.0)
            .init();
        let targets = |components: [i32; 6]| {
            let targets = LossTargets::new(y.clone())
                .with_false_positives(Tensor::<4, Int>::from_ints([[[components]]], &device));
            match partition {
                Partition::Voronoi => {
                    targets.with_cells(Tensor::<4, Int>::from_ints([[[[1, 1, 1, 1, 1, 0]]]], &device))
                }
                _ => targets,
            }
        };
        let spilled = loss.forward_parts(x.clone(), targets([2, 2, 0, 5, 5, 0]));
        let clean = loss.forward_parts(x.clone(), targets([0, 2, 0, 0, 5, 0]));
        close(scalar(spilled.false_positive), scalar(clean.false_positive.clone()), 1e-6, "false-positive term");
        close(scalar(spilled.total), scalar(clean.total), 1e-6, "total");
        // Two components, each sum(p^2) / sum(p) = its one voxel's p.
        let p = |x: f64| 1.0 / (1.0 + (-x).exp());
        close(scalar(clean.false_positive), (p(1.0) + p(0.5)) / 2.0, 1e-5, &format!("{partition:?}"));
    }
}

/// The CC loss by hand: two instances in a 1 x 8 row, each scored on its own cell only, so a
/// false positive costs only the cell it falls in.
#[test]
fn voronoi_cells_score_each_instance_on_its_cell() {
    let device = device();
    // Instance 1 at voxel 0, instance 2 at voxel 7; cells split the row 0..4 | 4..8.
    let p = [0.9f32, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0, 0.8];
    let ids = [1, 0, 0, 0, 0, 0, 0, 2];
    let cells = [1, 1, 1, 1, 2, 2, 2, 2];
    let x = Tensor::<3>::from_data(TensorData::new(p.to_vec(), vec![1, 1, 8]), &device);
    let int = |v: &[i32]| Tensor::<3, Int>::from_data(TensorData::new(v.to_vec(), vec![1, 1, 8]), &device);
    let targets = LossTargets::new(int(&ids)).with_cells(int(&cells));
    let base = BaseLossConfig::new().with_bce_weight(1.0).with_smooth_nr(0.0).with_smooth_dr(1e-9);
    let config =
        BlobLossConfig::new().with_activation(Activation::None).with_partition(Partition::Voronoi).with_blob_loss(base);
    let blob = scalar(config.init().forward_parts(x, targets).blob);
    let ce = |q: f64| -q.max(1e-12).ln();
    // Cell 1: Dice 2 * 0.9 / (0.9 + 0.6 + 1), cross-entropy over its 4 voxels / 4.
    let cell1 = 1.0 - 1.8 / 2.5 + (ce(0.9) + 2.0 * ce(1.0) + ce(0.4)) / 4.0;
    // Cell 2: the false positive at voxel 3 is not here.
    let cell2 = 1.0 - 1.6 / 1.8 + (3.0 * ce(1.0) + ce(0.8)) / 4.0;
    close(blob, (cell1 + cell2) / 2.0, 1e-6, "CC loss");
}

/// The prediction term by hand: a false-positive component's value is `sum p^2 / sum p`, and its
/// gradient `p / sum p` per voxel, the same total pull for a small and a large component.
#[test]
fn false_positive_term_pushes_every_component_alike() {
    let device = device();
    // A true component (voxels 0-1, on instance 1), a 1-voxel and a 3-voxel false positive.
    let p = [0.9f32, 0.7, 0.0, 0.6, 0.0, 0.8, 0.6, 0.6];
    let ids = [1, 0, 0, 0, 0, 0, 0, 0];
    let x = Tensor::<3>::from_data(TensorData::new(p.to_vec(), vec![1, 1, 8]), &device).require_grad();
    let y = Tensor::<3, Int>::from_data(TensorData::new(ids.to_vec(), vec![1, 1, 8]), &device);
    let config = BlobLossConfig::new()
        .with_activation(Activation::None)
        .with_global_weight(0.0)
        .with_blob_weight(0.0)
        .with_false_positive_weight(1.0);
    let parts = config.init().forward_parts(x.clone(), y);
    let big = (0.64 + 0.36 + 0.36) / 2.0;
    close(scalar(parts.false_positive.clone()), (0.6 + big) / 2.0, 1e-6, "false-positive term");
    let grad = to_vec(x.grad(&parts.total.backward()).unwrap().reshape([-1]));
    let expected = [0.0, 0.0, 0.0, 0.5, 0.0, 0.8 / 4.0, 0.6 / 4.0, 0.6 / 4.0];
    for (i, (g, e)) in grad.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-6, "voxel {i}: {g} vs {e}");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let device = base_device();
    let loss = BlobLossConfig::new().init();
    let x = Tensor::<4>::zeros([1, 1, 2, 2], &device);
    let err = loss.try_forward(x.clone(), Tensor::<4, Int>::zeros([1, 1, 2, 3], &device)).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let err =
        loss.try_forward(Tensor::<2>::zeros([2, 2], &device), Tensor::<2, Int>::zeros([2, 2], &device)).unwrap_err();
    assert!(matches!(err, Error::UnsupportedRank { ndim: 2, .. }), "{err}");
    // Zero-sized axes (found by the fuzzer: burn reads a 0 in a reshape target as "keep").
    for shape in [[1, 1, 0, 0], [0, 1, 2, 2], [2, 0, 2, 2], [1, 1, 3, 0]] {
        let empty = Tensor::<4>::zeros(shape, &device);
        let err = loss.try_forward(empty, Tensor::<4, Int>::zeros(shape, &device)).unwrap_err();
        assert!(err.to_string().contains("have no voxels"), "{err}");
    }
    let negative = Tensor::<4, Int>::from_ints([[[[0, -3], [1, 2]]]], &device);
    assert_eq!(loss.try_forward(x.clone(), negative).unwrap_err(), Error::NegativeInstanceId { value: -3 });
    // Four instances need five bins.
    let four = Tensor::<4, Int>::from_ints([[[[4, 1 << 30], [1, 2]]]], &device);
    let err = BlobLossConfig::new().with_max_bins(4).init().try_forward(x.clone(), four).unwrap_err();
    assert_eq!(err, Error::TooManyInstances { bins: 5, bytes: 80, limit: 4 });
    assert!(err.to_string().contains("80 bytes"), "{err}");

    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        let err = BlobLossConfig::new().with_blob_weight(bad).try_init().unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        let err =
            BlobLossConfig::new().with_global_loss(BaseLossConfig::new().with_smooth_dr(bad)).try_init().unwrap_err();
        assert!(err.to_string().contains("global_loss.smooth_dr"), "{err}");
    }
    let off = BaseLossConfig::new().with_dice_weight(0.0);
    assert!(BlobLossConfig::new().with_blob_loss(off).try_init().is_err());
    // A zero Dice denominator is possible (an empty channel at probability 0): refused; with BCE
    // alone the smoothing term is unused and 0 is fine.
    let zero_dr = BaseLossConfig::new().with_smooth_dr(0.0);
    let err = BlobLossConfig::new().with_blob_loss(zero_dr.clone()).try_init().unwrap_err();
    assert!(err.to_string().contains("blob_loss.smooth_dr must be > 0"), "{err}");
    let bce_only = zero_dr.with_dice_weight(0.0).with_bce_weight(1.0);
    assert!(BlobLossConfig::new().with_blob_loss(bce_only).try_init().is_ok());
    let err =
        BlobLossConfig::new().with_activation(Activation::Softmax).with_partition(Partition::Reference).try_init();
    assert!(err.unwrap_err().to_string().contains("Activation::Sigmoid"));
}

#[test]
#[should_panic(expected = "negative instance id -1")]
fn forward_panics_with_the_error_message() {
    let device = base_device();
    let x = Tensor::<3>::zeros([1, 1, 2], &device);
    BlobLossConfig::new().init().forward(x, Tensor::<3, Int>::from_ints([[[0, -1]]], &device));
}

#[test]
fn instance_maps_convert_from_ndarray() {
    use blob_loss::components::{Connectivity, label_batch};
    use blob_loss::loss::instances_to_tensor;
    let masks = ndarray::Array4::<u8>::from_shape_fn((1, 1, 4, 4), |(_, _, y, x)| u8::from((x + y) % 3 == 0));
    let batch = label_batch(masks.view(), Connectivity::Four).unwrap();
    let t: Tensor<4, Int> = instances_to_tensor(batch.labels.view(), &base_device()).unwrap();
    let back: Vec<i64> = t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
    assert_eq!(back, batch.labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    let err = instances_to_tensor::<3, _, _>(batch.labels.view(), &base_device()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedRank { .. }));
    let big = ndarray::Array3::<u32>::from_elem((1, 1, 1), u32::MAX);
    assert!(matches!(
        instances_to_tensor::<3, _, _>(big.view(), &base_device()),
        Err(Error::InstanceIdTooLarge { .. })
    ));
    // Every integer type: values kept, negative ids refused, ids beyond i32 refused.
    let wide = ndarray::array![[[0i64, 5, i64::from(i32::MAX)]]];
    let t: Tensor<3, Int> = instances_to_tensor(wide.view(), &base_device()).unwrap();
    assert_eq!(t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(), [0, 5, i64::from(i32::MAX)]);
    let small = ndarray::array![[[0u8, 255]]];
    assert!(instances_to_tensor::<3, _, _>(small.view(), &base_device()).is_ok());
    let negative = ndarray::array![[[0i16, -3]]];
    let err = instances_to_tensor::<3, _, _>(negative.view(), &base_device()).unwrap_err();
    assert_eq!(err, Error::NegativeInstanceId { value: -3 });
    let huge = ndarray::array![[[u64::MAX]]];
    let err = instances_to_tensor::<3, _, _>(huge.view(), &base_device()).unwrap_err();
    assert!(matches!(err, Error::InstanceIdTooLarge { .. }), "{err}");
}

/// Any weighted combination of the parts back-propagates: `(a global + b blob).backward()` is
/// the gradient of the loss configured with weights `a` and `b`, on both engines.
#[test]
fn weighted_parts_backpropagate_like_the_total() {
    let device = device();
    let shape = [2, 2, 6, 7];
    let (logits, ids) = random_batch(&mut Rng(61), &shape, 4, 0.3);
    for engine in ENGINES {
        for (a, b) in [(0.3, 1.7), (1.0, 0.0), (0.0, 2.5)] {
            let (x, y) = tensors(shape, &logits, &ids, &device);
            let parts = BlobLossConfig::new().with_engine(engine).init().forward_parts(x.clone(), y.clone());
            let weighted = parts.global * a + parts.blob * b;
            let g_parts = to_vec(x.grad(&weighted.backward()).expect("both parts reach the logits").reshape([-1]));
            let (x2, y2) = tensors(shape, &logits, &ids, &device);
            let total = BlobLossConfig::new()
                .with_engine(engine)
                .with_global_weight(a)
                .with_blob_weight(b)
                .init()
                .forward(x2.clone(), y2);
            let g_total = to_vec(x2.grad(&total.backward()).unwrap().reshape([-1]));
            let scale = g_total.iter().fold(1e-6f32, |m, g| m.max(g.abs()));
            assert!(g_parts.iter().any(|&g| g != 0.0), "{engine:?} {a} {b}: no gradient");
            for (i, (p, t)) in g_parts.iter().zip(&g_total).enumerate() {
                assert!((p - t).abs() <= 1e-5 * scale, "{engine:?} {a} {b}: gradient {i}: {p} vs {t}");
            }
        }
    }
}

/// Saturated logits: finite values and gradients, and the gradient of the cross-entropy is
/// `sigmoid(x) - t` there and at `x = 0`.
#[test]
fn infinite_and_zero_logits_give_finite_exact_gradients() {
    let device = device();
    let inf = f32::INFINITY;
    let logits = [inf, -inf, 0.0, inf, -inf, 0.0, 0.0, 3.0];
    let ids = [0, 0, 0, 1, 1, 1, 2, 2];
    // Cross-entropy alone in the global term: d/dx = (sigmoid(x) - t) / N * 2 (alpha) / rows.
    let bce = BaseLossConfig::new().with_dice_weight(0.0).with_bce_weight(1.0);
    let config = BlobLossConfig::new().with_global_loss(bce).with_blob_weight(0.0);
    let (x, y) = tensors([1, 1, 8], &logits, &ids, &device);
    let total = config.init().forward(x.clone(), y);
    let value = scalar(total.clone());
    assert!(value.is_finite(), "{value}");
    let grad = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
    let expected = [1.0, 0.0, 0.5, 0.0, -1.0, -0.5, -0.5, 1.0 / (1.0 + (-3f32).exp()) - 1.0].map(|g| g * 2.0 / 8.0);
    for (i, (g, e)) in grad.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-6, "voxel {i}: {g} vs {e}");
    }
    // Every configuration, both engines: finite.
    for config in
        configs_both_paths().into_iter().filter(|c| c.activation == Activation::Sigmoid && c.class_weights.is_none())
    {
        let (x, _) = tensors([1, 1, 8], &logits, &ids, &device);
        let total = config.init().forward(x.clone(), targets_for(&config, [1, 1, 8], &ids, &device));
        assert!(scalar(total.clone()).is_finite(), "{config:?}");
        let grad = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
        assert!(grad.iter().all(|g| g.is_finite()), "{config:?}: {grad:?}");
    }
}

/// Probabilities of exactly 0 and 1 (`Activation::None`): finite values and gradients.
#[test]
fn certain_probabilities_give_finite_gradients() {
    let device = device();
    let p = [0.0, 1.0, 0.0, 1.0, 0.5, 1.0];
    let ids = [0, 0, 1, 1, 2, 2];
    let base = BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(1.0).with_squared_denominator(true);
    for engine in ENGINES {
        let config = BlobLossConfig::new()
            .with_activation(Activation::None)
            .with_engine(engine)
            .with_global_loss(base.clone())
            .with_blob_loss(base.clone());
        let (x, y) = tensors([1, 1, 6], &p, &ids, &device);
        let total = config.init().forward(x.clone(), y);
        assert!(scalar(total.clone()).is_finite(), "{engine:?}");
        let grad = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
        assert!(grad.iter().all(|g| g.is_finite()), "{engine:?}: {grad:?}");
        // A certain, wrong voxel is still pushed the right way.
        assert!(grad[1] > 0.0 && grad[2] < 0.0, "{engine:?}: {grad:?}");
    }
}

/// Outputs in f64, f16 and bf16 (where the backend has them): the loss and the gradient come back
/// in the outputs' dtype, with the value of the f32 loss.
#[test]
fn every_float_dtype_works() {
    let device = device();
    let shape = [2, 1, 9, 10];
    let (logits, ids) = random_batch(&mut Rng(71), &shape, 5, 0.3);
    for config in [
        BlobLossConfig::new(),
        BlobLossConfig::new().with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true)),
        BlobLossConfig::new().with_activation(Activation::Softmax),
    ] {
        for engine in ENGINES {
            let loss = config.clone().with_engine(engine).init();
            let (x, y) = tensors(shape, &logits, &ids, &device);
            let reference = scalar(loss.forward(x, y));
            for (dtype, tolerance) in [(FloatDType::F64, 1e-5), (FloatDType::F16, 2e-2), (FloatDType::BF16, 5e-2)] {
                if !device.supports_dtype(dtype) {
                    continue;
                }
                let (x, y) = tensors(shape, &logits, &ids, &device);
                let x = x.cast(dtype).detach().require_grad();
                let total = loss.forward(x.clone(), y);
                assert_eq!(total.dtype(), DType::from(dtype));
                close(
                    f64::from(total.clone().cast(FloatDType::F32).into_scalar::<f32>()),
                    reference,
                    tolerance,
                    &format!("{dtype:?} {engine:?}"),
                );
                let grad = x.grad(&total.backward()).unwrap();
                assert_eq!(grad.dtype(), DType::from(dtype), "{engine:?}");
                let grad = to_vec(grad.cast(FloatDType::F32).reshape([-1]));
                assert!(grad.iter().all(|g| g.is_finite()), "{dtype:?} {engine:?} {config:?}: {grad:?}");
            }
        }
    }
}

/// Ids up to 10^9 with few distinct values give the loss of the same instances numbered 1..=K.
#[test]
fn huge_sparse_ids_equal_compact_ones() {
    let device = device();
    let shape = [2, 1, 8, 8];
    let (logits, ids) = random_batch(&mut Rng(81), &shape, 4, 0.3);
    // Ids are 1 + 3k; map k to a large, order-preserving value.
    let huge: Vec<i64> = ids.iter().map(|&i| if i == 0 { 0 } else { 1_000_000_000 - 7 * i64::from(i) }).collect();
    for engine in ENGINES {
        let loss = BlobLossConfig::new().with_engine(engine).init();
        let (x, y) = tensors(shape, &logits, &ids, &device);
        let compact = loss.forward(x.clone(), y);
        let g_compact = to_vec(x.grad(&compact.backward()).unwrap().reshape([-1]));
        let (x, _) = tensors(shape, &logits, &ids, &device);
        let y = Tensor::<4, Int>::from_data(TensorData::new(huge.clone(), shape.to_vec()), (&device, DType::I64));
        let total = loss.forward(x.clone(), y);
        let g = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
        close(scalar(total), scalar(compact), 1e-6, "huge vs compact ids");
        for (a, b) in g.iter().zip(&g_compact) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }
}

/// Instances are sets of voxels: renaming them with a random bijection of the ids changes
/// neither the loss nor its gradient, on either engine, with and without BCE.
#[test]
fn permuting_instance_ids_changes_nothing() {
    let device = device();
    let shape = [3, 2, 6, 7];
    let mut rng = Rng(23);
    let (logits, ids) = random_batch(&mut rng, &shape, 12, 0.3);
    let mut distinct: Vec<i32> = ids.iter().copied().filter(|&i| i > 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // Fisher-Yates over the ids that occur.
    let mut shuffled = distinct.clone();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    assert_ne!(shuffled, distinct, "the permutation should move something");
    let rename = |i: i32| if i == 0 { 0 } else { shuffled[distinct.binary_search(&i).unwrap()] };
    let renamed: Vec<i32> = ids.iter().map(|&i| rename(i)).collect();
    for engine in ENGINES {
        for blob_loss in [BaseLossConfig::new(), BaseLossConfig::new().with_bce_weight(1.0)] {
            let loss = BlobLossConfig::new().with_engine(engine).with_blob_loss(blob_loss).init();
            let run = |ids: &[i32]| {
                let (x, y) = tensors(shape, &logits, ids, &device);
                let total = loss.forward(x.clone(), y);
                let gradient = to_vec(x.grad(&total.backward()).unwrap().reshape([-1]));
                (scalar(total), gradient)
            };
            let ((a, ga), (b, gb)) = (run(&ids), run(&renamed));
            close(a, b, 1e-6, "loss with permuted ids");
            let scale = ga.iter().fold(0f32, |m, g| m.max(g.abs())).max(1e-6);
            for (x, y) in ga.iter().zip(&gb) {
                assert!((x - y).abs() <= 1e-5 * scale, "{x} vs {y}");
            }
        }
    }
}

/// NaN outputs are an error on the CPU backend, where reading the loss costs nothing.
#[cfg(not(feature = "wgpu"))]
#[test]
fn nan_outputs_are_an_error_on_the_cpu() {
    let device = base_device();
    let x = Tensor::<3>::from_floats([[[0.0, f32::NAN, 1.0]]], &device);
    let y = Tensor::<3, Int>::from_ints([[[0, 1, 1]]], &device);
    for engine in ENGINES {
        let err = BlobLossConfig::new().with_engine(engine).init().try_forward(x.clone(), y.clone()).unwrap_err();
        assert!(matches!(err, Error::NonFiniteLoss { .. }), "{err}");
    }
}

/// The gradient in f64 against central differences in f64, tight, on the CPU backend.
#[cfg(not(feature = "wgpu"))]
#[test]
fn f64_gradient_matches_finite_differences_tightly() {
    let device = Device::flex();
    let shape = [2usize, 2, 3, 4];
    let (logits, ids) = random_batch(&mut Rng(90), &shape, 3, 0.5);
    let logits: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    let f64_tensor = |values: &[f64], device: &Device| {
        Tensor::<4>::from_data(TensorData::new(values.to_vec(), shape.to_vec()), (device, DType::F64))
    };
    for config in [
        BlobLossConfig::new(),
        BlobLossConfig::new()
            .with_global_loss(BaseLossConfig::new().with_bce_weight(1.0).with_squared_denominator(true))
            .with_blob_loss(BaseLossConfig::new().with_bce_weight(1.0).with_tversky_weight(1.0)),
        BlobLossConfig::new().with_activation(Activation::Softmax),
    ] {
        let loss = config.init();
        let y = |device: &Device| Tensor::<4, Int>::from_data(TensorData::new(ids.clone(), shape.to_vec()), device);
        let ad = device.clone().autodiff();
        let x = f64_tensor(&logits, &ad).require_grad();
        let total = loss.forward(x.clone(), y(&ad));
        let grad: Vec<f64> = x.grad(&total.backward()).unwrap().into_data().try_to_vec().unwrap();
        let eval = |values: &[f64]| loss.forward(f64_tensor(values, &device), y(&device)).into_scalar::<f64>();
        let eps = 1e-6;
        for i in 0..logits.len() {
            let (mut plus, mut minus) = (logits.clone(), logits.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let fd = (eval(&plus) - eval(&minus)) / (2.0 * eps);
            assert!((fd - grad[i]).abs() <= 1e-7 + 1e-6 * fd.abs(), "voxel {i}: fd {fd} vs autodiff {}", grad[i]);
        }
    }
}
