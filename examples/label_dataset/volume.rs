//! The file formats: which files are masks, where their instance maps go, reading and writing.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayViewD};

use crate::tiff_file::TiffGeometry;
use crate::{nifti_file, tiff_file};

/// A mask read from disk, as a 2D or 3D array in the order it is labelled in (on-disk order).
pub struct Volume {
    /// The mask values.
    pub data: ArrayD<i64>,
    /// What the output copies from the input.
    pub geometry: Geometry,
}

/// The input's header, copied into the output.
pub enum Geometry {
    /// The whole NIfTI header.
    Nifti(Box<nifti::NiftiHeader>),
    /// Resolution tags and description.
    Tiff(TiffGeometry),
}

/// The extensions read, longest first so `.nii.gz` wins over `.gz`.
const EXTENSIONS: [&str; 4] = [".nii.gz", ".nii", ".tiff", ".tif"];

/// The mask extension of `path` (`.nii.gz`, `.nii`, `.tiff`, `.tif`, any case), if it has one.
pub fn extension(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    EXTENSIONS.into_iter().find(|e| name.ends_with(e) && name.len() > e.len())
}

/// `scan_01.nii.gz` -> `scan_01{suffix}.nii.gz`, next to the input, in the same format.
pub fn output_path(path: &Path, suffix: &str) -> Option<PathBuf> {
    let extension = extension(path)?;
    let name = path.file_name()?.to_str()?;
    let (stem, ext) = name.split_at(name.len() - extension.len());
    Some(path.with_file_name(format!("{stem}{suffix}{ext}")))
}

/// Whether `path` is itself an output (its stem ends with `suffix`), to be left alone.
pub fn is_output(path: &Path, suffix: &str) -> bool {
    let (Some(extension), Some(name)) = (extension(path), path.file_name().and_then(|n| n.to_str())) else {
        return false;
    };
    name[..name.len() - extension.len()].ends_with(suffix)
}

/// Reads a mask of any supported format.
pub fn read(path: &Path) -> Result<Volume, String> {
    match extension(path) {
        Some(".nii" | ".nii.gz") => nifti_file::read(path),
        Some(_) => tiff_file::read(path),
        None => Err("not a .nii, .nii.gz, .tif or .tiff file".into()),
    }
}

/// Writes labels (in the order of [`Volume::data`]) with the geometry of the input.
pub fn write(path: &Path, labels: ArrayViewD<'_, u32>, count: usize, geometry: &Geometry) -> Result<(), String> {
    match geometry {
        Geometry::Nifti(header) => nifti_file::write(path, labels, count, header),
        Geometry::Tiff(geometry) => tiff_file::write(path, labels, count, geometry),
    }
}
