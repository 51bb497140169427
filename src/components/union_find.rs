//! A union-find forest over run indices, rooted at the smallest index.
//!
//! Every link points from a larger index to a smaller one (`parent[x] <= x`), so the root of a
//! set is its earliest run in scan order. That makes first-appearance numbering a single forward
//! pass ([`number_roots`]).

/// The root of `x`, halving the path on the way.
#[inline]
pub(crate) fn find(parent: &mut [u32], mut x: u32) -> u32 {
    loop {
        let p = parent[x as usize];
        if p == x {
            return x;
        }
        let gp = parent[p as usize];
        parent[x as usize] = gp;
        x = gp;
    }
}

/// Joins the set rooted at `root` with the set of `b`; returns the root of the union.
#[inline]
pub(crate) fn link(parent: &mut [u32], root: u32, b: u32) -> u32 {
    let rb = find(parent, b);
    if root < rb {
        parent[rb as usize] = root;
        root
    } else {
        parent[root as usize] = rb;
        rb
    }
}

/// Joins the sets of `a` and `b`, pointing both old roots and `a` and `b` themselves at the new
/// root: the smaller old root, so `parent[x] <= x` still holds.
#[inline(always)]
pub(crate) fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let root = ra.min(rb);
    for x in [ra, rb, a, b] {
        parent[x as usize] = root;
    }
}

/// Replaces every entry by its set's label, numbering roots `1, 2, ...` in index order, and
/// returns the number of sets.
///
/// Relies on `parent[x] <= x`: when `x` is reached, its parent's entry already holds a label.
pub(crate) fn number_roots(parent: &mut [u32]) -> u32 {
    let mut next = 0u32;
    for x in 0..parent.len() {
        let p = parent[x] as usize;
        if p == x {
            next += 1;
            parent[x] = next;
        } else {
            parent[x] = parent[p];
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sets_by_their_first_member() {
        let mut parent: Vec<u32> = (0..6).collect();
        let union = |parent: &mut [u32], a, b| {
            let ra = find(parent, a);
            link(parent, ra, b)
        };
        union(&mut parent, 4, 1);
        union(&mut parent, 5, 2);
        union(&mut parent, 2, 4);
        assert_eq!(find(&mut parent, 5), 1);
        assert_eq!(number_roots(&mut parent), 3);
        assert_eq!(parent, vec![1, 2, 2, 3, 2, 2]);
    }
}
