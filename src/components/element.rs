//! The element types that masks may hold.

use super::bits::{self, BLOCK};

mod sealed {
    use super::BLOCK;

    /// Seals [`MaskElement`](super::MaskElement), and holds what the scan needs of an element
    /// type but users do not.
    pub trait Sealed: Sized + PartialEq {
        /// The columns `k` of a block where `a[k] == b[k]`, in bit `k`: one-byte types compare
        /// 16 voxels per instruction ([`equal_bytes`](super::bits::equal_bytes)).
        #[inline(always)]
        fn equal_bits(a: &[Self; BLOCK], b: &[Self; BLOCK]) -> u64 {
            super::bits::equal_bits(a, b)
        }
    }
}

/// An element type of a mask or class map: `bool` or any primitive integer.
///
/// The background is `Self::default()` (`0` or `false`). Two voxels can only belong to the same
/// component when they hold the same value, so multi-label masks keep touching regions of
/// different classes apart.
///
/// This trait is sealed: it is implemented for `bool`, `u8`..`u64`, `usize`, `i8`..`i64` and
/// `isize`.
///
/// # Example
/// ```
/// use blob_loss::components::MaskElement;
///
/// assert_eq!(3u8.class_index(), Some(3));
/// assert_eq!((-1i32).class_index(), None);
/// assert_eq!(true.class_index(), Some(1));
/// ```
pub trait MaskElement: Copy + PartialEq + Default + Send + Sync + std::fmt::Debug + sealed::Sealed {
    /// The value as a class index, or `None` when it is negative.
    fn class_index(self) -> Option<usize>;

    /// The value widened to `i128`, for error messages.
    fn as_i128(self) -> i128;
}

macro_rules! impl_integer {
    ($($t:ty),*) => {$(
        impl MaskElement for $t {
            #[inline]
            fn class_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
            #[inline]
            fn as_i128(self) -> i128 {
                self as i128
            }
        }
    )*};
}

impl_integer!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// Wider types compare element by element ([`bits::equal_bits`]).
macro_rules! impl_sealed {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
    )*};
}

impl_sealed!(u16, u32, u64, usize, i16, i32, i64, isize);

// One-byte types compare 16 voxels per instruction ([`bits::equal_bytes`]); `i8` and `bool` as
// their bytes (the same value, the same byte).
impl sealed::Sealed for u8 {
    #[inline(always)]
    fn equal_bits(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> u64 {
        bits::equal_bytes(a, b)
    }
}

impl sealed::Sealed for i8 {
    #[inline(always)]
    fn equal_bits(a: &[i8; BLOCK], b: &[i8; BLOCK]) -> u64 {
        bits::equal_bytes(&a.map(i8::cast_unsigned), &b.map(i8::cast_unsigned))
    }
}

impl sealed::Sealed for bool {
    #[inline(always)]
    fn equal_bits(a: &[bool; BLOCK], b: &[bool; BLOCK]) -> u64 {
        bits::equal_bytes(&a.map(u8::from), &b.map(u8::from))
    }
}

impl MaskElement for bool {
    #[inline]
    fn class_index(self) -> Option<usize> {
        Some(usize::from(self))
    }
    #[inline]
    fn as_i128(self) -> i128 {
        i128::from(self)
    }
}
