//! The buffers that labelling allocates: the labels that [`label`](super::label) and the batched
//! helpers return, and the scratch run lists.
//!
//! A fresh allocation of many MiB is mapped lazily: each page is cleared and mapped by the kernel
//! when it is first written. With 4 KiB pages that is one fault per 1,024 labels, about as costly
//! as the labelling itself on a sparse 256³ mask (glibc maps every block over 32 MiB anew on each
//! allocation). Large buffers are therefore advised to use transparent huge pages, as numpy does
//! for every array of 4 MiB or more: one fault per 2 MiB.

use std::ops::Range;

use ndarray::{Array, Dimension};

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
    }
}
