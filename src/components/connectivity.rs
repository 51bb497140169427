//! Which neighbours of a voxel belong to the same component.

use crate::Error;

/// The neighbourhood that connects two voxels of the same value.
///
/// Named by the neighbour count, as cc3d and scipy users know them: `Four` and `Eight` for 2D
/// images, `Six`, `Eighteen` and `TwentySix` for 3D volumes.
///
/// # Example
/// ```
/// use blob_loss::components::Connectivity;
///
/// let c = Connectivity::try_from(26).unwrap();
/// assert_eq!(c, Connectivity::TwentySix);
/// assert_eq!(c.ndim(), 3);
/// assert_eq!(c.neighbours(), 26);
/// assert!(Connectivity::try_from(10).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connectivity {
    /// 2D, edge neighbours only.
    Four,
    /// 2D, edge and corner neighbours.
    Eight,
    /// 3D, face neighbours only.
    Six,
    /// 3D, face and edge neighbours.
    Eighteen,
    /// 3D, face, edge and corner neighbours.
    TwentySix,
}

/// One earlier row that a run must be compared with: the row at `(z + dz, y + dy)`, with the
/// column range widened by one voxel on each side when `diagonal` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowNeighbour {
    pub dz: isize,
    pub dy: isize,
    pub diagonal: bool,
}

const fn nb(dz: isize, dy: isize, diagonal: bool) -> RowNeighbour {
    RowNeighbour { dz, dy, diagonal }
}

impl Connectivity {
    /// The dimensionality this connectivity is defined for (2 or 3).
    ///
    /// ```
    /// # use blob_loss::components::Connectivity;
    /// assert_eq!(Connectivity::Eight.ndim(), 2);
    /// ```
    pub const fn ndim(self) -> usize {
        match self {
            Self::Four | Self::Eight => 2,
            Self::Six | Self::Eighteen | Self::TwentySix => 3,
        }
    }

    /// The number of neighbours of a voxel (4, 8, 6, 18 or 26).
    ///
    /// ```
    /// # use blob_loss::components::Connectivity;
    /// assert_eq!(Connectivity::Eighteen.neighbours(), 18);
    /// ```
    pub const fn neighbours(self) -> u32 {
        match self {
            Self::Four => 4,
            Self::Eight => 8,
            Self::Six => 6,
            Self::Eighteen => 18,
            Self::TwentySix => 26,
        }
    }

    /// The full (corner-connected) neighbourhood for a dimensionality: `Eight` in 2D,
    /// `TwentySix` in 3D. The usual default for instance-level metrics.
    ///
    /// ```
    /// # use blob_loss::components::Connectivity;
    /// assert_eq!(Connectivity::full(3).unwrap(), Connectivity::TwentySix);
    /// ```
    pub fn full(ndim: usize) -> Result<Self, Error> {
        match ndim {
            2 => Ok(Self::Eight),
            3 => Ok(Self::TwentySix),
            _ => Err(Error::UnsupportedRank { what: "mask", ndim, expected: "2 or 3" }),
        }
    }

    /// The face-only neighbourhood for a dimensionality: `Four` in 2D, `Six` in 3D.
    ///
    /// ```
    /// # use blob_loss::components::Connectivity;
    /// assert_eq!(Connectivity::face(2).unwrap(), Connectivity::Four);
    /// ```
    pub fn face(ndim: usize) -> Result<Self, Error> {
        match ndim {
            2 => Ok(Self::Four),
            3 => Ok(Self::Six),
            _ => Err(Error::UnsupportedRank { what: "mask", ndim, expected: "2 or 3" }),
        }
    }

    /// Checks that this connectivity fits an array of `ndim` dimensions.
    pub(crate) fn check_rank(self, ndim: usize) -> Result<(), Error> {
        if !(2..=3).contains(&ndim) {
            return Err(Error::UnsupportedRank { what: "mask", ndim, expected: "2 or 3" });
        }
        if self.ndim() != ndim {
            return Err(Error::ConnectivityRank { connectivity: self, expected: self.ndim(), ndim });
        }
        Ok(())
    }

    /// The earlier rows (in row-major scan order) that a row's runs connect to.
    ///
    /// A voxel `(z, y, x)` touches `(z + dz, y + dy, x + dx)`; grouping the earlier neighbours by
    /// row gives at most four rows, each compared either on the same columns or widened by one.
    pub(crate) const fn earlier_rows(self) -> &'static [RowNeighbour] {
        const FOUR: &[RowNeighbour] = &[nb(0, -1, false)];
        const EIGHT: &[RowNeighbour] = &[nb(0, -1, true)];
        // The row below (`dz = -1, dy = 0`) first, then the row before: a match in them spares
        // comparisons with the others (the covers of `join`).
        const SIX: &[RowNeighbour] = &[nb(-1, 0, false), nb(0, -1, false)];
        const EIGHTEEN: &[RowNeighbour] = &[nb(-1, 0, true), nb(0, -1, true), nb(-1, -1, false), nb(-1, 1, false)];
        const TWENTY_SIX: &[RowNeighbour] = &[nb(-1, 0, true), nb(0, -1, true), nb(-1, -1, true), nb(-1, 1, true)];
        match self {
            Self::Four => FOUR,
            Self::Eight => EIGHT,
            Self::Six => SIX,
            Self::Eighteen => EIGHTEEN,
            Self::TwentySix => TWENTY_SIX,
        }
    }

    /// Whether two voxels `(dz, dy, dx)` apart are neighbours (2D connectivities take `dz = 0`).
    pub(crate) const fn touches(self, dz: isize, dy: isize, dx: isize) -> bool {
        let max_nonzero = match self {
            Self::Four | Self::Six => 1,
            Self::Eighteen => 2,
            Self::Eight | Self::TwentySix => 3,
        };
        let nonzero = (dz != 0) as usize + (dy != 0) as usize + (dx != 0) as usize;
        dz.abs() <= 1 && dy.abs() <= 1 && dx.abs() <= 1 && nonzero >= 1 && nonzero <= max_nonzero
    }
}

impl TryFrom<u32> for Connectivity {
    type Error = Error;

    fn try_from(neighbours: u32) -> Result<Self, Error> {
        match neighbours {
            4 => Ok(Self::Four),
            8 => Ok(Self::Eight),
            6 => Ok(Self::Six),
            18 => Ok(Self::Eighteen),
            26 => Ok(Self::TwentySix),
            other => Err(Error::InvalidConnectivity(other)),
        }
    }
}

impl std::fmt::Display for Connectivity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.neighbours())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Connectivity; 5] =
        [Connectivity::Four, Connectivity::Eight, Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix];

    #[test]
    fn round_trips_through_neighbour_count() {
        for c in ALL {
            assert_eq!(Connectivity::try_from(c.neighbours()).unwrap(), c);
            assert_eq!(c.to_string(), c.neighbours().to_string());
        }
        for bad in [0, 1, 2, 5, 7, 9, 10, 27, u32::MAX] {
            assert_eq!(Connectivity::try_from(bad), Err(Error::InvalidConnectivity(bad)));
        }
    }

    /// The row groups must cover exactly the earlier half of the full neighbourhood.
    #[test]
    fn earlier_rows_cover_the_earlier_neighbours() {
        for c in ALL {
            let mut from_rows = Vec::new();
            for r in c.earlier_rows() {
                let dxs: &[isize] = if r.diagonal { &[-1, 0, 1] } else { &[0] };
                for &dx in dxs {
                    from_rows.push((r.dz, r.dy, dx));
                }
            }
            from_rows.sort();
            let mut expected = Vec::new();
            let dzs: &[isize] = if c.ndim() == 3 { &[-1, 0, 1] } else { &[0] };
            for &dz in dzs {
                for dy in -1..=1isize {
                    for dx in -1..=1isize {
                        let nonzero = [dz, dy, dx].iter().filter(|&&d| d != 0).count();
                        let max_nonzero = match c {
                            Connectivity::Four | Connectivity::Six => 1,
                            Connectivity::Eighteen => 2,
                            _ => 3,
                        };
                        // Earlier in row-major order, and a neighbour.
                        if (dz, dy, dx) < (0, 0, 0) && (1..=max_nonzero).contains(&nonzero) && (dz, dy) != (0, 0) {
                            expected.push((dz, dy, dx));
                        }
                    }
                }
            }
            expected.sort();
            assert_eq!(from_rows, expected, "{c:?}");
            // Together with the one earlier voxel in the same row, this is half the neighbours.
            assert_eq!(2 * (from_rows.len() + 1), c.neighbours() as usize, "{c:?}");
        }
    }

    #[test]
    fn touches_counts_the_neighbours() {
        for c in ALL {
            let dzs: &[isize] = if c.ndim() == 3 { &[-2, -1, 0, 1, 2] } else { &[0] };
            let mut count = 0;
            for &dz in dzs {
                for dy in -2..=2 {
                    for dx in -2..=2 {
                        count += u32::from(c.touches(dz, dy, dx));
                    }
                }
            }
            assert_eq!(count, c.neighbours(), "{c:?}");
        }
        assert!(Connectivity::Eighteen.touches(1, -1, 0) && !Connectivity::Eighteen.touches(1, -1, 1));
        assert!(!Connectivity::Six.touches(0, 0, 0) && !Connectivity::TwentySix.touches(0, 2, 0));
    }
}
