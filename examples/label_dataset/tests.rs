//! End-to-end tests on files the tests write: every format, geometry kept, numbering, per-file
//! errors, no overwriting unless asked.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use blob_loss::components::{Connectivity, label};
use ndarray::{Array2, Array3, ArrayD, Axis};
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};
use tiff::encoder::{Rational, TiffEncoder, colortype};
use tiff::tags::{ResolutionUnit, Tag};

use super::*;

/// A sparse two-class mask of any shape (`x` varies with the last index).
fn mask(shape: (usize, usize, usize), seed: u64) -> Array3<i16> {
    let mut state = seed;
    Array3::from_shape_fn(shape, |_| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        // About 8% foreground, under the 26-connected percolation threshold, in two classes.
        match state >> 58 {
            0..=58 => 0,
            59..=61 => 1,
            _ => 2,
        }
    })
}

fn header() -> NiftiHeader {
    NiftiHeader {
        pixdim: [1.0, 0.5, 0.7, 2.0, 1.0, 0.0, 0.0, 0.0],
        sform_code: 2,
        qform_code: 1,
        srow_x: [0.5, 0.0, 0.0, -10.0],
        srow_y: [0.0, 0.7, 0.0, 20.0],
        srow_z: [0.0, 0.0, 2.0, -30.0],
        quatern_b: 0.25,
        xyzt_units: 2,
        descrip: b"a test mask".to_vec(),
        ..NiftiHeader::default()
    }
}

fn read_nifti(path: &Path) -> (ArrayD<u32>, NiftiHeader) {
    let object = ReaderOptions::new().read_file(path).unwrap();
    let header = object.header().clone();
    (object.into_volume().into_ndarray::<u32>().unwrap(), header)
}

fn write_tiff_pages<C: colortype::ColorType>(path: &Path, pages: &[Vec<C::Inner>], width: u32, height: u32)
where
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut encoder = TiffEncoder::new(BufWriter::new(File::create(path).unwrap())).unwrap();
    for page in pages {
        let mut image = encoder.new_image::<C>(width, height).unwrap();
        image.resolution(ResolutionUnit::Centimeter, Rational { n: 20000, d: 1 });
        image.encoder().write_tag(Tag::ImageDescription, "ImageJ=1.54\nspacing=2.5\nunit=micron\n").unwrap();
        image.write_data(page).unwrap();
    }
}

fn read_tiff(path: &Path) -> (Vec<Vec<u32>>, Option<tiff::decoder::ifd::Value>, Option<tiff::decoder::ifd::Value>) {
    let mut decoder = tiff::decoder::Decoder::new(std::io::BufReader::new(File::open(path).unwrap())).unwrap();
    let resolution = decoder.find_tag(Tag::XResolution).unwrap();
    let description = decoder.find_tag(Tag::ImageDescription).unwrap();
    let mut pages = Vec::new();
    loop {
        pages.push(match decoder.read_image().unwrap() {
            tiff::decoder::DecodingResult::U16(v) => v.into_iter().map(u32::from).collect(),
            tiff::decoder::DecodingResult::U32(v) => v,
            other => panic!("unexpected output samples {:?}", std::mem::discriminant(&other)),
        });
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().unwrap();
    }
    (pages, resolution, description)
}

fn args(folder: &Path) -> Args {
    Args { folder: folder.to_path_buf(), connectivity: None, suffix: "_instances".into(), overwrite: false }
}

fn run_folder(args: &Args) -> Vec<(PathBuf, Outcome)> {
    let files = masks(&args.folder, &args.suffix).unwrap();
    let outcomes = run(args, &files, &|_, _| {});
    files.into_iter().zip(outcomes).collect()
}

fn outcome<'a>(outcomes: &'a [(PathBuf, Outcome)], name: &str) -> &'a Outcome {
    &outcomes.iter().find(|(p, _)| p.file_name().unwrap() == name).unwrap_or_else(|| panic!("{name} not run")).1
}

#[test]
fn nifti_masks_keep_header_and_get_on_disk_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let header = header();
    // Indexed [x, y, z] as the nifti crate reads it.
    let plain = mask((13, 9, 7), 1);
    let binary = mask((6, 11, 5), 2).mapv(|v| u8::from(v != 0));
    WriterOptions::new(dir.path().join("multi.nii")).reference_header(&header).write_nifti(&plain).unwrap();
    WriterOptions::new(dir.path().join("binary.nii.gz")).reference_header(&header).write_nifti(&binary).unwrap();

    let outcomes = run_folder(&args(dir.path()));
    assert_eq!(outcomes.len(), 2);
    for (name, input) in [("multi", plain.mapv(i64::from)), ("binary", binary.mapv(i64::from))] {
        let ext = if name == "multi" { "nii" } else { "nii.gz" };
        let output = dir.path().join(format!("{name}_instances.{ext}"));
        let (labels, written) = read_nifti(&output);
        // On-disk order: x fastest, i.e. C order of the reversed [z, y, x] view.
        let expected = label(input.view().reversed_axes(), Connectivity::TwentySix).unwrap();
        assert_eq!(labels.view().into_dimensionality().unwrap(), expected.labels.view().reversed_axes());
        assert_eq!(
            outcome(&outcomes, &format!("{name}.{ext}")),
            &Outcome::Labelled {
                output,
                shape: input.shape().iter().rev().copied().collect(),
                connectivity: Connectivity::TwentySix,
                components: expected.count
            }
        );
        assert!(expected.count > 3);
        assert_eq!(written.datatype, nifti::NiftiType::Uint16 as i16);
        assert_eq!((written.pixdim, written.sform_code, written.qform_code), (header.pixdim, 2, 1));
        assert_eq!((written.srow_x, written.srow_y, written.srow_z), (header.srow_x, header.srow_y, header.srow_z));
        assert_eq!((written.quatern_b, written.xyzt_units), (header.quatern_b, header.xyzt_units));
        assert_eq!(&written.dim[..4], &[3, input.shape()[0] as u16, input.shape()[1] as u16, input.shape()[2] as u16]);
    }
}

#[test]
fn tiff_pages_and_stacks_keep_tags() {
    let dir = tempfile::tempdir().unwrap();
    let image: Array2<u8> = mask((1, 12, 17), 3).index_axis_move(Axis(0), 0).mapv(|v| v as u8);
    write_tiff_pages::<colortype::Gray8>(&dir.path().join("slide.tif"), &[image.iter().copied().collect()], 17, 12);
    let stack = mask((4, 10, 8), 4).mapv(|v| v as u16 * 300);
    let pages: Vec<Vec<u16>> = stack.outer_iter().map(|p| p.iter().copied().collect()).collect();
    write_tiff_pages::<colortype::Gray16>(&dir.path().join("stack.TIFF"), &pages, 8, 10);

    let mut options = args(dir.path());
    options.connectivity = None;
    let outcomes = run_folder(&options);
    let slide = label(image.view(), Connectivity::Eight).unwrap();
    let (written, resolution, description) = read_tiff(&dir.path().join("slide_instances.tif"));
    assert_eq!(written, vec![slide.labels.iter().copied().collect::<Vec<_>>()]);
    assert_eq!(resolution, Some(tiff::decoder::ifd::Value::Rational(20000, 1)));
    assert_eq!(description, Some(tiff::decoder::ifd::Value::Ascii("ImageJ=1.54\nspacing=2.5\nunit=micron\n".into())));

    let expected = label(stack.view(), Connectivity::TwentySix).unwrap();
    let (written, ..) = read_tiff(&dir.path().join("stack_instances.TIFF"));
    assert_eq!(written.concat(), expected.labels.iter().copied().collect::<Vec<_>>());
    assert!(
        matches!(outcome(&outcomes, "stack.TIFF"), Outcome::Labelled { components, .. } if *components == expected.count)
    );
}

#[test]
fn bad_files_are_reported_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    WriterOptions::new(path("float.nii"))
        .reference_header(&header())
        .write_nifti(&Array3::<f32>::zeros((4, 4, 4)))
        .unwrap();
    let series = ndarray::Array4::<u8>::ones((3, 3, 3, 2));
    WriterOptions::new(path("series.nii")).reference_header(&header()).write_nifti(&series).unwrap();
    std::fs::write(path("broken.nii.gz"), b"not a nifti file").unwrap();
    std::fs::write(path("notes.txt"), b"not a mask").unwrap();
    write_tiff_pages::<colortype::Gray8>(&path("good.tif"), &[vec![1, 0, 0, 1]], 2, 2);

    let outcomes = run_folder(&args(dir.path()));
    assert_eq!(outcomes.len(), 4, "notes.txt is not a mask file");
    let error = |name| match outcome(&outcomes, name) {
        Outcome::Failed { error } => error.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert!(error("float.nii").contains("not an integer mask"), "{}", error("float.nii"));
    assert!(error("series.nii").contains("4D"), "{}", error("series.nii"));
    assert!(error("broken.nii.gz").contains("unreadable"), "{}", error("broken.nii.gz"));
    assert!(matches!(outcome(&outcomes, "good.tif"), Outcome::Labelled { components: 1, .. }));
    assert!(!path("float_instances.nii").exists() && !path("series_instances.nii").exists());

    // A 3D connectivity on a 2D mask fails that file, clearly.
    let mut options = args(dir.path());
    options.connectivity = Some(Connectivity::Six);
    options.overwrite = true;
    let outcomes = run_folder(&options);
    assert!(matches!(outcome(&outcomes, "good.tif"), Outcome::Failed { error } if error.contains("connectivity")));
}

#[test]
fn outputs_are_kept_unless_overwrite_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mask.tif");
    let output = dir.path().join("mask_instances.tif");
    write_tiff_pages::<colortype::Gray8>(&input, &[vec![1, 0, 0, 1]], 2, 2);
    // Default 8-connectivity: the two diagonal pixels are one component.
    let first = run_folder(&args(dir.path()));
    assert!(matches!(&first[0].1, Outcome::Labelled { components: 1, .. }));
    assert_eq!(first.len(), 1);

    std::fs::write(&output, b"the user's own file").unwrap();
    let second = run_folder(&args(dir.path()));
    assert_eq!(second, vec![(input.clone(), Outcome::Skipped { output: output.clone() })], "outputs are not inputs");
    assert_eq!(std::fs::read(&output).unwrap(), b"the user's own file");

    let mut options = args(dir.path());
    options.overwrite = true;
    options.connectivity = Some(Connectivity::Four);
    let third = run_folder(&options);
    assert!(matches!(&third[0].1, Outcome::Labelled { components: 2, .. }));
    assert_eq!(read_tiff(&output).0, vec![vec![1, 0, 0, 2]]);
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".partial"))
    );
}

#[test]
fn connectivity_flag_takes_neighbour_counts() {
    assert_eq!(parse_connectivity("18"), Ok(Connectivity::Eighteen));
    assert!(parse_connectivity("5").is_err());
    assert!(parse_connectivity("six").unwrap_err().contains("not a number"));
    let name = |n: &str| volume::output_path(Path::new(n), "_instances").unwrap();
    assert_eq!(name("a/scan.01.nii.gz"), Path::new("a/scan.01_instances.nii.gz"));
    assert_eq!(name("b.TIF"), Path::new("b_instances.TIF"));
    assert!(volume::is_output(Path::new("b_instances.nii"), "_instances"));
    assert!(volume::extension(Path::new(".nii")).is_none());
}
