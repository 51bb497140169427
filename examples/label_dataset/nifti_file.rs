//! NIfTI-1 masks (`.nii`, `.nii.gz`) in and instance maps out, with the input's header.
//!
//! The nifti crate returns volumes indexed `[x, y, z]` with `x` fastest on disk (Fortran order).
//! The masks are labelled through the reversed view `[z, y, x]`, so labels are numbered in on-disk
//! order, and written back as `[x, y, z]` with the input's header (voxel sizes, qform and sform,
//! orientation, description): only the data type changes.

use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};

use crate::volume::Volume;

/// Reads an integer mask of 2 or 3 dimensions.
pub fn read(path: &Path) -> Result<Volume, String> {
    let object = ReaderOptions::new().read_file(path).map_err(|e| format!("unreadable NIfTI: {e}"))?;
    let header = object.header().clone();
    let datatype = header.data_type().map_err(|e| format!("unreadable NIfTI header: {e}"))?;
    if !is_integer(datatype) {
        return Err(format!("not an integer mask (NIfTI data type {datatype:?})"));
    }
    if header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0) {
        return Err(format!(
            "scaled values (scl_slope {}, scl_inter {}): not a mask",
            header.scl_slope, header.scl_inter
        ));
    }
    let mut data: ArrayD<i64> =
        object.into_volume().into_ndarray().map_err(|e| format!("unreadable NIfTI data: {e}"))?;
    // Trailing axes of length 1 (a [x, y, z, 1] "4D" mask) are dropped; a true 4D series is refused.
    while data.ndim() > 3 && data.shape()[data.ndim() - 1] == 1 {
        let last = ndarray::Axis(data.ndim() - 1);
        data = data.index_axis_move(last, 0);
    }
    if !(2..=3).contains(&data.ndim()) {
        return Err(format!("{}D NIfTI volume {:?}: only 2D and 3D masks can be labelled", data.ndim(), data.shape()));
    }
    Ok(Volume { data: data.reversed_axes(), geometry: crate::volume::Geometry::Nifti(Box::new(header)) })
}

/// Writes labels (in the reversed `[z, y, x]` order of [`read`]) with the input's header, as
/// `u16` when `count` fits, else `u32`.
pub fn write(path: &Path, labels: ArrayViewD<'_, u32>, count: usize, header: &NiftiHeader) -> Result<(), String> {
    let labels = labels.reversed_axes();
    let writer = WriterOptions::new(path).reference_header(header);
    let written = if count <= usize::from(u16::MAX) {
        writer.write_nifti(&labels.mapv(|l| l as u16))
    } else {
        writer.write_nifti(&labels)
    };
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn is_integer(datatype: NiftiType) -> bool {
    use NiftiType::*;
    matches!(datatype, Uint8 | Int8 | Uint16 | Int16 | Uint32 | Int32 | Uint64 | Int64)
}
