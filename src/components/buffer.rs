//! The buffers that labelling allocates: the labels that [`label`](super::label) and the batched
//! helpers return, the scratch run lists, and the aligned maps of the CC family's bins
//! ([`AlignedZeros`]).
//!
//! A fresh allocation of many MiB is mapped lazily: each page is cleared and mapped by the kernel
//! when it is first written. With 4 KiB pages that is one fault per 1,024 labels, about as costly
//! as the labelling itself on a sparse 256³ mask (glibc maps every block over 32 MiB anew on each
//! allocation). Large buffers are therefore advised to use transparent huge pages, as numpy does
//! for every array of 4 MiB or more: one fault per 2 MiB. A vector's allocation starts just past
//! a 4 KiB page, so only the whole huge pages inside it can be huge; [`AlignedZeros`] aligns its
//! own allocation to a huge page, so all of it can.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::ptr::NonNull;

use ndarray::{Array, Dimension};
use rayon::prelude::*;

use crate::Error;

/// Buffers of at least this many bytes are advised to use huge pages: numpy's threshold.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// The transparent huge page size of x86-64 (and of aarch64 with 4 KiB pages); a multiple of every
/// base page size up to it, so a range aligned to it is page-aligned.
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// A buffer of `len` zero labels; large ones backed by transparent huge pages where Linux offers
/// them (its `transparent_hugepage` mode is `always` or `madvise`).
fn zeroed_labels(len: usize) -> Vec<u32> {
    let mut labels = vec![0u32; len];
    advise_huge_pages(&mut labels);
    labels
}

/// A zeroed label array of shape `dim`, backed as [`zeroed_labels`].
///
/// # Errors
/// [`Error::InvalidArgument`] when the shape holds more labels than memory can address.
pub(crate) fn zeroed_label_array<D: Dimension>(dim: D) -> Result<Array<u32, D>, Error> {
    let len = dim
        .size_checked()
        .filter(|&n| n <= isize::MAX as usize / size_of::<u32>())
        .ok_or_else(|| Error::InvalidArgument(format!("labels of shape {:?} do not fit in memory", dim.slice())))?;
    Ok(Array::from_shape_vec(dim, zeroed_labels(len)).expect("one label per voxel"))
}

/// An empty vector with room for `capacity` elements, backed by huge pages as [`zeroed_labels`].
pub(crate) fn with_capacity<T>(capacity: usize) -> Vec<T> {
    let mut buffer = Vec::with_capacity(capacity);
    advise_huge_pages(buffer.spare_capacity_mut());
    buffer
}

/// A zeroed `u32` buffer in an allocation of its own: one of [`HUGE_PAGE_MIN_BYTES`] or more
/// takes whole huge pages, aligned to [`HUGE_PAGE_BYTES`] and advised to use them before
/// anything is written, so that every page of it may be a huge page (a vector's allocation
/// starts a few bytes past a 4 KiB page, which leaves up to a huge page at each end in 4 KiB
/// pages: half of a 4 MiB map). For the large maps made on every training step (the CC family's
/// bin maps, handed to a tensor without a copy through [`AsRef<[u8]>`]); zeroed in parallel.
pub(crate) struct AlignedZeros {
    ptr: NonNull<u32>,
    len: usize,
    /// The allocation's layout; `None` for an empty buffer, which allocates nothing.
    layout: Option<Layout>,
}

// SAFETY: an `AlignedZeros` owns its allocation alone, as a `Vec<u32>` does: no other value
// points into it, so it may move to another thread (`Send`), and `&AlignedZeros` only reads
// through shared borrows (`Sync`).
#[allow(unsafe_code)]
unsafe impl Send for AlignedZeros {}
#[allow(unsafe_code)]
unsafe impl Sync for AlignedZeros {}

impl AlignedZeros {
    /// `len` zeros.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `len` values do not fit in memory.
    #[allow(unsafe_code)]
    pub(crate) fn new(len: usize) -> Result<Self, Error> {
        let too_large = || Error::InvalidArgument(format!("a buffer of {len} values does not fit in memory"));
        let bytes = len.checked_mul(size_of::<u32>()).ok_or_else(too_large)?;
        if bytes == 0 {
            return Ok(Self { ptr: NonNull::dangling(), len: 0, layout: None });
        }
        // A large buffer takes whole huge pages (its last one too), aligned.
        let (size, align) = if bytes >= HUGE_PAGE_MIN_BYTES {
            (bytes.checked_next_multiple_of(HUGE_PAGE_BYTES).ok_or_else(too_large)?, HUGE_PAGE_BYTES)
        } else {
            (bytes, align_of::<u32>())
        };
        let layout = Layout::from_size_align(size, align).map_err(|_| too_large())?;
        // SAFETY: `layout` has a non-zero size (`size >= bytes > 0`).
        let Some(ptr) = NonNull::new(unsafe { alloc(layout) }.cast::<u32>()) else { handle_alloc_error(layout) };
        // SAFETY: the allocation holds `size / 4 >= len` `u32` (its size is a multiple of 4) and
        // is aligned for them (to 4 bytes at least); nothing else points into it.
        // `MaybeUninit<u32>` has the layout of `u32` and no validity requirement, so a slice of it
        // over memory not yet written is sound.
        let uninit = unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr().cast::<MaybeUninit<u32>>(), size / 4) };
        advise_huge_pages(uninit);
        let values = &mut uninit[..len];
        if cfg!(miri) {
            // Rayon's work-stealing deque (crossbeam-epoch) breaks miri's Stacked Borrows rules on
            // its own, and a loop over a million values takes miri minutes: miri zeroes the bytes
            // at once (the parallel loop below is safe code).
            // SAFETY: `values` is `len` `MaybeUninit<u32>` of this allocation, borrowed mutably;
            // zero bytes are a valid value of them.
            unsafe { values.as_mut_ptr().write_bytes(0, values.len()) };
        } else {
            values.par_chunks_mut(ZEROING_CHUNK).for_each(|chunk| chunk.fill(MaybeUninit::new(0)));
        }
        Ok(Self { ptr, len, layout: Some(layout) })
    }

    /// The values.
    #[allow(unsafe_code)]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u32] {
        // SAFETY: `ptr` points to `len` initialised `u32` (zeroed in `new`, then written only
        // through this slice), or is dangling and aligned with `len` 0; `&mut self` borrows them
        // exclusively for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The values.
    #[allow(unsafe_code)]
    pub(crate) fn as_slice(&self) -> &[u32] {
        // SAFETY: as in `as_mut_slice`, borrowed shared for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedZeros {
    fn as_ref(&self) -> &[u8] {
        bytes_of(self.as_slice())
    }
}

/// The bytes of `values`, native-endian.
#[allow(unsafe_code)]
fn bytes_of(values: &[u32]) -> &[u8] {
    // SAFETY: `values` is `size_of_val(values)` initialised bytes, aligned for `u8`, borrowed
    // shared for the result's lifetime; `u32` has no padding.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) }
}

impl Drop for AlignedZeros {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: `ptr` was returned by `alloc(layout)` with this `layout`, and is freed once.
            unsafe { dealloc(self.ptr.as_ptr().cast::<u8>(), layout) };
        }
    }
}

/// Values zeroed per parallel task by [`AlignedZeros::new`].
const ZEROING_CHUNK: usize = 1 << 16;

/// The offsets, from the start of a buffer at address `addr` of `bytes` bytes, of its whole
/// [`HUGE_PAGE_BYTES`]-aligned pages, if it is large enough to be advised and has any.
fn huge_page_offsets(addr: usize, bytes: usize) -> Option<Range<usize>> {
    if bytes < HUGE_PAGE_MIN_BYTES {
        return None;
    }
    let start = addr.next_multiple_of(HUGE_PAGE_BYTES) - addr;
    let end = (addr + bytes) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES - addr;
    (start < end).then_some(start..end)
}

/// Asks the kernel to back the whole huge pages inside `memory` with transparent huge pages.
/// Advice only: contents (initialised or not) are unchanged, and a kernel without transparent
/// huge pages, or one that refuses, leaves the buffer as it was.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn advise_huge_pages<T>(memory: &mut [T]) {
    let base = memory.as_mut_ptr().cast::<u8>();
    let Some(offsets) = huge_page_offsets(base as usize, size_of_val(memory)) else { return };
    let start = base.wrapping_add(offsets.start).cast::<libc::c_void>();
    // SAFETY: `madvise` with `MADV_HUGEPAGE` reads and writes no memory of the process and does not
    // change what it holds: it marks the range so that later page faults in it may be served by
    // huge pages (pages already present keep their contents when collapsed). The range
    // `start..start + offsets.len()` lies inside `memory` (offsets within its size in bytes, by
    // `huge_page_offsets`), which is borrowed mutably for the call, so no other code observes
    // it meanwhile. The start is aligned to 2 MiB, hence page-aligned as `madvise`
    // requires. Its result is advice: an error (EINVAL without THP support) changes nothing and
    // is ignored.
    let _ = unsafe { libc::madvise(start, offsets.len(), libc::MADV_HUGEPAGE) };
}

/// No transparent huge pages to ask for outside Linux.
#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_memory: &mut [T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_offsets_are_whole_aligned_pages_inside_the_buffer() {
        const MIB: usize = 1 << 20;
        // Too small to be advised, whatever its alignment.
        assert_eq!(huge_page_offsets(0, HUGE_PAGE_MIN_BYTES - 1), None);
        // Aligned: every page.
        assert_eq!(huge_page_offsets(64 * MIB, 8 * MIB), Some(0..8 * MIB));
        // Misaligned at both ends: the pages strictly inside.
        let addr = 64 * MIB + 16;
        assert_eq!(huge_page_offsets(addr, 8 * MIB), Some(2 * MIB - 16..8 * MIB - 16));
        // Just large enough, halfway between pages: the one page inside.
        assert_eq!(huge_page_offsets(MIB, HUGE_PAGE_MIN_BYTES), Some(MIB..3 * MIB));
        for addr in [0, 16, 4096, MIB + 8, 2 * MIB - 4] {
            for bytes in [4 * MIB, 4 * MIB + 4, 5 * MIB, 64 * MIB + 12] {
                let r = huge_page_offsets(addr, bytes).unwrap();
                assert!(r.end <= bytes && r.start < r.end, "{addr} {bytes}: {r:?}");
                assert_eq!((addr + r.start) % HUGE_PAGE_BYTES, 0);
                assert_eq!((addr + r.end) % HUGE_PAGE_BYTES, 0);
                // Whole pages only: less than one page lost at each end.
                assert!(r.start < HUGE_PAGE_BYTES && bytes - r.end < HUGE_PAGE_BYTES);
            }
        }
    }

    /// Runs the `madvise` call on a real buffer, also under miri (`scripts/miri.sh` hands the call
    /// to the kernel): the labels stay zero and writable.
    #[test]
    fn zeroed_labels_are_zero_after_the_advice() {
        // Miri interprets every read: it checks one label in 1,021 (a prime, so every offset
        // within a page is visited), natively every one.
        let stride = if cfg!(miri) { 1021 } else { 1 };
        for len in [0, 5, HUGE_PAGE_MIN_BYTES / 4 + 3] {
            let mut labels = zeroed_labels(len);
            assert_eq!(labels.len(), len);
            assert!(labels.iter().step_by(stride).chain(labels.last()).all(|&l| l == 0));
            if let Some(last) = labels.last_mut() {
                *last = 7;
                assert_eq!(labels[len - 1], 7);
            }
        }
    }

    /// Aligned buffers start zero and keep what is written, empty, small and large (aligned to a
    /// huge page, and advised: also under miri, `scripts/miri.sh` hands the call to the kernel);
    /// their bytes are their values'. Too many values for memory is an error.
    #[test]
    fn aligned_zeros_start_zero_and_keep_their_values() {
        let stride = if cfg!(miri) { 1021 } else { 1 };
        for len in [0, 5, HUGE_PAGE_MIN_BYTES / 4 + 3] {
            let mut buffer = AlignedZeros::new(len).unwrap();
            let values = buffer.as_slice();
            assert_eq!(values.len(), len);
            assert!(values.iter().step_by(stride).chain(values.last()).all(|&v| v == 0));
            if 4 * len >= HUGE_PAGE_MIN_BYTES {
                assert_eq!(values.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
            }
            if let Some(last) = buffer.as_mut_slice().last_mut() {
                *last = 0x0102_0304;
            }
            let bytes: &[u8] = buffer.as_ref();
            assert_eq!(bytes.len(), 4 * len);
            if len > 0 {
                assert_eq!(bytes[4 * len - 4..], 0x0102_0304u32.to_ne_bytes());
            }
        }
        assert!(matches!(AlignedZeros::new(usize::MAX / 2), Err(Error::InvalidArgument(_))));
    }

    /// Scratch vectors are advised before anything is written: they fill as any vector.
    #[test]
    fn scratch_vectors_fill_after_the_advice() {
        for capacity in [0, 3, HUGE_PAGE_MIN_BYTES / 4 + 1] {
            let mut runs: Vec<u32> = with_capacity(capacity);
            assert!(runs.is_empty() && runs.capacity() >= capacity);
            let n = capacity.min(5000);
            runs.extend(0..n as u32);
            assert!(runs.iter().enumerate().all(|(i, &r)| r == i as u32));
        }
    }

    /// Whether the kernel lists the huge-page flag (`hg`) for the mapping that holds `addr`.
    #[cfg(target_os = "linux")]
    fn advised(addr: usize) -> bool {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let flags = smaps.lines().find_map(|line| {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((Ok(lo), Ok(hi))) =
                range.map(|(lo, hi)| (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)))
            {
                inside = (lo..hi).contains(&addr);
            }
            line.strip_prefix("VmFlags:").filter(|_| inside)
        });
        flags.expect("the buffer's mapping is listed").split_whitespace().any(|f| f == "hg")
    }

    /// The advice reaches the buffers' own mappings, for labels and scratch alike.
    #[cfg(target_os = "linux")]
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn large_buffers_are_advised_to_use_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !thp.contains("[always]") && !thp.contains("[madvise]") {
            eprintln!("no transparent huge pages here: {thp:?}");
            return;
        }
        let len = 3 * HUGE_PAGE_MIN_BYTES / 4;
        let labels = zeroed_labels(len);
        let scratch: Vec<u32> = with_capacity(len);
        for addr in [labels.as_ptr() as usize, scratch.as_ptr() as usize] {
            let offsets = huge_page_offsets(addr, 4 * len).unwrap();
            assert!(advised(addr + offsets.start) && advised(addr + offsets.end - 1));
        }
        // An aligned buffer: every byte of it, the last huge page's too.
        for len in [len, len + 3] {
            let aligned = AlignedZeros::new(len).unwrap();
            let addr = aligned.as_slice().as_ptr() as usize;
            assert!(advised(addr) && advised(addr + 4 * len - 1));
        }
    }
}
