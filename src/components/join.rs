//! Joining the touching runs of a row and its earlier rows: the union step behind
//! [`label`](super::label).
//!
//! Two runs of neighbouring rows belong to the same component when they hold the same value and
//! share a column or, for diagonal neighbours, touch once widened by one column. Two ways find
//! those pairs:
//! - [`join_by_sweep`]: for each run of the current row, the runs of the earlier row it reaches.
//!   Its cost follows the number of runs, and its branches are predictable when runs are long and
//!   few: sparse rows, and the boundaries between parallel bands.
//! - [`RowJoiner::join`] with bit masks of both rows: a fixed amount of work per 64 columns and
//!   per touching pair, with one branch per pair, for dense rows of short runs where the sweep's
//!   branches mispredict. It also skips the comparisons that an earlier match makes redundant
//!   (see [`Covers`]).

use super::bits::BLOCK;
use super::connectivity::{Connectivity, RowNeighbour};
use super::element::MaskElement;
use super::runs::{BlockMasks, Geometry, RowRuns, Runs};
use super::union_find;

/// Runs of at most this many columns are recorded with fixed-size stores: see
/// [`MaskRing::record_ids`]. Sixteen (four vector stores) leaves few runs of dense multi-label
/// rows to the branch for long ones: 5% faster than eight on multilabel128, the same on noise.
const SHORT_RUN: usize = 16;

/// Rows of one value with at least one run per this many columns, between the two rows, are
/// joined by their masks; sparser rows by [`join_by_sweep`].
const MASK_COLUMNS_PER_RUN: usize = 4;

/// [`MASK_COLUMNS_PER_RUN`] for rows of several values, whose runs end where others start: the
/// sweep's value tests mispredict there even on sparse rows.
const MASK_COLUMNS_PER_RUN_MULTI: usize = 16;

/// The most earlier rows that a row is compared with (18 and 26 connectivity).
const MAX_EARLIER_ROWS: usize = 4;

/// The masks, and on demand the run of every foreground column, of the last rows scanned: row
/// `r` of the band in slot `r % rows`, kept as long as a later row may be compared with it.
struct MaskRing {
    words: usize,
    rows: usize,
    masks: Vec<BlockMasks>,
    /// Per slot, `nx + SHORT_RUN` entries (the slack takes the fixed-size stores), or none
    /// before the first row is recorded.
    ids: Vec<u32>,
    id_stride: usize,
    /// Whether a slot's `ids` are recorded for the row it holds.
    has_ids: Vec<bool>,
}

impl MaskRing {
    fn new(nx: usize, rows: usize) -> Self {
        let words = nx.div_ceil(BLOCK);
        let id_stride = nx + SHORT_RUN;
        MaskRing {
            words,
            rows,
            masks: vec![BlockMasks::default(); words * rows],
            // Allocated when a row is first joined by masks: sparse masks never are.
            ids: Vec::new(),
            id_stride,
            has_ids: vec![false; rows],
        }
    }

    /// The slot `back` rows before `slot`.
    #[inline]
    fn back(&self, slot: usize, back: usize) -> usize {
        if slot >= back { slot - back } else { slot + self.rows - back }
    }

    #[inline]
    fn masks(&self, slot: usize) -> &[BlockMasks] {
        &self.masks[slot * self.words..(slot + 1) * self.words]
    }

    #[inline]
    fn ids(&self, slot: usize) -> &[u32] {
        &self.ids[slot * self.id_stride..(slot + 1) * self.id_stride]
    }

    /// Records, unless already done, the run of every foreground column of the row in `slot`.
    /// Background columns are left holding anything: only foreground columns are looked up.
    ///
    /// Short runs take [`SHORT_RUN`] copies of their number from their start, without a branch on
    /// their length; runs are recorded in order, so each overwrites what the one before it wrote
    /// past its end.
    fn record_ids<A>(&mut self, slot: usize, runs: RowRuns<'_, A>) {
        if std::mem::replace(&mut self.has_ids[slot], true) {
            return;
        }
        if self.ids.is_empty() {
            self.ids = vec![0; self.id_stride * self.rows];
        }
        let ids = &mut self.ids[slot * self.id_stride..(slot + 1) * self.id_stride];
        for ((&start, &end), id) in runs.starts.iter().zip(runs.ends).zip(runs.first..) {
            let (start, end) = (start as usize, end as usize);
            if end - start <= SHORT_RUN {
                ids[start..start + SHORT_RUN].copy_from_slice(&[id; SHORT_RUN]);
            } else {
                ids[start..end].fill(id);
            }
        }
    }
}

/// Which earlier rows spare which comparisons.
///
/// When a voxel holds the value of a voxel `q` of an earlier row, the two are joined by that
/// row's comparison. Any voxel `t` of another earlier row that touches `q` and holds the same
/// value was joined with `q` when the later of their two rows was compared with the other, so the
/// voxel need not be compared with `t`. This is the decision tree of cc3d and of Wu et al., on
/// whole rows of bits: in smooth regions most voxels match the voxel below them or before them,
/// and their other comparisons are skipped. The rows that spare others are compared first
/// ([`Connectivity::earlier_rows`] lists them first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Covers {
    /// `overlap[i][j]`: all ones when a match in earlier row `j` spares the comparison with row
    /// `i` on the same column; `diagonal[i][j]` the same for row `i`'s columns one to either side.
    overlap: [[u64; MAX_EARLIER_ROWS]; MAX_EARLIER_ROWS],
    diagonal: [[u64; MAX_EARLIER_ROWS]; MAX_EARLIER_ROWS],
    /// Whether any comparison is spared.
    any: bool,
}

impl Covers {
    fn new(connectivity: Connectivity) -> Self {
        let rows = connectivity.earlier_rows();
        let mut covers = Covers::default();
        for i in 0..rows.len() {
            // Only rows compared before row `i` have their matches known when it is compared.
            for j in 0..i {
                let (dz, dy) = (rows[i].dz - rows[j].dz, rows[i].dy - rows[j].dy);
                for (dx, spared) in [(0, &mut covers.overlap), (1, &mut covers.diagonal)] {
                    if (dx == 0 || rows[i].diagonal) && connectivity.touches(dz, dy, dx) {
                        spared[i][j] = u64::MAX;
                        covers.any = true;
                    }
                }
            }
        }
        covers
    }
}

/// The columns of one block spared in a comparison: those where a row that `spared_by` selects
/// holds the current row's value (`same`, one mask per earlier row).
#[inline]
fn spared(same: &[u64; MAX_EARLIER_ROWS], spared_by: &[u64; MAX_EARLIER_ROWS]) -> u64 {
    same.iter().zip(spared_by).fold(0, |mask, (s, by)| mask | (s & by))
}

/// Joins each newly scanned row of a band with its earlier rows in the band.
pub(crate) struct RowJoiner<A> {
    geom: Geometry,
    /// The band's first row.
    start: usize,
    earlier: &'static [RowNeighbour],
    covers: Covers,
    ring: MaskRing,
    /// Per block, per earlier row: the columns where that row holds the current row's value.
    same: Vec<[u64; MAX_EARLIER_ROWS]>,
    /// The value of the band's first run, and whether every run so far holds it: then equal
    /// values are where both rows are foreground, without comparing values.
    value: Option<A>,
    uniform: bool,
    /// The slot of the row being scanned, and the row expected next.
    slot: usize,
    next_row: usize,
}

impl<A: MaskElement> RowJoiner<A> {
    /// A joiner for the band of `geom` that starts at row `start`.
    pub fn new(geom: Geometry, start: usize, connectivity: Connectivity) -> Self {
        let earlier = connectivity.earlier_rows();
        let reach = earlier.iter().map(|nb| (-nb.dz * geom.ny as isize - nb.dy) as usize).max().unwrap_or(0);
        let ring = MaskRing::new(geom.nx, reach + 1);
        let same = vec![[0; MAX_EARLIER_ROWS]; ring.words];
        RowJoiner {
            geom,
            start,
            earlier,
            covers: Covers::new(connectivity),
            ring,
            same,
            value: None,
            uniform: true,
            slot: 0,
            next_row: start,
        }
    }

    /// Where the masks of global row `row` go, as [`scan_row`](super::runs) writes them.
    /// Rows come in order, each followed by [`join`](Self::join).
    pub fn masks_mut(&mut self, row: usize) -> &mut [BlockMasks] {
        debug_assert_eq!(row, self.next_row, "rows are scanned in order");
        self.next_row = row + 1;
        self.slot = if row == self.start || self.slot + 1 == self.ring.rows { 0 } else { self.slot + 1 };
        self.ring.has_ids[self.slot] = false;
        let words = self.ring.words;
        &mut self.ring.masks[self.slot * words..(self.slot + 1) * words]
    }

    /// Joins the runs of global row `row`, just scanned (with its masks) into `runs`, with those of
    /// its earlier rows inside the band. `data` is the whole C-ordered volume.
    pub fn join(&mut self, parent: &mut [u32], data: &[A], runs: &Runs<A>, row: usize) {
        let nx = self.geom.nx;
        let cur = runs.row(row - self.start, 0);
        let Some(&first) = cur.values.first() else { return };
        let value = *self.value.get_or_insert(first);
        self.uniform &= cur.values.iter().fold(true, |all, &v| all & (v == value));
        if self.covers.any {
            self.same.fill([0; MAX_EARLIER_ROWS]);
        }
        let slot = self.slot;
        let columns_per_run = if self.uniform { MASK_COLUMNS_PER_RUN } else { MASK_COLUMNS_PER_RUN_MULTI };
        // One division for the row, not one per earlier row.
        let position = self.geom.position(row);
        for (i, nb) in self.earlier.iter().enumerate() {
            let Some(prev) = self.geom.offset_row(position, nb.dz, nb.dy).filter(|&prev| prev >= self.start) else {
                continue;
            };
            let prev_runs = runs.row(prev - self.start, 0);
            if !dense(cur, prev_runs, columns_per_run) {
                join_by_sweep(parent, cur, prev_runs, nb.diagonal);
                continue;
            }
            let prev_slot = self.ring.back(slot, row - prev);
            self.ring.record_ids(slot, cur);
            self.ring.record_ids(prev_slot, prev_runs);
            let ring = &self.ring;
            let rows = RowPair {
                cur: MaskedRow {
                    runs: cur,
                    data: &data[row * nx..][..nx],
                    masks: ring.masks(slot),
                    ids: ring.ids(slot),
                },
                prev: MaskedRow {
                    runs: prev_runs,
                    data: &data[prev * nx..][..nx],
                    masks: ring.masks(prev_slot),
                    ids: ring.ids(prev_slot),
                },
                uniform: self.uniform,
            };
            let spared_by = (&self.covers.overlap[i], &self.covers.diagonal[i]);
            if nb.diagonal {
                join_by_masks::<A, true>(parent, rows, &mut self.same, i, spared_by);
            } else {
                join_by_masks::<A, false>(parent, rows, &mut self.same, i, spared_by);
            }
        }
    }
}

/// A scanned row: its runs, voxels, masks, and the run of each foreground column.
#[derive(Clone, Copy)]
struct MaskedRow<'a, A> {
    runs: RowRuns<'a, A>,
    data: &'a [A],
    masks: &'a [BlockMasks],
    ids: &'a [u32],
}

/// A row and the earlier row it is compared with.
#[derive(Clone, Copy)]
struct RowPair<'a, A> {
    cur: MaskedRow<'a, A>,
    prev: MaskedRow<'a, A>,
    /// Whether every run of both rows holds one value.
    uniform: bool,
}

/// Whether two non-empty rows have at least one run per `columns_per_run` columns between them.
#[inline]
fn dense<A>(cur: RowRuns<'_, A>, prev: RowRuns<'_, A>, columns_per_run: usize) -> bool {
    let (n, m) = (cur.starts.len(), prev.starts.len());
    if n == 0 || m == 0 {
        return false;
    }
    let span = cur.ends[n - 1].max(prev.ends[m - 1]) - cur.starts[0].min(prev.starts[0]);
    (n + m) * columns_per_run >= span as usize
}

/// Joins the touching runs of `rows.cur` and its earlier row `rows.prev` (the earlier row
/// `row` of the current one) from their bit masks, and records in `same[..][row]` the columns
/// where the two rows hold the same value.
///
/// Shared columns of equal value form stretches; each stretch splits where a run starts, and
/// each piece lies in one pair of runs, which is joined (the runs are looked up by column). Two
/// runs that share no column but touch once widened by one (`DIAGONAL`) are next to each other:
/// one ends at the column where the other starts, which the end and start masks give (unless
/// the rows hold the same value beside that column: then the two runs' values differ). Each
/// candidate pair costs a fixed amount of work and one branch, taken only when the two runs are
/// not yet joined directly. Columns that `spared_by` (overlap, diagonal) spares, given the `same`
/// masks of the rows compared before, are left out.
#[inline(always)]
fn join_by_masks<A: MaskElement, const DIAGONAL: bool>(
    parent: &mut [u32],
    rows: RowPair<'_, A>,
    same: &mut [[u64; MAX_EARLIER_ROWS]],
    row: usize,
    (spared_overlap, spared_diagonal): (&[u64; MAX_EARLIER_ROWS], &[u64; MAX_EARLIER_ROWS]),
) {
    let RowPair { cur, prev, uniform } = rows;
    let (cr, pr) = (cur.runs, prev.runs);
    // No run of either row starts before block `lo` or ends after block `hi`.
    let lo = cr.starts[0].min(pr.starts[0]) as usize / BLOCK;
    let hi = (cr.ends[cr.ends.len() - 1].max(pr.ends[pr.ends.len() - 1]) as usize).div_ceil(BLOCK);
    let (mut carry, mut ending_carry, mut equal_carry) = (0, 0, 0);
    // A plain range of blocks: iterators that skip to `lo` compile to a call per row pair, or to
    // more bounds checks.
    #[allow(clippy::needless_range_loop)]
    for w in lo..hi {
        let (c, p, same) = (&cur.masks[w], &prev.masks[w], &mut same[w]);
        // Columns of equal values (in rows of one value: where both are foreground), and the
        // diagonal contacts that cannot join two runs. At a contact (x), each row changes value
        // between columns x - 1 and x, so its two runs can hold one value only where the rows
        // differ at both columns: contacts where the rows are equal at x or x - 1 are futile. In
        // multi-label masks most contacts are such: the boundary between the same two regions, in
        // both rows. In rows of one value, none is.
        let (equal, futile) = if uniform {
            (p.foreground, 0)
        } else {
            let equal = equal_mask(cur.data, prev.data, w);
            let futile = equal | equal << 1 | equal_carry;
            equal_carry = equal >> 63;
            (equal, futile)
        };
        let equal = equal & c.foreground;
        same[row] = equal;
        // Pieces: the first column of each stretch of wanted columns, and every run start of
        // `cur` in it. Inside a stretch both rows hold the same values, so a run of one row
        // starts wherever a run of the other does.
        let wanted = equal & !spared(same, spared_overlap);
        let mut pieces = wanted & (!(wanted << 1 | carry) | c.starts);
        carry = wanted >> 63;
        while pieces != 0 {
            let x = w * BLOCK + pieces.trailing_zeros() as usize;
            pieces &= pieces - 1;
            join_runs(parent, cur.ids[x], prev.ids[x]);
        }
        if DIAGONAL {
            let skip = spared(same, spared_diagonal);
            // A run of `cur` ends at column x where one of `prev` starts: (x - 1, x) touch.
            let mut contacts = c.ends & p.starts & !(skip << 1 | ending_carry | futile);
            ending_carry = skip >> 63;
            while contacts != 0 {
                let x = w * BLOCK + contacts.trailing_zeros() as usize;
                contacts &= contacts - 1;
                // The rows differ at both columns here, but the two runs may still differ.
                if cur.data[x - 1] == prev.data[x] {
                    join_runs(parent, cur.ids[x - 1], prev.ids[x]);
                }
            }
            // A run of `cur` starts at column x where one of `prev` ends: (x, x - 1) touch.
            let mut contacts = c.starts & p.ends & !(skip | futile);
            while contacts != 0 {
                let x = w * BLOCK + contacts.trailing_zeros() as usize;
                contacts &= contacts - 1;
                if cur.data[x] == prev.data[x - 1] {
                    join_runs(parent, cur.ids[x], prev.ids[x - 1]);
                }
            }
        }
    }
}

/// Joins runs `a` and `b`, unless they already point at the same parent: the common case in dense
/// masks, since a union points both at the root.
#[inline(always)]
fn join_runs(parent: &mut [u32], a: u32, b: u32) {
    if parent[a as usize] != parent[b as usize] {
        union_find::union(parent, a, b);
    }
}

/// The columns of block `w` where rows `a` and `b` hold equal values, as a bit mask.
#[inline(always)]
fn equal_mask<A: MaskElement>(a: &[A], b: &[A], w: usize) -> u64 {
    let (a, b) = (&a[w * BLOCK..], &b[w * BLOCK..]);
    match (a.first_chunk::<BLOCK>(), b.first_chunk::<BLOCK>()) {
        (Some(a), Some(b)) => A::equal_bits(a, b),
        // The last block of a row: padded with equal values, outside the row's columns.
        _ => {
            let mut pa = [A::default(); BLOCK];
            let mut pb = [A::default(); BLOCK];
            pa[..a.len()].copy_from_slice(a);
            pb[..b.len()].copy_from_slice(b);
            A::equal_bits(&pa, &pb)
        }
    }
}

/// Joins every run of `cur` with the runs of the earlier row `prev` that it touches, run by run:
/// for sparse rows and across band boundaries.
///
/// Both rows are sorted and non-overlapping, so one sweep with a monotone lower bound visits each
/// run a bounded number of times. The root of the current run is kept across its unions, so each
/// touching run costs one `find`, and none when its parent already is that root (the common case
/// in dense masks, where earlier unions have pointed most runs at their root).
#[inline]
pub(crate) fn join_by_sweep<A: MaskElement>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::runs::tests::{random_row, scan_rows};
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// Both ways of joining two rows find exactly the touching pairs that a check of every pair
    /// finds, on dense and sparse, binary and multi-label rows, across block edges.
    #[test]
    fn masks_and_sweep_join_exactly_the_touching_runs() {
        let mut rng = SmallRng::seed_from_u64(13);
        let (mut pieces, mut contacts) = (0, 0);
        for values in [1, 3] {
            for _ in 0..400 {
                let len = 1 + rng.random_range(0..200) as usize;
                let rows = [random_row(&mut rng, len, values), random_row(&mut rng, len, values)];
                let (runs, masks) = scan_rows(&rows);
                let (prev, cur) = (runs.row(0, 0), runs.row(1, 0));
                if prev.starts.is_empty() || cur.starts.is_empty() {
                    continue;
                }
                let one_value = prev.values.iter().chain(cur.values).all(|&v| v == cur.values[0]);
                for diagonal in [false, true] {
                    // Every pair, checked directly.
                    let mut expected: Vec<u32> = (0..runs.len() as u32).collect();
                    for i in 0..cur.starts.len() {
                        for j in 0..prev.starts.len() {
                            let w = u32::from(diagonal);
                            let touch = prev.starts[j] < cur.ends[i] + w && cur.starts[i] < prev.ends[j] + w;
                            if touch && cur.values[i] == prev.values[j] {
                                let overlap = prev.starts[j] < cur.ends[i] && cur.starts[i] < prev.ends[j];
                                *if overlap { &mut pieces } else { &mut contacts } += 1;
                                let root = union_find::find(&mut expected, prev.first + j as u32);
                                union_find::link(&mut expected, root, cur.first + i as u32);
                            }
                        }
                    }
                    union_find::number_roots(&mut expected);

                    let mut swept: Vec<u32> = (0..runs.len() as u32).collect();
                    join_by_sweep(&mut swept, cur, prev, diagonal);
                    union_find::number_roots(&mut swept);
                    assert_eq!(swept, expected, "sweep {rows:?} diagonal {diagonal}");

                    let mut ring = MaskRing::new(len, 2);
                    for (slot, (row_masks, row_runs)) in masks.iter().zip([prev, cur]).enumerate() {
                        ring.masks[slot * ring.words..(slot + 1) * ring.words].copy_from_slice(row_masks);
                        ring.record_ids(slot, row_runs);
                    }
                    // Rows of one value are joined both ways: by their foreground and by value.
                    for uniform in [false, one_value] {
                        let masked = |slot: usize, runs| MaskedRow {
                            runs,
                            data: &rows[slot][..],
                            masks: ring.masks(slot),
                            ids: ring.ids(slot),
                        };
                        let pair = RowPair { cur: masked(1, cur), prev: masked(0, prev), uniform };
                        let mut joined: Vec<u32> = (0..runs.len() as u32).collect();
                        let mut same = vec![[0; MAX_EARLIER_ROWS]; ring.words];
                        let none = &[0; MAX_EARLIER_ROWS];
                        if diagonal {
                            join_by_masks::<u8, true>(&mut joined, pair, &mut same, 0, (none, none));
                        } else {
                            join_by_masks::<u8, false>(&mut joined, pair, &mut same, 0, (none, none));
                        }
                        union_find::number_roots(&mut joined);
                        assert_eq!(joined, expected, "masks {rows:?} diagonal {diagonal} uniform {uniform}");
                        // The recorded matches: where both rows hold the same foreground value.
                        for x in 0..len {
                            let bit = same[x / BLOCK][0] >> (x % BLOCK) & 1 == 1;
                            assert_eq!(bit, rows[1][x] != 0 && rows[1][x] == rows[0][x], "column {x} of {rows:?}");
                        }
                    }
                }
            }
        }
        assert!(pieces > 1000 && contacts > 100, "{pieces} overlapping and {contacts} diagonal pairs");
    }

    /// A match in an earlier row spares exactly the comparisons with the rows whose voxels touch
    /// the matched voxel: the row below and the row before spare each other's neighbours.
    #[test]
    fn covers_spare_what_a_match_implies() {
        let pairs = |spared: &[[u64; MAX_EARLIER_ROWS]; MAX_EARLIER_ROWS]| {
            let mut pairs = Vec::new();
            for (i, row) in spared.iter().enumerate() {
                for (j, &by) in row.iter().enumerate() {
                    if by == u64::MAX {
                        pairs.push((i, j));
                    } else {
                        assert_eq!(by, 0);
                    }
                }
            }
            pairs
        };
        // Earlier rows, in order: below (dz -1), before (dy -1), below-before, below-after.
        let twenty_six = Covers::new(Connectivity::TwentySix);
        assert_eq!(pairs(&twenty_six.overlap), [(1, 0), (2, 0), (2, 1), (3, 0)]);
        assert_eq!(pairs(&twenty_six.diagonal), [(1, 0), (2, 0), (2, 1), (3, 0)]);
        // With 18, the voxel below touches the row before only on its own column.
        let eighteen = Covers::new(Connectivity::Eighteen);
        assert_eq!(pairs(&eighteen.overlap), [(1, 0), (2, 0), (2, 1), (3, 0)]);
        assert!(pairs(&eighteen.diagonal).is_empty());
        for c in [Connectivity::Six, Connectivity::Four, Connectivity::Eight] {
            assert_eq!(Covers::new(c), Covers::default(), "{c:?}");
        }
        assert!(twenty_six.any && eighteen.any);
    }
}
