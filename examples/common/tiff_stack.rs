//! Single-channel 8- or 16-bit TIFF images read as `u16` stacks, for the examples' vendored data.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use ndarray::Array3;
use tiff::decoder::{Decoder, DecodingResult};

/// Every page of a single-channel 8- or 16-bit TIFF, as `[page, y, x]`; the pages must be of one
/// size.
pub fn read_stack(path: &Path) -> Result<Array3<u16>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut decoder = Decoder::new(BufReader::new(File::open(path).map_err(|e| fail(&e))?)).map_err(|e| fail(&e))?;
    let (width, height) = decoder.dimensions().map_err(|e| fail(&e))?;
    if width == 0 || height == 0 {
        return Err(fail(&"an empty image"));
    }
    let mut pages = Vec::new();
    loop {
        if decoder.dimensions().map_err(|e| fail(&e))? != (width, height) {
            return Err(fail(&"pages of different sizes"));
        }
        match decoder.read_image().map_err(|e| fail(&e))? {
            DecodingResult::U16(v) => pages.extend(v),
            DecodingResult::U8(v) => pages.extend(v.into_iter().map(u16::from)),
            _ => return Err(fail(&"expected an 8- or 16-bit single-channel image")),
        }
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(|e| fail(&e))?;
    }
    let depth = pages.len() / (width as usize * height as usize);
    Array3::from_shape_vec((depth, height as usize, width as usize), pages).map_err(|e| fail(&e))
}
