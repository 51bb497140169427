//! The `nuclei` data set: one 512 x 512 fluorescence image with 125 annotated nuclei, vendored in
//! `data/nuclei/` (see its README for the source, licence and citation).
//!
//! The top half trains (overlapping crops, with flips), the bottom-left quadrant validates and the
//! bottom-right quadrant tests. The annotated instance ids are used as they are: labelling the
//! binarised mask would merge touching nuclei, so the batcher labels the id map multi-label aware.

use std::path::Path;

use ndarray::{Array2, Axis, s};

use crate::data::Sample;
use crate::tiff_stack::read_stack;

/// The three parts of the image.
pub struct Split {
    /// Overlapping `crop` x `crop` tiles of the top half, each in its four flips.
    pub train: Vec<Sample>,
    /// The bottom-left quadrant.
    pub validation: Vec<Sample>,
    /// The bottom-right quadrant.
    pub test: Vec<Sample>,
}

/// Reads `img2d.tif` and `mask2d.tif` from `folder` and splits them.
pub fn load(folder: &Path, crop: usize) -> Result<Split, String> {
    let image = read_u16(&folder.join("img2d.tif"))?;
    let target = read_u16(&folder.join("mask2d.tif"))?;
    if image.dim() != target.dim() || image.nrows() < 2 * crop || image.ncols() < crop {
        return Err(format!("image {:?} and mask {:?} do not fit crops of {crop}", image.dim(), target.dim()));
    }
    let n = image.len() as f64;
    let mean = image.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (image.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
    let image = image.mapv(|v| ((f64::from(v) - mean) / std) as f32);
    let target = target.mapv(u32::from);
    let (h, w) = image.dim();
    let (half_h, half_w) = (h / 2 / 4 * 4, w / 2 / 4 * 4);
    let part = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| Sample {
        image: image.slice(s![rows.clone(), cols.clone()]).to_owned(),
        target: target.slice(s![rows, cols]).to_owned(),
    };
    let stride = crop / 2;
    let mut train = Vec::new();
    for y in (0..=half_h - crop).step_by(stride) {
        for x in (0..=w - crop).step_by(stride) {
            train.extend(flips(&part(y..y + crop, x..x + crop)));
        }
    }
    Ok(Split {
        train,
        validation: vec![part(h - half_h..h, 0..half_w)],
        test: vec![part(h - half_h..h, w - half_w..w)],
    })
}

/// The four flips of a sample (identity, vertical, horizontal, both): cheap augmentation.
fn flips(sample: &Sample) -> [Sample; 4] {
    let flip = |axes: &[usize]| {
        let (mut image, mut target) = (sample.image.view(), sample.target.view());
        for &axis in axes {
            image.invert_axis(Axis(axis));
            target.invert_axis(Axis(axis));
        }
        Sample { image: image.to_owned(), target: target.to_owned() }
    };
    [flip(&[]), flip(&[0]), flip(&[1]), flip(&[0, 1])]
}

/// The first page of a single-channel 8- or 16-bit TIFF as `u16`.
fn read_u16(path: &Path) -> Result<Array2<u16>, String> {
    Ok(read_stack(path)?.index_axis_move(Axis(0), 0))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_vendored_image_splits_into_disjoint_parts() {
        let split = super::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nuclei"), 64).unwrap();
        assert_eq!(split.train.len(), 7 * 15 * 4, "64-pixel crops every 32 pixels of the top half, 4 flips");
        for part in [&split.validation[0], &split.test[0]] {
            assert_eq!(part.image.dim(), (256, 256));
            let mut ids: Vec<u32> = part.target.iter().copied().filter(|&id| id != 0).collect();
            ids.sort_unstable();
            ids.dedup();
            assert!(ids.len() >= 20, "{} nuclei", ids.len());
        }
        let mean = split.test[0].image.mean().unwrap();
        assert!(mean.is_finite() && mean.abs() < 1.0);
    }
}
