//! The `lesions` data set: MS-lesion-like 3D volumes generated in code, seeded.
//!
//! The recipe, per `size`^3 volume (isotropic voxels, FLAIR-like intensities in `[0, 1]`):
//! - **Tissue**: a brain ellipsoid (radii 0.40-0.46 of the side, its surface wobbling by a few
//!   voxels) with a cortex shell (grey matter, 0.62) around white matter (0.50), two ventricles of
//!   cerebrospinal fluid (0.15) beside the centre, and nothing (0.02) outside the brain.
//! - **Lesions**, hyperintense: [`SMALL_LESIONS`] small ones (volume log-uniform in 3-300 voxels,
//!   ellipsoids of random aspect; 25% periventricular, drawn 0.5-4.5 voxels outside a ventricle, so
//!   they cluster and some touch; the rest in deep white matter) at contrast 0.12-0.35 above white
//!   matter, and [`LARGE_LESIONS`] large confluent ones (3-6 overlapping ellipsoids of radius 2.5-5
//!   around a periventricular centre) at contrast 0.35-0.45. Ellipsoids that touch merge into one
//!   component, as confluent lesions do.
//! - **Partial volume**: each voxel is sampled at 2x2x2 points; its lesion occupancy blends the
//!   lesion into the tissue, and the voxel is lesion in the ground truth when the occupancy is at
//!   least one half. A small lesion whose ground truth rasterises to fewer than 3 voxels is drawn
//!   again.
//! - **Scanner**: a smooth multiplicative bias field (1 + three random waves longer than the
//!   volume, +-12% in all), then Gaussian noise of standard deviation [`NOISE`].
//!
//! The instances are the 26-connected components of the ground truth. [`statistics`] measures
//! what a set holds (EXPERIMENTS.md quotes it): the small lesions are most of the instances and a
//! minority of the lesion voxels.

use std::f64::consts::{PI, TAU};

use blob_loss::components::{Connectivity, label};
use ndarray::Array3;

use crate::rng::Rng;

/// Standard deviation of the voxel noise.
pub const NOISE: f64 = 0.09;
/// Small lesions per volume: `SMALL_LESIONS.0..=SMALL_LESIONS.1`.
pub const SMALL_LESIONS: (u64, u64) = (16, 36);
/// Large confluent lesions per volume.
pub const LARGE_LESIONS: (u64, u64) = (1, 2);

const CSF: f64 = 0.15;
const WHITE_MATTER: f64 = 0.50;
const GREY_MATTER: f64 = 0.62;
const OUTSIDE: f64 = 0.02;

/// One volume: the image and its binary ground truth, both `[z, y, x]`.
#[derive(Clone, Debug)]
pub struct Volume {
    /// FLAIR-like intensities.
    pub image: Array3<f32>,
    /// 1 for lesion voxels, else 0.
    pub target: Array3<u32>,
}

/// `count` volumes of `size`^3 voxels drawn from `seed`.
pub fn volumes(count: usize, size: usize, seed: u64) -> Vec<Volume> {
    let mut rng = Rng(seed);
    (0..count).map(|_| volume(size, &mut rng)).collect()
}

/// An axis-aligned ellipsoid, in voxel coordinates `[z, y, x]`.
#[derive(Clone, Copy, Debug)]
struct Ellipsoid {
    center: [f64; 3],
    radii: [f64; 3],
}

impl Ellipsoid {
    /// Its normalised radius at `p`: below 1 inside.
    fn reach(&self, p: [f64; 3]) -> f64 {
        (0..3).map(|d| ((p[d] - self.center[d]) / self.radii[d]).powi(2)).sum::<f64>().sqrt()
    }

    /// The voxel box that holds it, clipped to the volume.
    fn bounds(&self, size: usize) -> [std::ops::Range<usize>; 3] {
        std::array::from_fn(|d| {
            let lo = (self.center[d] - self.radii[d] - 1.0).floor().max(0.0) as usize;
            let hi = ((self.center[d] + self.radii[d] + 2.0).ceil().max(0.0) as usize).min(size);
            lo..hi.max(lo)
        })
    }
}

/// The brain's tissue layout.
struct Anatomy {
    brain: Ellipsoid,
    ventricles: [Ellipsoid; 2],
    /// The brain surface's wobble: (frequency, phase) per axis.
    wobble: [(f64, f64); 3],
}

impl Anatomy {
    fn random(size: usize, rng: &mut Rng) -> Self {
        let s = size as f64;
        let c = (s - 1.0) / 2.0;
        let jitter = |rng: &mut Rng| (rng.unit() - 0.5) * 0.04 * s;
        let brain = Ellipsoid {
            center: [c + jitter(rng), c + jitter(rng), c + jitter(rng)],
            radii: std::array::from_fn(|_| s * (0.40 + 0.06 * rng.unit())),
        };
        let half_gap = s * (0.06 + 0.03 * rng.unit());
        let ventricle = |side: f64, rng: &mut Rng| Ellipsoid {
            center: [brain.center[0] - 0.03 * s, brain.center[1], brain.center[2] + side * half_gap],
            radii: [s * (0.09 + 0.04 * rng.unit()), s * (0.18 + 0.06 * rng.unit()), s * (0.035 + 0.02 * rng.unit())],
        };
        let ventricles = [ventricle(-1.0, rng), ventricle(1.0, rng)];
        let wobble = std::array::from_fn(|_| (0.15 + 0.2 * rng.unit(), TAU * rng.unit()));
        Self { brain, ventricles, wobble }
    }

    /// The normalised brain radius at `p`, with the wobble (below 1 inside the brain).
    fn brain_reach(&self, p: [f64; 3]) -> f64 {
        let wobble: f64 = (0..3).map(|d| (self.wobble[d].0 * p[d] + self.wobble[d].1).sin()).sum::<f64>() / 3.0;
        self.brain.reach(p) * (1.0 + 0.04 * wobble)
    }

    fn tissue(&self, p: [f64; 3]) -> f64 {
        let r = self.brain_reach(p);
        if r > 1.0 {
            OUTSIDE
        } else if self.ventricles.iter().any(|v| v.reach(p) <= 1.0) {
            CSF
        } else if r > 0.86 {
            GREY_MATTER
        } else {
            WHITE_MATTER
        }
    }

    /// Deep white matter: inside the white matter and off the ventricles.
    fn is_white_matter(&self, p: [f64; 3]) -> bool {
        self.brain_reach(p) < 0.8 && self.ventricles.iter().all(|v| v.reach(p) > 1.3)
    }

    /// A point 0.5-4.5 voxels outside a ventricle's surface, in a random direction.
    fn periventricular(&self, rng: &mut Rng) -> [f64; 3] {
        let ventricle = self.ventricles[rng.below(2) as usize];
        let (theta, phi) = ((2.0 * rng.unit() - 1.0).acos(), TAU * rng.unit());
        let direction = [theta.cos(), theta.sin() * phi.sin(), theta.sin() * phi.cos()];
        let gap = 0.5 + 4.0 * rng.unit();
        std::array::from_fn(|d| {
            let r = ventricle.radii[d];
            ventricle.center[d] + direction[d] * r * (1.0 + gap / r)
        })
    }
}

/// One lesion: the ellipsoids whose union it is, and its contrast above white matter.
struct Lesion {
    parts: Vec<Ellipsoid>,
    contrast: f64,
}

fn volume(size: usize, rng: &mut Rng) -> Volume {
    let anatomy = Anatomy::random(size, rng);
    let large = LARGE_LESIONS.0 + rng.below(LARGE_LESIONS.1 - LARGE_LESIONS.0 + 1);
    let small = SMALL_LESIONS.0 + rng.below(SMALL_LESIONS.1 - SMALL_LESIONS.0 + 1);
    let mut occupancy = Array3::<f64>::zeros((size, size, size));
    let mut contrast = Array3::<f64>::zeros((size, size, size));
    let mut target = Array3::<u32>::zeros((size, size, size));
    for index in 0..large + small {
        // A small lesion that rasterises to fewer than 3 voxels is drawn again (a few tries).
        for _ in 0..20 {
            let lesion = if index < large { large_lesion(&anatomy, rng) } else { small_lesion(&anatomy, size, rng) };
            let voxels = rasterise(&lesion, size, &mut occupancy, &mut contrast, &mut target, index >= large);
            if voxels >= 3 {
                break;
            }
        }
    }
    let bias = BiasField::random(size, rng);
    let image = Array3::from_shape_fn((size, size, size), |(z, y, x)| {
        let p = [z as f64, y as f64, x as f64];
        let occupied = occupancy[[z, y, x]];
        let tissue = anatomy.tissue(p);
        let lesion = WHITE_MATTER + contrast[[z, y, x]];
        let clean = tissue * (1.0 - occupied) + lesion * occupied;
        (clean * bias.at(p) + NOISE * normal(rng)) as f32
    });
    Volume { image, target }
}

fn small_lesion(anatomy: &Anatomy, size: usize, rng: &mut Rng) -> Lesion {
    let volume = (3f64.ln() + (300f64.ln() - 3f64.ln()) * rng.unit()).exp();
    let radius = (3.0 * volume / (4.0 * PI)).cbrt();
    let aspect: [f64; 3] = std::array::from_fn(|_| 0.75 + 0.5 * rng.unit());
    let norm = aspect.iter().product::<f64>().cbrt();
    let center = if rng.unit() < 0.25 {
        anatomy.periventricular(rng)
    } else {
        let mut p = [0.0; 3];
        for _ in 0..100 {
            p = std::array::from_fn(|_| rng.unit() * (size - 1) as f64);
            if anatomy.is_white_matter(p) {
                break;
            }
        }
        p
    };
    Lesion {
        parts: vec![Ellipsoid { center, radii: aspect.map(|a| radius * a / norm) }],
        contrast: 0.12 + 0.23 * rng.unit(),
    }
}

fn large_lesion(anatomy: &Anatomy, rng: &mut Rng) -> Lesion {
    let center = anatomy.periventricular(rng);
    let parts = (0..3 + rng.below(4))
        .map(|_| Ellipsoid {
            center: std::array::from_fn(|d| center[d] + (rng.unit() - 0.5) * 7.0),
            radii: std::array::from_fn(|_| 2.5 + 2.5 * rng.unit()),
        })
        .collect();
    Lesion { parts, contrast: 0.35 + 0.1 * rng.unit() }
}

/// Adds a lesion's partial-volume occupancy (2x2x2 samples per voxel) and contrast; marks the
/// voxels it occupies at least half as ground truth. Returns how many voxels it marked; a small
/// lesion that marks fewer than 3 is undone (`undo_small`) so that it can be drawn again.
fn rasterise(
    lesion: &Lesion,
    size: usize,
    occupancy: &mut Array3<f64>,
    contrast: &mut Array3<f64>,
    target: &mut Array3<u32>,
    undo_small: bool,
) -> usize {
    let mut touched = Vec::new();
    for part in &lesion.parts {
        let [zs, ys, xs] = part.bounds(size);
        for z in zs.clone() {
            for y in ys.clone() {
                for x in xs.clone() {
                    touched.push([z, y, x]);
                }
            }
        }
    }
    touched.sort_unstable();
    touched.dedup();
    let mut marked = Vec::new();
    let mut updates = Vec::new();
    for &[z, y, x] in &touched {
        let mut inside = 0;
        for sample in 0..8 {
            let offset = |bit: usize| if sample >> bit & 1 == 1 { 0.25 } else { -0.25 };
            let p = [z as f64 + offset(0), y as f64 + offset(1), x as f64 + offset(2)];
            inside += lesion.parts.iter().any(|e| e.reach(p) <= 1.0) as usize;
        }
        if inside > 0 {
            updates.push(([z, y, x], inside as f64 / 8.0));
            if inside >= 4 {
                marked.push([z, y, x]);
            }
        }
    }
    if undo_small && marked.len() < 3 {
        return marked.len();
    }
    for (voxel, share) in updates {
        if share > occupancy[voxel] {
            occupancy[voxel] = share;
            contrast[voxel] = lesion.contrast;
        }
    }
    for voxel in &marked {
        target[*voxel] = 1;
    }
    marked.len()
}

/// A smooth multiplicative field: 1 plus three random plane waves longer than the volume.
struct BiasField {
    waves: Vec<([f64; 3], f64)>,
}

impl BiasField {
    fn random(size: usize, rng: &mut Rng) -> Self {
        let waves = (0..3)
            .map(|_| {
                let (theta, phi) = ((2.0 * rng.unit() - 1.0).acos(), TAU * rng.unit());
                let k = TAU / (size as f64 * (1.5 + 1.5 * rng.unit()));
                ([k * theta.cos(), k * theta.sin() * phi.sin(), k * theta.sin() * phi.cos()], TAU * rng.unit())
            })
            .collect();
        Self { waves }
    }

    fn at(&self, p: [f64; 3]) -> f64 {
        1.0 + 0.04
            * self.waves.iter().map(|(k, phase)| (k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + phase).sin()).sum::<f64>()
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.unit();
    (-2.0 * u.ln()).sqrt() * (TAU * rng.unit()).cos()
}

/// What a set of volumes holds: its instances (26-connected) by size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    /// Volumes measured.
    pub volumes: usize,
    /// Instance sizes in voxels, every volume's.
    pub sizes: Vec<u64>,
}

impl Statistics {
    /// Instances per volume.
    pub fn instances_per_volume(&self) -> f64 {
        self.sizes.len() as f64 / self.volumes.max(1) as f64
    }

    /// The share of the instances of at most `limit` voxels.
    pub fn share_of_instances(&self, limit: u64) -> f64 {
        self.sizes.iter().filter(|&&s| s <= limit).count() as f64 / self.sizes.len().max(1) as f64
    }

    /// The share of the lesion voxels that instances of at most `limit` voxels hold.
    pub fn share_of_voxels(&self, limit: u64) -> f64 {
        let small: u64 = self.sizes.iter().filter(|&&s| s <= limit).sum();
        small as f64 / self.sizes.iter().sum::<u64>().max(1) as f64
    }
}

/// Measures `volumes`' instances (26-connected components of the ground truth).
pub fn statistics(volumes: &[Volume]) -> Statistics {
    let mut sizes = Vec::new();
    for volume in volumes {
        let labeling = label(volume.target.view(), Connectivity::TwentySix).expect("3D mask");
        let mut counts = vec![0u64; labeling.count + 1];
        labeling.labels.iter().for_each(|&l| counts[l as usize] += 1);
        sizes.extend_from_slice(&counts[1..]);
    }
    Statistics { volumes: volumes.len(), sizes }
}

#[cfg(test)]
mod tests {
    use super::{statistics, volumes};

    #[test]
    fn the_recipe_makes_many_small_lesions_holding_little_of_the_volume() {
        let set = volumes(12, 48, 11);
        let stats = statistics(&set);
        assert!((8.0..=26.0).contains(&stats.instances_per_volume()), "{} per volume", stats.instances_per_volume());
        assert!(stats.sizes.iter().all(|&s| s >= 1));
        assert!(stats.share_of_instances(100) > 0.6, "small instances: {}", stats.share_of_instances(100));
        assert!(stats.share_of_voxels(100) < 0.5, "small voxels: {}", stats.share_of_voxels(100));
        assert!(stats.sizes.iter().any(|&s| s <= 10), "some lesions of at most 10 voxels");
        assert!(stats.sizes.iter().any(|&s| s > 300), "some large confluent lesions");
        for volume in &set {
            assert!(volume.image.iter().all(|v| v.is_finite()));
            assert!(volume.target.iter().all(|&t| t <= 1));
            // Lesions are brighter than the brain around them.
            let (mut lesion, mut n, mut rest, mut m) = (0.0, 0, 0.0, 0);
            for (&v, &t) in volume.image.iter().zip(&volume.target) {
                if t == 1 {
                    (lesion, n) = (lesion + f64::from(v), n + 1);
                } else if v > 0.3 {
                    (rest, m) = (rest + f64::from(v), m + 1);
                }
            }
            assert!(lesion / n as f64 > rest / m as f64 + 0.1);
        }
    }

    #[test]
    fn volumes_are_seeded() {
        let (a, b) = (volumes(2, 32, 5), volumes(2, 32, 5));
        assert_eq!(a[1].image, b[1].image);
        assert_eq!(a[1].target, b[1].target);
        assert_ne!(volumes(1, 32, 6)[0].target, a[0].target);
    }
}
