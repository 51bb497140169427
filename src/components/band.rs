//! A band of consecutive rows: its runs, scanned and joined as they come, and the labels
//! written back. [`label`](super::label) cuts a volume into bands, one per thread.

use std::ops::Range;

use super::buffer;
use super::connectivity::Connectivity;
use super::element::MaskElement;
use super::join::RowJoiner;
use super::runs::{Geometry, RowRuns, Runs, estimate_runs, scan_row};

/// The runs of a band of consecutive rows, with a union-find forest over them.
pub(crate) struct Band<A> {
    /// The rows this band covers.
    pub rows: Range<usize>,
    pub runs: Runs<A>,
    /// Parent links in band-local run indices.
    pub parent: Vec<u32>,
}

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
        let mut parent = buffer::with_capacity(capacity);
        let mut joiner = RowJoiner::new(geom, rows.start, connectivity);
        for row in rows.clone() {
            let first = runs.len();
            scan_row(&data[row * geom.nx..(row + 1) * geom.nx], &mut runs, joiner.masks_mut(row));
            if runs.len() > max_runs {
                return None;
            }
            runs.row_ptr.push(runs.len() as u32);
            if runs.len() > first {
                parent.extend(first as u32..runs.len() as u32);
                joiner.join(&mut parent, data, &runs, row);
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
    /// Short runs are written without a branch on their length: [`SHORT_WRITE`] copies of the label
    /// from the run's start, then as many zeros from its end. Runs are written in order, so each
    /// run's zeros wipe what its own labels wrote past its end, and the next run's labels
    /// overwrite those zeros where it starts. Longer runs, and runs near the end of the row, are
    /// filled.
    pub fn write(&self, labels: &[u32], out: &mut [u32], nx: usize, zeroed: bool) {
        let runs = &self.runs;
        for (i, out_row) in out.chunks_exact_mut(nx).enumerate() {
            let row_runs = runs.row_ptr[i] as usize..runs.row_ptr[i + 1] as usize;
            if !zeroed {
                out_row.fill(0);
            }
            let (starts, ends) = (&runs.starts[row_runs.clone()], &runs.ends[row_runs.clone()]);
            for ((&start, &end), &label) in starts.iter().zip(ends).zip(&labels[row_runs]) {
                let (start, end) = (start as usize, end as usize);
                match out_row.get_mut(start..end + SHORT_WRITE) {
                    Some(span) if end - start <= SHORT_WRITE => {
                        span[..SHORT_WRITE].copy_from_slice(&[label; SHORT_WRITE]);
                        span[end - start..][..SHORT_WRITE].copy_from_slice(&[0; SHORT_WRITE]);
                    }
                    _ => out_row[start..end].fill(label),
                }
            }
        }
    }
}

/// Runs of at most this many voxels are written with fixed-size stores: see [`Band::write`].
const SHORT_WRITE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::runs::tests::random_row;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Both ways of writing a run (fixed-size stores for short runs, fills for long ones and at
    /// the end of the row), into zeroed and into dirty buffers.
    #[test]
    fn write_gives_every_voxel_its_run_label() {
        let mut rng = SmallRng::seed_from_u64(12);
        let (mut short, mut long) = (0, 0);
        for nx in [1, 5, 9, 64, 300] {
            for rows in [1, 7] {
                for values in [1, 3] {
                    for _ in 0..20 {
                        let data: Vec<u8> = (0..rows).flat_map(|_| random_row(&mut rng, nx, values)).collect();
                        let geom = Geometry { nz: 1, ny: rows, nx };
                        let band = Band::scan(&data, geom, 0..rows, Connectivity::Four, usize::MAX).unwrap();
                        let labels: Vec<u32> = (0..band.runs.len()).map(|_| rng.next_u64() as u32 | 1).collect();
                        let mut expected = vec![0u32; data.len()];
                        for i in 0..rows {
                            let row_runs = band.runs.row_ptr[i] as usize..band.runs.row_ptr[i + 1] as usize;
                            for (k, &label) in row_runs.clone().zip(&labels[row_runs]) {
                                let (start, end) = (band.runs.starts[k] as usize, band.runs.ends[k] as usize);
                                if end - start <= SHORT_WRITE && end + SHORT_WRITE <= nx {
                                    short += 1;
                                } else {
                                    long += 1;
                                }
                                expected[i * nx + start..i * nx + end].fill(label);
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
        }
        assert!(short > 1000 && long > 1000, "{short} short and {long} long runs");
    }
}
