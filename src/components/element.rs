//! The element types that masks may hold.

mod sealed {
    pub trait Sealed {}
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
        impl sealed::Sealed for $t {}
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

impl sealed::Sealed for bool {}
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
