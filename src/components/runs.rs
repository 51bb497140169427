//! Run extraction: the scan helpers behind [`label`](super::label).
//!
//! A run is a maximal stretch of equal, non-background values along the last (fastest) axis.
//! Each row is scanned into its runs and into bit masks of its foreground, run starts and run
//! ends, which [`join`](super::join) reads to join runs of neighbouring rows and
//! [`band`](super::band) to scan whole bands.

use std::ops::Range;

use super::bits::BLOCK;
use super::buffer;
use super::element::MaskElement;

/// The shape of the volume as `(planes, rows per plane, columns)`; a 2D image has one plane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub nz: usize,
    pub ny: usize,
    pub nx: usize,
}

impl Geometry {
    pub fn rows(&self) -> usize {
        self.nz * self.ny
    }

    /// Where `row` lies: `(plane, row within the plane)`.
    #[inline]
    pub fn position(&self, row: usize) -> (usize, usize) {
        (row / self.ny, row % self.ny)
    }

    /// The row `(dz, dy)` away from the row at `position`, if it lies inside the volume.
    #[inline]
    pub fn offset_row(&self, (z, y): (usize, usize), dz: isize, dy: isize) -> Option<usize> {
        let (z, y) = (z as isize + dz, y as isize + dy);
        (z >= 0 && y >= 0 && (y as usize) < self.ny).then(|| z as usize * self.ny + y as usize)
    }

    /// The row `(dz, dy)` away from `row`, if it lies inside the volume.
    #[inline]
    pub fn neighbour_row(&self, row: usize, dz: isize, dy: isize) -> Option<usize> {
        self.offset_row(self.position(row), dz, dy)
    }
}

/// The runs of a band of consecutive rows.
pub(crate) struct Runs<A> {
    /// `row_ptr[i]..row_ptr[i + 1]` are the runs of the band's row `i`.
    pub(super) row_ptr: Vec<u32>,
    pub(super) starts: Vec<u32>,
    pub(super) ends: Vec<u32>,
    values: Vec<A>,
}

/// The runs of one row, numbered from `first` in the forest they are joined in.
#[derive(Clone, Copy)]
pub(crate) struct RowRuns<'a, A> {
    pub first: u32,
    pub starts: &'a [u32],
    pub ends: &'a [u32],
    pub values: &'a [A],
}

/// The bit masks of one block of [`BLOCK`] columns of a row, column `64 b + k` in bit `k` of
/// block `b`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BlockMasks {
    pub foreground: u64,
    /// Columns where a run starts.
    pub starts: u64,
    /// Columns where a run ends: the first column after it (a run that ends the row has none).
    pub ends: u64,
}

impl<A> Runs<A> {
    /// No runs yet, with room for `rows` rows and `runs` runs.
    pub(super) fn with_capacity(rows: usize, runs: usize) -> Self {
        let mut row_ptr = buffer::with_capacity(rows + 1);
        row_ptr.push(0);
        Runs {
            row_ptr,
            starts: buffer::with_capacity(runs),
            ends: buffer::with_capacity(runs),
            values: buffer::with_capacity(runs),
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The runs of the band's row `i`, numbered from `offset`.
    #[inline]
    pub fn row(&self, i: usize, offset: u32) -> RowRuns<'_, A> {
        let r = self.row_ptr[i] as usize..self.row_ptr[i + 1] as usize;
        RowRuns {
            first: offset + r.start as u32,
            starts: &self.starts[r.clone()],
            ends: &self.ends[r.clone()],
            values: &self.values[r],
        }
    }
}

/// One row in this many is scanned to estimate the number of runs of a band.
const SAMPLE_STRIDE: usize = 61;

/// An estimate of the runs of `rows` from a sample of them, with a margin.
pub(super) fn estimate_runs<A: MaskElement>(data: &[A], nx: usize, rows: Range<usize>) -> usize {
    let mut sample = Runs::with_capacity(0, 0);
    let mut masks = vec![BlockMasks::default(); nx.div_ceil(BLOCK)];
    let mut sampled = 0;
    for row in rows.clone().step_by(SAMPLE_STRIDE) {
        scan_row(&data[row * nx..(row + 1) * nx], &mut sample, &mut masks);
        sampled += 1;
    }
    let per_row = sample.len() as f64 / sampled.max(1) as f64;
    (per_row * 1.25 * rows.len() as f64) as usize + 4 * rows.len()
}

/// Appends the runs of one row.
///
/// The row is read in blocks of [`BLOCK`] voxels, the last one padded with background. Per block,
/// two bit masks are built without branches (the compiler vectorises the comparisons): where the
/// voxel is foreground, and where it differs from its left neighbour. Runs start where a
/// foreground voxel differs from its left neighbour and end where a voxel differs from a
/// foreground left neighbour, so only the set bits of those two masks are visited.
#[inline(always)]
pub(super) fn scan_row<A: MaskElement>(row: &[A], runs: &mut Runs<A>, masks: &mut [BlockMasks]) {
    let bg = A::default();
    let (blocks, tail) = row.as_chunks::<BLOCK>();
    let mut last = bg;
    for ((b, block), m) in blocks.iter().enumerate().zip(masks.iter_mut()) {
        *m = scan_block(block, last, (b * BLOCK) as u32, runs);
        last = block[BLOCK - 1];
    }
    if !tail.is_empty() {
        let mut padded = [bg; BLOCK];
        padded[..tail.len()].copy_from_slice(tail);
        let b = blocks.len();
        masks[b] = scan_block(&padded, last, (b * BLOCK) as u32, runs);
        // The end of a run that ends the row falls in the padding: not a column of the row.
        masks[b].ends &= (1 << tail.len()) - 1;
        last = padded[BLOCK - 1];
    }
    if last != bg {
        runs.ends.push(row.len() as u32);
    }
}

/// Appends the run starts and ends of one block whose first voxel is at column `base`, the
/// voxel before it holding `last`; returns the block's masks.
#[inline(always)]
fn scan_block<A: MaskElement>(block: &[A; BLOCK], last: A, base: u32, runs: &mut Runs<A>) -> BlockMasks {
    let bg = A::default();
    if last == bg && block.iter().fold(true, |all, &v| all & (v == bg)) {
        return BlockMasks::default();
    }
    let foreground = !A::equal_bits(block, &[bg; BLOCK]);
    // Each voxel beside its left neighbour.
    let mut left = [last; BLOCK];
    left[1..].copy_from_slice(&block[..BLOCK - 1]);
    let changed = !A::equal_bits(block, &left);
    let left_foreground = (foreground << 1) | u64::from(last != bg);
    let starts = changed & foreground;
    let ends = changed & left_foreground;
    let mut bits = starts;
    while bits != 0 {
        let k = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        runs.starts.push(base + k as u32);
        runs.values.push(block[k]);
    }
    let mut bits = ends;
    while bits != 0 {
        runs.ends.push(base + bits.trailing_zeros());
        bits &= bits - 1;
    }
    BlockMasks { foreground, starts, ends }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// The runs of a row, found voxel by voxel.
    pub fn plain_runs(row: &[u8]) -> Vec<(u32, u32, u8)> {
        let mut runs = Vec::new();
        let mut x = 0;
        while x < row.len() {
            if row[x] == 0 {
                x += 1;
                continue;
            }
            let start = x;
            while x < row.len() && row[x] == row[start] {
                x += 1;
            }
            runs.push((start as u32, x as u32, row[start]));
        }
        runs
    }

    /// Rows of stretches: background, one value, or noise, each a few voxels to whole blocks long.
    pub fn random_row(rng: &mut SmallRng, len: usize, values: u64) -> Vec<u8> {
        let mut row = Vec::with_capacity(len);
        while row.len() < len {
            let longest = if rng.random_range(0..4) == 0 { 150 } else { 6 };
            let stretch = 1 + rng.random_range(0..longest) as usize;
            let value = rng.random_range(0..values + 1) as u8;
            let noisy = rng.random_range(0..3) == 0;
            for _ in 0..stretch.min(len - row.len()) {
                row.push(if noisy { rng.random_range(0..values + 1) as u8 } else { value });
            }
        }
        row
    }

    /// Scans one row; checks its runs against [`plain_runs`] and its masks against the runs.
    pub fn scan_checked(row: &[u8], runs: &mut Runs<u8>, masks: &mut [BlockMasks]) {
        let first = runs.len();
        scan_row(row, runs, masks);
        let got: Vec<_> = (first..runs.len()).map(|k| (runs.starts[k], runs.ends[k], runs.values[k])).collect();
        let expected = plain_runs(row);
        assert_eq!(got, expected, "{row:?}");
        let mut bits = vec![BlockMasks::default(); row.len().div_ceil(BLOCK)];
        for &(start, end, _) in &expected {
            let (start, end) = (start as usize, end as usize);
            for x in start..end {
                bits[x / BLOCK].foreground |= 1 << (x % BLOCK);
            }
            bits[start / BLOCK].starts |= 1 << (start % BLOCK);
            if end < row.len() {
                bits[end / BLOCK].ends |= 1 << (end % BLOCK);
            }
        }
        assert_eq!(masks, &bits[..], "{row:?}");
    }

    /// Scans `rows` (of one length) as consecutive rows of one band: their runs, numbered from 0,
    /// and each row's masks.
    pub fn scan_rows(rows: &[Vec<u8>]) -> (Runs<u8>, Vec<Vec<BlockMasks>>) {
        let mut runs = Runs::with_capacity(rows.len(), 0);
        let masks = rows
            .iter()
            .map(|row| {
                let mut masks = vec![BlockMasks::default(); row.len().div_ceil(BLOCK)];
                scan_checked(row, &mut runs, &mut masks);
                runs.row_ptr.push(runs.len() as u32);
                masks
            })
            .collect();
        (runs, masks)
    }

    #[test]
    fn scan_row_finds_every_run_and_its_masks() {
        let mut rng = SmallRng::seed_from_u64(11);
        let lengths = [0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 200, 256, 1000];
        for &len in &lengths {
            for values in [1, 2, 5] {
                for _ in 0..20 {
                    let row = random_row(&mut rng, len, values);
                    let mut masks = vec![BlockMasks { foreground: 7, starts: 7, ends: 7 }; len.div_ceil(BLOCK)];
                    scan_checked(&row, &mut Runs::with_capacity(0, 0), &mut masks);
                }
            }
        }
        // Full rows, and runs that end or start on block edges.
        for len in [64, 65, 128, 130] {
            let rows: [Vec<u8>; 4] = [
                vec![1; len],
                (0..len).map(|x| u8::from(x >= 63)).collect(),
                (0..len).map(|x| u8::from(x == 63) * 2 + u8::from(x == 64)).collect(),
                (0..len).map(|x| 1 + u8::from(x >= 64)).collect(),
            ];
            for row in rows {
                let mut masks = vec![BlockMasks::default(); len.div_ceil(BLOCK)];
                scan_checked(&row, &mut Runs::with_capacity(0, 0), &mut masks);
            }
        }
        assert_eq!(plain_runs(&[0, 2, 1, 1, 0, 3]), vec![(1, 2, 2), (2, 4, 1), (5, 6, 3)]);
    }
}
