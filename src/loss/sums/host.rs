//! Building blocks of the passes over host memory (flex): the sums' passes
//! ([`flex`](super::flex)) and the loss's bin pass share them.

use std::ops::Add;

use pulp::Arch;

/// Voxels per parallel task of a host pass, at least.
pub(crate) const TASK_VOXELS: usize = 1 << 15;

/// An integer id read on the host (`i32`, flex's default, or `i64`).
pub(crate) trait HostId: Copy + Ord + Default + Send + Sync + Into<i64> + Add<Output = Self> {
    /// `value`, which fits (a bin index below the ids' own largest).
    fn from_i64(value: i64) -> Self;

    /// The id as a bin index (checked in range by the caller).
    #[inline(always)]
    fn bin(self) -> usize {
        let id: i64 = self.into();
        id as usize
    }
}

impl HostId for i32 {
    #[inline(always)]
    fn from_i64(value: i64) -> Self {
        value as i32
    }
}

impl HostId for i64 {
    #[inline(always)]
    fn from_i64(value: i64) -> Self {
        value
    }
}

/// Runs `task` compiled for the widest vector instructions the CPU offers (AVX2 where it has
/// them, found at run time; SSE2 otherwise): [`pulp`]'s run-time dispatch, under which the loops
/// inlined into `task` vectorise: callers mark the closure `#[inline(always)]`, or its body stays
/// a call compiled for the baseline target. Every path gives the same bits (Rust does not
/// contract floating-point operations).
#[inline(always)]
pub(crate) fn vectorised<T>(task: impl FnOnce() -> T) -> T {
    Arch::new().dispatch(task)
}
