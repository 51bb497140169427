//! Bit masks of a block of [`BLOCK`] voxels: column `k` of the block in bit `k` of a `u64`.
//!
//! The scan and the mask join build every mask from element-wise comparisons of whole blocks.
//! [`equal_bits`] is the one primitive; for one-byte elements (`u8`, `i8`, `bool`) it compares
//! 16 voxels per instruction and gathers the results with SSE2's `movemask` on x86-64, the
//! one instruction that turns 16 comparisons into 16 bits and that the compiler does not emit on
//! its own; other element types and targets use [`pack_bits`].

/// Columns per block: the bits of a `u64` mask.
pub(crate) const BLOCK: usize = 64;

/// The columns `k` of a block where `a[k] == b[k]`, in bit `k`.
#[inline(always)]
pub(crate) fn equal_bits<T: PartialEq>(a: &[T; BLOCK], b: &[T; BLOCK]) -> u64 {
    let mut flags = [0u8; BLOCK];
    for ((f, x), y) in flags.iter_mut().zip(a).zip(b) {
        *f = u8::from(x == y);
    }
    pack_bits(&flags)
}

/// [`equal_bits`] for bytes: 16 comparisons per instruction, gathered by SSE2's `movemask`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
#[inline(always)]
pub(crate) fn equal_bytes(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    let (a, _) = a.as_chunks::<16>();
    let (b, _) = b.as_chunks::<16>();
    a.iter().zip(b).enumerate().fold(0, |bits, (i, (a, b))| {
        // SAFETY: the three intrinsics need SSE2, which this function is compiled only with
        // (`cfg(target_feature = "sse2")`, part of every x86-64 target's baseline), so the CPU
        // running it has them. `_mm_loadu_si128` reads 16 bytes from a pointer with no
        // alignment requirement: each pointer comes from a `&[u8; 16]`, so all 16 bytes are
        // initialised and readable for the borrow. The other two work on values only.
        let equal = unsafe {
            _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(a.as_ptr().cast()), _mm_loadu_si128(b.as_ptr().cast())))
        };
        // `movemask` sets the low 16 bits only, one per byte.
        bits | u64::from(equal as u16) << (16 * i)
    })
}

/// [`equal_bits`] for bytes, where SSE2 is not available.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn equal_bytes(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> u64 {
    equal_bits(a, b)
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// The bits, one column at a time.
    fn plain_equal_bits(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> u64 {
        (0..BLOCK).fold(0, |bits, k| bits | u64::from(a[k] == b[k]) << k)
    }

    /// Both ways give every column its bit: blocks that differ nowhere, everywhere, in single
    /// columns at each position (each 16-byte lane and its edges), and at random. Runs under miri
    /// (scripts/miri.sh), which checks the SSE2 path's loads.
    #[test]
    fn equal_bits_sets_the_bit_of_every_equal_column() {
        let mut rng = SmallRng::seed_from_u64(21);
        let mut cases = vec![([0u8; BLOCK], [0u8; BLOCK]), ([0; BLOCK], [255; BLOCK])];
        for k in 0..BLOCK {
            let mut b = [7; BLOCK];
            b[k] = 8;
            cases.push(([7; BLOCK], b));
        }
        for _ in 0..if cfg!(miri) { 20 } else { 2000 } {
            let values = 1 + rng.random_range(0..4) as u8;
            let a: [u8; BLOCK] = std::array::from_fn(|_| rng.random_range(0..u64::from(values)) as u8 * 85);
            let b: [u8; BLOCK] = std::array::from_fn(|_| rng.random_range(0..u64::from(values)) as u8 * 85);
            cases.push((a, b));
        }
        for (a, b) in &cases {
            let expected = plain_equal_bits(a, b);
            assert_eq!(equal_bytes(a, b), expected, "{a:?} {b:?}");
            assert_eq!(equal_bits(a, b), expected, "{a:?} {b:?}");
        }
        assert_eq!(equal_bytes(&cases[0].0, &cases[0].1), u64::MAX);
        assert_eq!(equal_bytes(&cases[1].0, &cases[1].1), 0);
    }

    #[test]
    fn pack_bits_keeps_the_column_order() {
        for k in 0..BLOCK {
            let mut flags = [0u8; BLOCK];
            flags[k] = 1;
            assert_eq!(pack_bits(&flags), 1 << k);
        }
        assert_eq!(pack_bits(&[1; BLOCK]), u64::MAX);
    }
}
