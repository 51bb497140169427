//! TIFF masks (`.tif`, `.tiff`) in and instance maps out: one page is a 2D mask `[y, x]`, several
//! pages of one size a 3D stack `[page, y, x]`. The output keeps the page count, the resolution
//! tags and the image description (where ImageJ keeps the z spacing and units).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{Rational, TiffEncoder, colortype};
use tiff::tags::{ResolutionUnit, Tag};

use crate::volume::{Geometry, Volume};

/// ResolutionUnit, and XResolution and YResolution as (numerator, denominator).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Resolution {
    unit: u16,
    x: (u32, u32),
    y: (u32, u32),
}

/// What of a TIFF's geometry the output copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TiffGeometry {
    /// The resolution tags, when the input has them.
    resolution: Option<Resolution>,
    /// ImageDescription of the first page.
    description: Option<String>,
}

/// Reads a single-channel integer mask: one page (2D) or a stack of pages (3D).
pub fn read(path: &Path) -> Result<Volume, String> {
    let file = File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let mut decoder = Decoder::new(BufReader::new(file)).map_err(|e| format!("unreadable TIFF: {e}"))?;
    let geometry = TiffGeometry { resolution: resolution(&mut decoder), description: description(&mut decoder) };
    let (width, height) = decoder.dimensions().map_err(|e| format!("unreadable TIFF: {e}"))?;
    let mut pages = Vec::new();
    loop {
        if decoder.dimensions().map_err(|e| format!("unreadable TIFF: {e}"))? != (width, height) {
            return Err(format!("page {} is not {width} x {height} like the first", pages.len()));
        }
        match decoder.colortype().map_err(|e| format!("unreadable TIFF: {e}"))? {
            ColorType::Gray(_) => {}
            other => return Err(format!("a {other:?} image: only single-channel masks can be labelled")),
        }
        pages.push(integers(decoder.read_image().map_err(|e| format!("unreadable TIFF data: {e}"))?)?);
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(|e| format!("unreadable TIFF page: {e}"))?;
    }
    let shape = if pages.len() == 1 {
        vec![height as usize, width as usize]
    } else {
        vec![pages.len(), height as usize, width as usize]
    };
    let data = ArrayD::from_shape_vec(IxDyn(&shape), pages.concat()).map_err(|e| e.to_string())?;
    Ok(Volume { data, geometry: Geometry::Tiff(geometry) })
}

/// Writes labels as 16-bit pages when `count` fits, else 32-bit.
pub fn write(path: &Path, labels: ArrayViewD<'_, u32>, count: usize, geometry: &TiffGeometry) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let file = File::create(path).map_err(|e| fail(&e))?;
    let mut encoder = TiffEncoder::new(BufWriter::new(file)).map_err(|e| fail(&e))?;
    let pages = if labels.ndim() == 2 { labels.insert_axis(Axis(0)) } else { labels };
    let (height, width) = (pages.shape()[1] as u32, pages.shape()[2] as u32);
    for page in pages.outer_iter() {
        let page = page.as_standard_layout();
        let values = page.as_slice().expect("standard layout");
        if count <= usize::from(u16::MAX) {
            let values: Vec<u16> = values.iter().map(|&l| l as u16).collect();
            let mut image = encoder.new_image::<colortype::Gray16>(width, height).map_err(|e| fail(&e))?;
            tag(image.encoder(), geometry).map_err(|e| fail(&e))?;
            image.write_data(&values).map_err(|e| fail(&e))?;
        } else {
            let mut image = encoder.new_image::<colortype::Gray32>(width, height).map_err(|e| fail(&e))?;
            tag(image.encoder(), geometry).map_err(|e| fail(&e))?;
            image.write_data(values).map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

fn tag<W: std::io::Write + std::io::Seek, K: tiff::encoder::TiffKind>(
    directory: &mut tiff::encoder::DirectoryEncoder<'_, W, K>,
    geometry: &TiffGeometry,
) -> tiff::TiffResult<()> {
    if let Some(Resolution { unit, x, y }) = geometry.resolution {
        let unit = ResolutionUnit::from_u16(unit).unwrap_or(ResolutionUnit::None);
        directory.write_tag(Tag::ResolutionUnit, unit.to_u16())?;
        directory.write_tag(Tag::XResolution, Rational { n: x.0, d: x.1 })?;
        directory.write_tag(Tag::YResolution, Rational { n: y.0, d: y.1 })?;
    }
    if let Some(description) = &geometry.description {
        directory.write_tag(Tag::ImageDescription, description.as_str())?;
    }
    Ok(())
}

fn integers(result: DecodingResult) -> Result<Vec<i64>, String> {
    fn widen<T: Into<i64>>(values: Vec<T>) -> Vec<i64> {
        values.into_iter().map(Into::into).collect()
    }
    Ok(match result {
        DecodingResult::U8(v) => widen(v),
        DecodingResult::U16(v) => widen(v),
        DecodingResult::U32(v) => widen(v),
        DecodingResult::I8(v) => widen(v),
        DecodingResult::I16(v) => widen(v),
        DecodingResult::I32(v) => widen(v),
        DecodingResult::I64(v) => v,
        DecodingResult::U64(v) => v
            .into_iter()
            .map(|x| i64::try_from(x).map_err(|_| format!("value {x} does not fit i64")))
            .collect::<Result<_, _>>()?,
        _ => return Err("not an integer mask (floating-point TIFF samples)".into()),
    })
}

fn resolution<R: std::io::Read + std::io::Seek>(decoder: &mut Decoder<R>) -> Option<Resolution> {
    let unit = decoder.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok().flatten().unwrap_or(2);
    let mut rational = |tag| match decoder.find_tag(tag).ok().flatten()? {
        tiff::decoder::ifd::Value::Rational(n, d) => Some((n, d)),
        _ => None,
    };
    Some(Resolution { unit, x: rational(Tag::XResolution)?, y: rational(Tag::YResolution)? })
}

fn description<R: std::io::Read + std::io::Seek>(decoder: &mut Decoder<R>) -> Option<String> {
    match decoder.find_tag(Tag::ImageDescription).ok().flatten()? {
        tiff::decoder::ifd::Value::Ascii(text) => Some(text),
        _ => None,
    }
}
