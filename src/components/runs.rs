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
    /// Whether some run starts where the one before it ends (two values touching).
    adjacent: bool,
}

/// The runs of one row, numbered from `first` in the forest they are joined in.
#[derive(Clone, Copy)]
pub(crate) struct RowRuns<'a, A> {
    first: u32,
    starts: &'a [u32],
    ends: &'a [u32],
    values: &'a [A],
    /// Whether runs of the band this row belongs to may be adjacent.
    adjacent: bool,
}

impl<A> Runs<A> {
    /// No runs yet, with room for `rows` rows and `runs` runs.
    fn with_capacity(rows: usize, runs: usize) -> Self {
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0);
        Runs {
            row_ptr,
            starts: Vec::with_capacity(runs),
            ends: Vec::with_capacity(runs),
            values: Vec::with_capacity(runs),
            adjacent: false,
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
            adjacent: self.adjacent,
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

/// Rows whose runs span at most this many columns per run are written as a running sum.
const DENSE_SPAN_PER_RUN: usize = 16;

/// Rows with at least one run per this many columns, between them, are dense: see [`union_rows`].
const MERGE_COLUMNS_PER_RUN: usize = 4;

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
        let mut runs = Runs::with_capacity(rows.len(), capacity);
        let mut parent = Vec::with_capacity(capacity);
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
    ///
    /// Rows with many short runs are written without a branch per run: each run adds its label
    /// where it starts and subtracts it where it ends in a row of differences, whose running
    /// sum is the row of labels. Rows of a few long runs are filled run by run.
    pub fn write(&self, labels: &[u32], out: &mut [u32], nx: usize, zeroed: bool) {
        let runs = &self.runs;
        let mut differences = Vec::new();
        for (i, out_row) in out.chunks_exact_mut(nx).enumerate() {
            let row_runs = runs.row_ptr[i] as usize..runs.row_ptr[i + 1] as usize;
            if row_runs.is_empty() {
                if !zeroed {
                    out_row.fill(0);
                }
                continue;
            }
            let (starts, ends) = (&runs.starts[row_runs.clone()], &runs.ends[row_runs.clone()]);
            let labels = &labels[row_runs];
            let (first, last) = (starts[0] as usize, ends[ends.len() - 1] as usize);
            if last - first > DENSE_SPAN_PER_RUN * starts.len() {
                if !zeroed {
                    out_row.fill(0);
                }
                for ((&start, &end), &label) in starts.iter().zip(ends).zip(labels) {
                    out_row[start as usize..end as usize].fill(label);
                }
                continue;
            }
            if !zeroed {
                out_row[..first].fill(0);
                out_row[last..].fill(0);
            }
            if differences.is_empty() {
                differences.resize(nx + 1, 0u32);
            }
            for ((&start, &end), &label) in starts.iter().zip(ends).zip(labels) {
                differences[start as usize] = differences[start as usize].wrapping_add(label);
                differences[end as usize] = differences[end as usize].wrapping_sub(label);
            }
            let mut label = 0u32;
            for (voxel, difference) in out_row[first..last].iter_mut().zip(&mut differences[first..last]) {
                label = label.wrapping_add(*difference);
                *difference = 0;
                *voxel = label;
            }
            differences[last] = 0;
        }
    }
}

/// An estimate of the runs of `rows` from a sample of them, with a margin.
fn estimate_runs<A: MaskElement>(data: &[A], nx: usize, rows: Range<usize>) -> usize {
    let mut sample = Runs::with_capacity(0, 0);
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
/// The row is read in blocks of [`BLOCK`] voxels, the last one padded with background. Per block,
/// two bit masks are built without branches (the compiler vectorises the comparisons): where the
/// voxel is foreground, and where it differs from its left neighbour. Runs start where a
/// foreground voxel differs from its left neighbour and end where a voxel differs from a
/// foreground left neighbour, so only the set bits of those two masks are visited.
#[inline]
fn scan_row<A: MaskElement>(row: &[A], runs: &mut Runs<A>) {
    let bg = A::default();
    let (blocks, tail) = row.as_chunks::<BLOCK>();
    let mut last = bg;
    for (b, block) in blocks.iter().enumerate() {
        last = scan_block(block, last, (b * BLOCK) as u32, runs);
    }
    if !tail.is_empty() {
        let mut padded = [bg; BLOCK];
        padded[..tail.len()].copy_from_slice(tail);
        last = scan_block(&padded, last, (blocks.len() * BLOCK) as u32, runs);
    }
    if last != bg {
        runs.ends.push(row.len() as u32);
    }
}

/// Appends the run starts and ends of one block whose first voxel is at column `base`, the
/// voxel before it holding `last`; returns the block's last voxel.
#[inline]
fn scan_block<A: MaskElement>(block: &[A; BLOCK], last: A, base: u32, runs: &mut Runs<A>) -> A {
    let bg = A::default();
    if last == bg && block.iter().fold(true, |all, &v| all & (v == bg)) {
        return bg;
    }
    let mut foreground = [0u8; BLOCK];
    for (f, &v) in foreground.iter_mut().zip(block) {
        *f = u8::from(v != bg);
    }
    let foreground = pack_bits(&foreground);
    let mut changed = [0u8; BLOCK];
    changed[0] = u8::from(block[0] != last);
    for ((c, &v), &left) in changed[1..].iter_mut().zip(&block[1..]).zip(block) {
        *c = u8::from(v != left);
    }
    let changed = pack_bits(&changed);
    let left_foreground = (foreground << 1) | u64::from(last != bg);
    let mut starts = changed & foreground;
    runs.adjacent |= starts & left_foreground != 0;
    while starts != 0 {
        let k = starts.trailing_zeros() as usize;
        starts &= starts - 1;
        runs.starts.push(base + k as u32);
        runs.values.push(block[k]);
    }
    let mut ends = changed & left_foreground;
    while ends != 0 {
        runs.ends.push(base + ends.trailing_zeros());
        ends &= ends - 1;
    }
    block[BLOCK - 1]
}

/// Packs 64 flags, each 0 or 1, into the bits of a `u64` (flag `k` into bit `k`).
#[inline]
fn pack_bits(flags: &[u8; BLOCK]) -> u64 {
    let (words, _) = flags.as_chunks::<8>();
    words.iter().enumerate().fold(0, |bits, (w, word)| {
        // Byte i (0 or 1) sits at bit 8i; the product gathers bit 8i into bit 56 + i, and no
        // two partial products overlap, so nothing carries.
        let gathered = u64::from_le_bytes(*word).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits | gathered << (8 * w)
    })
}

/// Joins every run of `cur` with the runs of the earlier row `prev` that it touches.
///
/// Dense rows without adjacent runs (always so in binary masks) take [`merge_rows`], whose fixed
/// work per step pays off where runs are short and many; the others take [`sweep_rows`], whose
/// loops branch per run but predictably so on smooth masks.
#[inline]
pub(crate) fn union_rows<A: MaskElement>(
    parent: &mut [u32],
    cur: RowRuns<'_, A>,
    prev: RowRuns<'_, A>,
    diagonal: bool,
) {
    let (n, m) = (cur.starts.len(), prev.starts.len());
    if n == 0 || m == 0 {
        return;
    }
    let span = cur.ends[n - 1].max(prev.ends[m - 1]) - cur.starts[0].min(prev.starts[0]);
    if prev.adjacent || (n + m) * MERGE_COLUMNS_PER_RUN < span as usize {
        sweep_rows(parent, cur, prev, diagonal);
    } else if diagonal {
        merge_rows::<A, true>(parent, cur, prev);
    } else {
        merge_rows::<A, false>(parent, cur, prev);
    }
}

/// [`union_rows`] for sparse rows and rows with adjacent runs: for each run of `cur`, the runs of
/// `prev` it touches.
///
/// Both rows are sorted and non-overlapping, so one sweep with a monotone lower bound visits each
/// run a bounded number of times. The root of the current run is kept across its unions, so each
/// touching run costs one `find`, and none when its parent already is that root (the common case
/// in dense masks, where earlier unions have pointed most runs at their root).
#[inline]
fn sweep_rows<A: MaskElement>(parent: &mut [u32], cur: RowRuns<'_, A>, prev: RowRuns<'_, A>, diagonal: bool) {
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

/// [`union_rows`] for dense rows: the two rows' runs are merged like sorted lists.
///
/// At each step the run that ends first is done with: nothing later in the other row can reach
/// it, even widened by one column, as long as the runs of `prev` are not adjacent (two values
/// touching, which [`sweep_rows`] handles). Each step is a fixed amount of work without a branch
/// but the union, skipped when both runs already point at the same parent: the common case in
/// dense masks, where most runs hang directly below their root, and the union points both runs
/// at the root so that they hit that case next time.
#[inline(never)]
fn merge_rows<A: MaskElement, const DIAGONAL: bool>(parent: &mut [u32], cur: RowRuns<'_, A>, prev: RowRuns<'_, A>) {
    let widen = u32::from(DIAGONAL);
    let (n, m) = (cur.starts.len(), prev.starts.len());
    let (cur_starts, cur_ends, cur_values) = (&cur.starts[..n], &cur.ends[..n], &cur.values[..n]);
    let (prev_starts, prev_ends, prev_values) = (&prev.starts[..m], &prev.ends[..m], &prev.values[..m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        let (end, prev_end) = (cur_ends[i], prev_ends[j]);
        let (a, b) = (cur.first + i as u32, prev.first + j as u32);
        // [start, end) and [prev_start, prev_end) overlap once widened and hold the same value.
        let touch =
            (prev_starts[j] < end + widen) & (cur_starts[i] < prev_end + widen) & (cur_values[i] == prev_values[j]);
        if touch & (parent[a as usize] != parent[b as usize]) {
            union_find::union(parent, a, b);
        }
        let cur_done = end <= prev_end;
        i += usize::from(cur_done);
        j += usize::from(!cur_done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// The runs of a row, found voxel by voxel.
    fn plain_runs(row: &[u8]) -> Vec<(u32, u32, u8)> {
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
    fn random_row(rng: &mut Rng, len: usize, values: u64) -> Vec<u8> {
        let mut row = Vec::with_capacity(len);
        while row.len() < len {
            let longest = if rng.below(4) == 0 { 150 } else { 6 };
            let stretch = 1 + rng.below(longest) as usize;
            let value = rng.below(values + 1) as u8;
            let noisy = rng.below(3) == 0;
            for _ in 0..stretch.min(len - row.len()) {
                row.push(if noisy { rng.below(values + 1) as u8 } else { value });
            }
        }
        row
    }

    #[test]
    fn scan_row_finds_every_run() {
        let mut rng = Rng(11);
        let lengths = [0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 200, 256, 1000];
        for &len in &lengths {
            for values in [1, 2, 5] {
                for _ in 0..20 {
                    let row = random_row(&mut rng, len, values);
                    let mut runs = Runs::<u8>::with_capacity(0, 0);
                    scan_row(&row, &mut runs);
                    let got: Vec<_> = (0..runs.len()).map(|k| (runs.starts[k], runs.ends[k], runs.values[k])).collect();
                    assert_eq!(got, plain_runs(&row), "{row:?}");
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
                let mut runs = Runs::<u8>::with_capacity(0, 0);
                scan_row(&row, &mut runs);
                let got: Vec<_> = (0..runs.len()).map(|k| (runs.starts[k], runs.ends[k], runs.values[k])).collect();
                assert_eq!(got, plain_runs(&row), "{row:?}");
            }
        }
        assert_eq!(plain_runs(&[0, 2, 1, 1, 0, 3]), vec![(1, 2, 2), (2, 4, 1), (5, 6, 3)]);
    }

    /// Both ways of writing a row (running sum for many short runs, fills for a few long
    /// ones), into zeroed and into dirty buffers.
    #[test]
    fn write_gives_every_voxel_its_run_label() {
        let mut rng = Rng(12);
        let nx = 300;
        let (mut dense_rows, mut sparse_rows) = (0, 0);
        for rows in [1, 7] {
            for values in [1, 3] {
                for _ in 0..20 {
                    let data: Vec<u8> = (0..rows).flat_map(|_| random_row(&mut rng, nx, values)).collect();
                    let geom = Geometry { nz: 1, ny: rows, nx };
                    let band = Band::scan(&data, geom, 0..rows, Connectivity::Four, usize::MAX).unwrap();
                    // Labels that use every bit, so that the running sum must wrap to be right.
                    let labels: Vec<u32> = (0..band.runs.len()).map(|_| rng.next_u64() as u32 | 1).collect();
                    let mut expected = vec![0u32; data.len()];
                    for i in 0..rows {
                        let row = band.runs.row(i, 0);
                        if let (Some(&first), Some(&last)) = (row.starts.first(), row.ends.last()) {
                            if (last - first) as usize > DENSE_SPAN_PER_RUN * row.starts.len() {
                                sparse_rows += 1;
                            } else {
                                dense_rows += 1;
                            }
                        }
                        let row_runs = band.runs.row_ptr[i] as usize..band.runs.row_ptr[i + 1] as usize;
                        for (k, &label) in row_runs.clone().zip(&labels[row_runs]) {
                            for x in band.runs.starts[k]..band.runs.ends[k] {
                                expected[i * nx + x as usize] = label;
                            }
                        }
                    }
                    let mut zeroed = vec![0u32; data.len()];
                    band.write(&labels, &mut zeroed, nx, true);
                    assert_eq!(zeroed, expected);
                    let mut dirty = vec![7u32; data.len()];
                    band.write(&labels, &mut dirty, nx, false);
                    assert_eq!(dirty, expected);
                }
            }
        }
        assert!(dense_rows > 10 && sparse_rows > 10, "{dense_rows} dense and {sparse_rows} sparse rows");
    }

    /// Both ways of joining two rows find exactly the touching pairs that a check of every pair
    /// finds, on dense and sparse, binary and multi-label rows.
    #[test]
    fn merge_and_sweep_join_exactly_the_touching_runs() {
        let mut rng = Rng(13);
        let (mut merged, mut adjacent) = (0, 0);
        for values in [1, 3] {
            for _ in 0..300 {
                let len = 1 + rng.below(140) as usize;
                let rows = [random_row(&mut rng, len, values), random_row(&mut rng, len, values)];
                let mut runs = Runs::<u8>::with_capacity(0, 0);
                for row in &rows {
                    scan_row(row, &mut runs);
                    runs.row_ptr.push(runs.len() as u32);
                }
                let (prev, cur) = (runs.row(0, 0), runs.row(1, 0));
                for diagonal in [false, true] {
                    // Every pair, checked directly.
                    let mut expected: Vec<u32> = (0..runs.len() as u32).collect();
                    for i in 0..cur.starts.len() {
                        for j in 0..prev.starts.len() {
                            let w = u32::from(diagonal);
                            let touch = prev.starts[j] < cur.ends[i] + w && cur.starts[i] < prev.ends[j] + w;
                            if touch && cur.values[i] == prev.values[j] {
                                let root = union_find::find(&mut expected, prev.first + j as u32);
                                union_find::link(&mut expected, root, cur.first + i as u32);
                            }
                        }
                    }
                    union_find::number_roots(&mut expected);
                    let mut joined = Vec::new();
                    if runs.adjacent {
                        adjacent += 1;
                    } else {
                        merged += 1;
                        let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
                        if diagonal {
                            merge_rows::<u8, true>(&mut parent, cur, prev);
                        } else {
                            merge_rows::<u8, false>(&mut parent, cur, prev);
                        }
                        joined.push(parent);
                    }
                    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
                    sweep_rows(&mut parent, cur, prev, diagonal);
                    joined.push(parent);
                    for mut parent in joined {
                        union_find::number_roots(&mut parent);
                        assert_eq!(parent, expected, "{rows:?} diagonal {diagonal}");
                    }
                }
            }
        }
        assert!(merged > 100 && adjacent > 100, "{merged} merged, {adjacent} with adjacent runs");
    }
}
