//! The `synthetic` data set: instance-imbalanced images generated in code.
//!
//! Every image has one or two large bright ellipses (radius 10% to 20% of the image side: hundreds
//! to thousands of pixels) and 5 to 30 small dim ones (2 to 40 pixels), on a textured, noisy
//! background. The small ones
//! have lower contrast, so a loss that rewards volume can ignore them and still score well.

use ndarray::Array2;

use crate::data::Sample;
use crate::rng::Rng;

/// Standard deviation of the pixel noise; objects add 1.0 (large) or 0.5 to 0.8 (small).
const NOISE: f64 = 0.35;

/// `count` images of `size` x `size` pixels drawn from `seed`.
pub fn images(count: usize, size: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng(seed);
    (0..count).map(|_| image(size, &mut rng)).collect()
}

fn image(size: usize, rng: &mut Rng) -> Sample {
    let mut mask = Array2::<u32>::zeros((size, size));
    let mut signal = Array2::<f64>::zeros((size, size));
    let large = 1 + (rng.unit() < 0.5) as usize;
    let small = 5 + (rng.unit() * 26.0) as usize;
    let mut placed = 0;
    let mut tries = 0;
    while placed < large + small && tries < 1000 {
        tries += 1;
        let is_large = placed < large;
        let (radius, contrast) = if is_large {
            (size as f64 * (0.1 + 0.1 * rng.unit()), 1.0)
        } else {
            // Areas from about 2 to 40 pixels.
            (0.8 + 2.8 * rng.unit(), 0.5 + 0.3 * rng.unit())
        };
        let ellipse = Ellipse::random(size, radius, rng);
        let pixels = ellipse.pixels(size);
        let area_ok = is_large || (2..=40).contains(&pixels.len());
        // Keep a one-pixel gap to every other object, so each is its own 8-connected component.
        let free = pixels.iter().all(|&(y, x)| neighbourhood(y, x, size).all(|(v, u)| mask[[v, u]] == 0));
        if area_ok && free {
            for &(y, x) in &pixels {
                mask[[y, x]] = 1;
                signal[[y, x]] = contrast;
            }
            placed += 1;
        }
    }
    let background = Texture::random(rng);
    let image = Array2::from_shape_fn((size, size), |(y, x)| {
        (signal[[y, x]] + background.at(y, x) + NOISE * normal(rng)) as f32
    });
    Sample { image, target: mask }
}

/// A rotated ellipse with a random centre, axis ratio and angle.
struct Ellipse {
    center: (f64, f64),
    radii: (f64, f64),
    angle: f64,
}

impl Ellipse {
    fn random(size: usize, radius: f64, rng: &mut Rng) -> Self {
        let margin = radius + 1.0;
        let span = size as f64 - 2.0 * margin;
        let aspect = 0.7 + 0.6 * rng.unit();
        Self {
            center: (margin + span * rng.unit(), margin + span * rng.unit()),
            radii: (radius * aspect, radius / aspect),
            angle: std::f64::consts::PI * rng.unit(),
        }
    }

    fn pixels(&self, size: usize) -> Vec<(usize, usize)> {
        let reach = self.radii.0.max(self.radii.1).ceil() as isize + 1;
        let (cy, cx) = self.center;
        let (sin, cos) = self.angle.sin_cos();
        let mut pixels = Vec::new();
        for y in (cy as isize - reach).max(0)..=(cy as isize + reach).min(size as isize - 1) {
            for x in (cx as isize - reach).max(0)..=(cx as isize + reach).min(size as isize - 1) {
                let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                let (u, v) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                if (u / self.radii.0).powi(2) + (v / self.radii.1).powi(2) <= 1.0 {
                    pixels.push((y as usize, x as usize));
                }
            }
        }
        pixels
    }
}

/// The 3x3 neighbourhood of a pixel, clipped to the image.
fn neighbourhood(y: usize, x: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = y.saturating_sub(1)..=(y + 1).min(size - 1);
    rows.flat_map(move |v| (x.saturating_sub(1)..=(x + 1).min(size - 1)).map(move |u| (v, u)))
}

/// A smooth background: a few random plane waves.
struct Texture {
    waves: Vec<(f64, f64, f64, f64)>,
}

impl Texture {
    fn random(rng: &mut Rng) -> Self {
        let waves = (0..4)
            .map(|_| {
                let angle = std::f64::consts::TAU * rng.unit();
                let frequency = 0.05 + 0.25 * rng.unit();
                (frequency * angle.cos(), frequency * angle.sin(), std::f64::consts::TAU * rng.unit(), 0.12)
            })
            .collect();
        Self { waves }
    }

    fn at(&self, y: usize, x: usize) -> f64 {
        self.waves
            .iter()
            .map(|&(fy, fx, phase, amplitude)| amplitude * (fy * y as f64 + fx * x as f64 + phase).sin())
            .sum()
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.unit();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.unit()).cos()
}

#[cfg(test)]
mod tests {
    use blob_loss::components::{Connectivity, label};

    use super::images;

    #[test]
    fn images_are_instance_imbalanced_as_specified() {
        for size in [64, 96] {
            for sample in images(20, size, 7) {
                let labeling = label(sample.target.view(), Connectivity::Eight).unwrap();
                let mut sizes = vec![0usize; labeling.count + 1];
                labeling.labels.iter().for_each(|&l| sizes[l as usize] += 1);
                let (small, large): (Vec<usize>, Vec<usize>) = sizes[1..].iter().partition(|&&s| s <= 40);
                assert!((1..=2).contains(&large.len()), "{} large objects", large.len());
                assert!((5..=30).contains(&small.len()), "{} small objects", small.len());
                assert!(small.iter().all(|&s| s >= 2));
                assert!(large.iter().all(|&s| s >= 100), "large objects: {large:?}");
                assert!(sample.image.iter().all(|v| v.is_finite()));
            }
        }
        assert_eq!(images(2, 64, 3)[1].image, images(2, 64, 3)[1].image, "seeded");
        assert_ne!(images(1, 64, 3)[0].image, images(1, 64, 4)[0].image);
    }
}
