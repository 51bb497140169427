//! The branches of the CC family: every cell of a partition scored from its sums, the mean over
//! an element's cells, and the whole-volume fallback of an element without cells; the branches'
//! rows one above the other, scored by the same tensor operations.

use burn::tensor::{Bool, Tensor, TensorData};

use super::bicc::{BiccLossConfig, CellTerms, EmptyCellLoss};

/// The sums of the branches, `[branches * B, bins]` each (branch after branch), in the bin
/// layout of [`Cells::bin_map`](super::cell_maps::Cells::bin_map) for `largest` cells.
pub(crate) struct BranchSums {
    /// `sum p`.
    pub p: Tensor<2>,
    /// The voxel count.
    pub count: Tensor<2>,
    /// `sum p^2`, for the detached term of cells without ground truth.
    pub p2: Option<Tensor<2>>,
    /// The summed cross-entropy, when the terms have it.
    pub ce: Option<Tensor<2>>,
    /// The largest cell id.
    pub largest: usize,
}

impl BranchSums {
    /// The foreground bins of cells `1..=largest`, `[B, largest]`.
    fn foreground(&self, t: &Tensor<2>) -> Tensor<2> {
        let [rows, _] = t.dims();
        t.clone().slice([0..rows, 2..self.largest + 2])
    }

    /// The background bins of cells `1..=largest`, `[B, largest]`.
    fn background(&self, t: &Tensor<2>) -> Tensor<2> {
        let [rows, bins] = t.dims();
        t.clone().slice([0..rows, self.largest + 2..bins])
    }

    /// Both bins of every cell `1..=largest`, summed.
    fn cell(&self, t: &Tensor<2>) -> Tensor<2> {
        self.foreground(t) + self.background(t)
    }

    /// Every foreground bin (target 1) of an element, summed: `[B, 1]`.
    fn all_foreground(&self, t: &Tensor<2>) -> Tensor<2> {
        let [rows, _] = t.dims();
        t.clone().slice([0..rows, 1..self.largest + 2]).sum_dim(1)
    }
}

/// The loss of every element in every branch, `[branches * B]`: the mean of its cells' terms,
/// or the whole-volume Dice (and mean cross-entropy) where it has no cell. `smooth`: each
/// branch's Dice smoothing. A cell without ground truth scores the detached term wherever `sum
/// p^2` was summed (a branch whose cells all hold ground truth has none).
pub(crate) fn branch_rows(config: &BiccLossConfig, sums: &BranchSums, smooth: &[f64]) -> Tensor<1> {
    let [rows, _] = sums.p.dims();
    let smooth = Smoothing::of(smooth, &sums.p);
    let smooth = &smooth;
    let fallback = whole_volume(config, sums, smooth);
    if sums.largest == 0 {
        return fallback.reshape([rows]);
    }
    let n = sums.cell(&sums.count);
    let g = sums.foreground(&sums.count);
    let p = sums.cell(&sums.p);
    let i = sums.foreground(&sums.p);
    let mut term = None;
    if config.terms != CellTerms::CrossEntropy {
        let dice = dice(p.clone(), g.clone(), i, smooth, config.dice_floor);
        let dice = match (config.empty_cell_loss, &sums.p2) {
            (EmptyCellLoss::Detached, Some(p2)) => {
                let empty: Tensor<2, Bool> = g.lower_elem(0.5);
                // `sum(p sg(p)) / sg(sum p)`: the value `sum p^2 / sum p`, the gradient `p / sum p`
                // (half of `d(sum p^2) = 2p`, the other half's value detached).
                let half = sums.cell(p2) / (p.detach().clamp_min(config.dice_floor) * 2.0);
                dice.mask_where(empty, half.clone() + half.detach())
            }
            _ => dice,
        };
        term = Some(dice);
    }
    if let Some(ce) = &sums.ce {
        let mean = sums.cell(ce) / n.clone().clamp_min(1.0);
        term = Some(match term {
            Some(t) => t + mean,
            None => mean,
        });
    }
    let term = term.expect("the terms have Dice or cross-entropy");
    let absent = n.clone().lower_elem(0.5);
    let cells = n.clamp_max(1.0).sum_dim(1); // [B, 1]: the element's non-empty cells
    let mean = term.mask_fill(absent, 0.0).sum_dim(1) / cells.clone().clamp_min(1.0);
    mean.mask_where(cells.lower_elem(0.5), fallback).reshape([rows])
}

/// The Dice smoothing of every row: one value, or one per branch.
enum Smoothing {
    All(f64),
    /// `[branches * B, 1]`.
    Rows(Box<Tensor<2>>),
}

impl Smoothing {
    /// The smoothing of each branch's rows of `like` (`[branches * B, ..]`).
    fn of(smooth: &[f64], like: &Tensor<2>) -> Self {
        match smooth {
            [first, rest @ ..] if rest.iter().all(|s| s == first) => Self::All(*first),
            _ => {
                let per_branch = like.dims()[0] / smooth.len();
                let rows: Vec<f64> = smooth.iter().flat_map(|&s| std::iter::repeat_n(s, per_branch)).collect();
                let rows = TensorData::new(rows, [like.dims()[0], 1]);
                Self::Rows(Box::new(Tensor::from_data(rows, (&like.device(), like.dtype()))))
            }
        }
    }

    /// `t + s`, row by row.
    fn add(&self, t: Tensor<2>) -> Tensor<2> {
        match self {
            Self::All(s) => t + *s,
            Self::Rows(s) => t + s.as_ref().clone(),
        }
    }
}

/// `1 - (2 I + s) / max(P + G + s, floor)`.
fn dice(p: Tensor<2>, g: Tensor<2>, i: Tensor<2>, smooth: &Smoothing, floor: f64) -> Tensor<2> {
    (smooth.add(i * 2.0) / smooth.add(p + g).clamp_min(floor)).neg() + 1.0
}

/// The loss of each element of each branch as one region (plain Dice even with the detached
/// empty-cell term), `[branches * B, 1]`.
fn whole_volume(config: &BiccLossConfig, sums: &BranchSums, smooth: &Smoothing) -> Tensor<2> {
    let p = sums.p.clone().sum_dim(1);
    let g = sums.all_foreground(&sums.count);
    let i = sums.all_foreground(&sums.p);
    let mut loss = p.zeros_like();
    if config.terms != CellTerms::CrossEntropy {
        loss = loss + dice(p, g, i, smooth, config.dice_floor);
    }
    if let Some(ce) = &sums.ce {
        loss = loss + ce.clone().sum_dim(1) / sums.count.clone().sum_dim(1).clamp_min(1.0);
    }
    loss
}
