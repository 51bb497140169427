//! Run extraction and union of touching runs: the scan helpers behind [`label`](super::label).
//!
//! A run is a maximal stretch of equal, non-background values along the last (fastest) axis.
//! Two runs in neighbouring rows belong to the same component when they hold the same value and
//! overlap, on the same columns or, for diagonal neighbours, widened by one column.

use std::ops::Range;

use super::connectivity::Connectivity;
use super::element::MaskElement;
use super::union_find;

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

    /// The row `(dz, dy)` away from `row`, if it lies inside the volume.
    #[inline]
    pub fn neighbour_row(&self, row: usize, dz: isize, dy: isize) -> Option<usize> {
        let z = (row / self.ny) as isize + dz;
        let y = (row % self.ny) as isize + dy;
        (z >= 0 && y >= 0 && (y as usize) < self.ny).then(|| z as usize * self.ny + y as usize)
    }
}

/// The runs of a band of consecutive rows.
pub(crate) struct Runs<A> {
    /// `row_ptr[i]..row_ptr[i + 1]` are the runs of the band's row `i`.
    row_ptr: Vec<u32>,
    starts: Vec<u32>,
    ends: Vec<u32>,
    values: Vec<A>,
}

/// The runs of one row, numbered from `first` in the forest they are joined in.
#[derive(Clone, Copy)]
pub(crate) struct RowRuns<'a, A> {
    first: u32,
    starts: &'a [u32],
    ends: &'a [u32],
    values: &'a [A],
}

impl<A> Runs<A> {
    #[inline]
    fn push(&mut self, start: u32, end: u32, value: A) {
        self.starts.push(start);
        self.ends.push(end);
        self.values.push(value);
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

/// The runs of a band of consecutive rows, with a union-find forest over them.
pub(crate) struct Band<A> {
    /// The rows this band covers.
    pub rows: Range<usize>,
    pub runs: Runs<A>,
    /// Parent links in band-local run indices.
    pub parent: Vec<u32>,
}

/// One row in this many is scanned to estimate the number of runs of a band.
const SAMPLE_STRIDE: usize = 61;

/// Runs up to this long are written voxel by voxel.
const SHORT_RUN: usize = 4;

/// Voxels per block of [`scan_row`]: the bits of a `u64` mask.
const BLOCK: usize = 64;

impl<A: MaskElement> Band<A> {
    /// Extracts the runs of `rows` from the C-ordered `data` and joins those that touch inside
    /// the band. Returns `None` when the band has more than `max_runs` runs.
    pub fn scan(
        data: &[A],
        geom: Geometry,
        rows: Range<usize>,
        connectivity: Connectivity,
        max_runs: usize,
    ) -> Option<Self> {
        // Reserve what a sample of the rows predicts: growing by doubling costs dense masks
        // dearly, and reserving for the densest mask costs sparse ones (tens of MiB mapped, and
        // sometimes cleared by the allocator, on every call).
        let capacity = estimate_runs(data, geom.nx, rows.clone()).min(max_runs);
        let mut runs = Runs {
            row_ptr: Vec::with_capacity(rows.len() + 1),
            starts: Vec::with_capacity(capacity),
            ends: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
        };
        let mut parent = Vec::with_capacity(capacity);
        runs.row_ptr.push(0);
        for row in rows.clone() {
            let first = runs.len();
            scan_row(&data[row * geom.nx..(row + 1) * geom.nx], &mut runs);
            if runs.len() > max_runs {
                return None;
            }
            runs.row_ptr.push(runs.len() as u32);
            parent.extend(first as u32..runs.len() as u32);
            if first == runs.len() {
                continue;
            }
            for nb in connectivity.earlier_rows() {
                match geom.neighbour_row(row, nb.dz, nb.dy) {
                    Some(prev) if prev >= rows.start => {
                        let cur = runs.row(row - rows.start, 0);
                        let prev = runs.row(prev - rows.start, 0);
                        union_rows(&mut parent, cur, prev, nb.diagonal);
                    }
                    _ => {}
                }
            }
        }
        Some(Band { rows, runs, parent })
    }

    /// The runs of global row `row` (inside this band), numbered from `offset`.
    #[inline]
    pub fn row(&self, row: usize, offset: u32) -> RowRuns<'_, A> {
        self.runs.row(row - self.rows.start, offset)
    }

    /// Writes the band's rows into `out` (the band's part of a C-ordered output), run `k` taking
    /// `labels[k]`. When `zeroed` is set, `out` is known to be all zeros and the background is not
    /// written.
    pub fn write(&self, labels: &[u32], out: &mut [u32], nx: usize, zeroed: bool) {
        if !zeroed {
            out.fill(0);
        }
        let runs = &self.runs;
        for (i, out_row) in out.chunks_exact_mut(nx).enumerate() {
            for k in runs.row_ptr[i] as usize..runs.row_ptr[i + 1] as usize {
                let run = &mut out_row[runs.starts[k] as usize..runs.ends[k] as usize];
                if run.len() <= SHORT_RUN {
                    // Most runs of noisy masks are a few voxels: a plain loop beats `fill`'s setup.
                    for voxel in run {
                        *voxel = labels[k];
                    }
                } else {
                    run.fill(labels[k]);
                }
            }
        }
    }
}

/// An estimate of the runs of `rows` from a sample of them, with a margin.
fn estimate_runs<A: MaskElement>(data: &[A], nx: usize, rows: Range<usize>) -> usize {
    let mut sample = Runs { row_ptr: Vec::new(), starts: Vec::new(), ends: Vec::new(), values: Vec::new() };
    let mut sampled = 0;
    for row in rows.clone().step_by(SAMPLE_STRIDE) {
        scan_row(&data[row * nx..(row + 1) * nx], &mut sample);
        sampled += 1;
    }
    let per_row = sample.len() as f64 / sampled.max(1) as f64;
    (per_row * 1.25 * rows.len() as f64) as usize + 4 * rows.len()
}

/// Appends the runs of one row.
///
/// The row is read in blocks of [`BLOCK`] voxels. An all-background block is skipped with one
/// vectorised test; otherwise a bit mask of the positions where the value changes is built
/// without branches, and only its set bits (the run boundaries) are visited.
#[inline]
fn scan_row<A: MaskElement>(row: &[A], runs: &mut Runs<A>) {
    let bg = A::default();
    let mut open: Option<(u32, A)> = None;
    let mut last = bg;
    for (b, block) in row.chunks(BLOCK).enumerate() {
        if last == bg && block.iter().fold(true, |all, &v| all & (v == bg)) {
            continue;
        }
        let mut changes = u64::from(block[0] != last);
        for (k, (&u, &v)) in block.iter().zip(&block[1..]).enumerate() {
            changes |= u64::from(u != v) << (k + 1);
        }
        let base = (b * BLOCK) as u32;
        while changes != 0 {
            let k = changes.trailing_zeros() as usize;
            changes &= changes - 1;
            let at = base + k as u32;
            if let Some((start, value)) = open.take() {
                runs.push(start, at, value);
            }
            if block[k] != bg {
                open = Some((at, block[k]));
            }
        }
        last = block[block.len() - 1];
    }
    if let Some((start, value)) = open {
        runs.push(start, row.len() as u32, value);
    }
}

/// Joins every run of `cur` with the runs of the earlier row `prev` that it touches.
///
/// Both rows are sorted and non-overlapping, so one sweep with a monotone lower bound visits each
/// run a bounded number of times. The root of the current run is kept across its unions, so each
/// touching run costs one `find`, and none when its parent already is that root (the common case
/// in dense masks, where earlier unions have pointed most runs at their root).
#[inline]
pub(crate) fn union_rows<A: MaskElement>(
    parent: &mut [u32],
    cur: RowRuns<'_, A>,
    prev: RowRuns<'_, A>,
    diagonal: bool,
) {
    let widen = u32::from(diagonal);
    let n = prev.starts.len();
    let mut lo_j = 0;
    for (i, ((&start, &end), &value)) in cur.starts.iter().zip(cur.ends).zip(cur.values).enumerate() {
        // Columns of `prev` that touch this run: [start - widen, end + widen).
        let lo = start.saturating_sub(widen);
        let hi = end + widen;
        while lo_j < n && prev.ends[lo_j] <= lo {
            lo_j += 1;
        }
        if lo_j == n {
            return;
        }
        let mut root = None;
        for j in lo_j..n {
            if prev.starts[j] >= hi {
                break;
            }
            if prev.values[j] == value {
                let r = *root.get_or_insert_with(|| union_find::find(parent, cur.first + i as u32));
                let b = prev.first + j as u32;
                // Already joined, directly (the common case in dense masks): no find.
                if parent[b as usize] != r {
                    root = Some(union_find::link(parent, r, b));
                }
            }
        }
    }
}
