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
#[derive(Default)]
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

/// How many elements the background skip tests at once.
const SKIP_CHUNK: usize = 32;

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
        let mut runs = Runs { row_ptr: Vec::with_capacity(rows.len() + 1), ..Runs::default() };
        let mut parent = Vec::new();
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
        let runs = &self.runs;
        for (i, out_row) in out.chunks_exact_mut(nx).enumerate() {
            let mut x = 0;
            for k in runs.row_ptr[i] as usize..runs.row_ptr[i + 1] as usize {
                let (s, e) = (runs.starts[k] as usize, runs.ends[k] as usize);
                if !zeroed {
                    out_row[x..s].fill(0);
                }
                out_row[s..e].fill(labels[k]);
                x = e;
            }
            if !zeroed {
                out_row[x..].fill(0);
            }
        }
    }
}

/// Appends the runs of one row.
#[inline]
fn scan_row<A: MaskElement>(row: &[A], runs: &mut Runs<A>) {
    let bg = A::default();
    let n = row.len();
    let mut x = 0;
    while x < n {
        let v = row[x];
        if v == bg {
            x += 1;
            // Skip long background stretches a chunk at a time; the fold has no early exit so
            // that it compiles to vector compares.
            while x + SKIP_CHUNK <= n && !row[x..x + SKIP_CHUNK].iter().fold(false, |any, &u| any | (u != bg)) {
                x += SKIP_CHUNK;
            }
            while x < n && row[x] == bg {
                x += 1;
            }
            continue;
        }
        let start = x;
        x += 1;
        while x < n && row[x] == v {
            x += 1;
        }
        runs.starts.push(start as u32);
        runs.ends.push(x as u32);
        runs.values.push(v);
    }
}

/// Joins every run of `cur` with the runs of the earlier row `prev` that it touches.
///
/// Both rows are sorted and non-overlapping, so one sweep with a monotone lower bound visits each
/// run a bounded number of times.
#[inline]
pub(crate) fn union_rows<A: MaskElement>(
    parent: &mut [u32],
    cur: RowRuns<'_, A>,
    prev: RowRuns<'_, A>,
    diagonal: bool,
) {
    let widen = u32::from(diagonal);
    let mut lo_j = 0;
    for i in 0..cur.starts.len() {
        // Columns of `prev` that touch run i: [start - widen, end + widen).
        let lo = cur.starts[i].saturating_sub(widen);
        let hi = cur.ends[i] + widen;
        while lo_j < prev.starts.len() && prev.ends[lo_j] <= lo {
            lo_j += 1;
        }
        let mut j = lo_j;
        while j < prev.starts.len() && prev.starts[j] < hi {
            if prev.values[j] == cur.values[i] {
                union_find::union(parent, cur.first + i as u32, prev.first + j as u32);
            }
            j += 1;
        }
    }
}
