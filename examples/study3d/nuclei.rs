//! The `nuclei3d` data set: stardist's small annotated 3D nuclei stack, vendored in
//! `data/nuclei3d/` (see its README: stardist's loader calls it "synthetic nuclei").
//!
//! The stack (31 x 61 x 57) is cut to a multiple of 4 along z and y and of 16 along x (28 x 60 x
//! 48), then split along x: the first half trains (random crops, with flips), the next quarter
//! validates, the last quarter tests. The annotated ids are the instances (labelled multi-label
//! aware, so touching nuclei stay apart).

use std::path::Path;

use ndarray::s;

use crate::lesions::Volume;
use crate::tiff_stack::read_stack;
use crate::train::Splits;

/// Reads `img3d.tif` and `mask3d.tif` from `folder` and splits them.
pub fn load(folder: &Path) -> Result<Splits, String> {
    let image = read_stack(&folder.join("img3d.tif"))?;
    let target = read_stack(&folder.join("mask3d.tif"))?;
    if image.dim() != target.dim() {
        return Err(format!("image {:?} and mask {:?} differ in shape", image.dim(), target.dim()));
    }
    let (d, h, w) = image.dim();
    let (d, h, w) = (d / 4 * 4, h / 4 * 4, w / 16 * 16);
    if d < 16 || h < 16 || w < 32 {
        return Err(format!("a {:?} stack is too small to split", image.dim()));
    }
    let n = image.len() as f64;
    let mean = image.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (image.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
    let part = |x: std::ops::Range<usize>| Volume {
        image: image.slice(s![..d, ..h, x.clone()]).mapv(|v| ((f64::from(v) - mean) / std) as f32),
        target: target.slice(s![..d, ..h, x]).mapv(u32::from),
    };
    Ok(Splits { train: vec![part(0..w / 2)], validation: vec![part(w / 2..3 * w / 4)], test: vec![part(3 * w / 4..w)] })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use blob_loss::components::{Connectivity, label};

    #[test]
    fn the_vendored_stack_splits_into_three_parts_with_nuclei() {
        let splits = super::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nuclei3d")).unwrap();
        for part in [&splits.train[0], &splits.validation[0], &splits.test[0]] {
            let (d, h, w) = part.image.dim();
            assert!(d % 4 == 0 && h % 4 == 0 && w % 4 == 0, "{:?}", part.image.dim());
            assert!(label(part.target.view(), Connectivity::TwentySix).unwrap().count >= 3);
        }
        assert_eq!(splits.train[0].image.dim().2, 2 * splits.test[0].image.dim().2);
    }
}
