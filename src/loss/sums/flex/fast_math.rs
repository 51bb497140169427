//! A sigmoid and binary cross-entropies for the fused CPU path that the compiler can vectorise.
//!
//! `f32::exp` and `f32::ln` are calls into the C library, one voxel at a time; these are
//! branch-free arithmetic (Cody-Waite range reduction and the minimax polynomials of Cephes'
//! `expf` and `logf`), so a loop over a slice runs on SIMD lanes. They stay within a few units in
//! the last place of the same functions computed with the library in `f64` (tested below over
//! the whole useful range).

use super::super::spec::{MAX_LOGIT_CROSS_ENTROPY, PROBABILITY_FLOOR};

/// `exp(x)` for `x` in `[-87, 88]` (callers clamp), about 1 ulp from the correctly rounded one.
#[inline(always)]
fn exp_in_range(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part with few mantissa bits (exact products) and the rest.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer in f32.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let poly =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e_r = poly * r * r + r + 1.0;
    // 2^n for n in [-126, 127], the exponent bits of a normal float. The low bits of `shifted`
    // hold `n` already (its mantissa is `2^22 + n`), read without a float-to-int conversion,
    // which would saturate lane by lane.
    let scale = f32::from_bits(shifted.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23);
    e_r * scale
}

/// The logistic function `1 / (1 + exp(-x))`, NaN for NaN.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let s = 1.0 / (1.0 + exp_in_range((-x).clamp(-87.0, 88.0)));
    if x.is_nan() { x } else { s }
}

/// `ln(x)` for a positive normal `x` (callers clamp), about 1 ulp from the correctly rounded one.
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    // x = m 2^e with m in [0.5, 1), read from the bits.
    let bits = x.to_bits();
    let e = (bits >> 23) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    // Below sqrt(1/2), 2m - 1 and e - 1: the polynomial's argument stays in [-0.29, 0.41].
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    let f = if low { m + m - 1.0 } else { m - 1.0 };
    let e = (if low { e - 1 } else { e }) as f32;
    let z = f * f;
    let poly = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f - 1.242_014_1e-1) * f
        + 1.424_932_3e-1)
        * f
        - 1.666_805_8e-1)
        * f
        + 2.000_071_5e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333e-1)
        * f
        * z;
    // ln 2 split like exp's, so that e ln 2 adds exactly.
    let y = poly - 2.121_944_4e-4 * e - 0.5 * z;
    f + y + 0.693_359_4 * e
}

/// `ln(1 + u)` for `u > -1` with `1 + u` normal: the logarithm of the rounded `w = 1 + u`,
/// corrected by the rounding error of `w` (to first order), so that a tiny `u` keeps its relative
/// precision.
#[inline(always)]
fn ln_1p(u: f32) -> f32 {
    let w = 1.0 + u;
    ln_normal(w) - ((w - 1.0) - u) / w
}

/// `ln(1 + exp(-|x|))`: the part of `softplus(z) = max(z, 0) + ln(1 + exp(-|z|))` that is the
/// same for `z = x` and `z = -x`, so for both targets.
#[inline(always)]
pub(crate) fn softplus_tail(x: f32) -> f32 {
    // Below -87 the exponential would leave the normal floats: its value there (< 2e-38) is
    // below any sum's precision.
    ln_1p(exp_in_range((-x.abs()).max(-87.0)))
}

/// The binary cross-entropy of one voxel from its logit `x`, its [`softplus_tail`] and its
/// target: `softplus(-x)` (target 1) or `softplus(x)`, at most [`MAX_LOGIT_CROSS_ENTROPY`]. NaN
/// stays NaN.
#[inline(always)]
pub(crate) fn logit_cross_entropy_with_tail(x: f32, tail: f32, target: bool) -> f32 {
    let value = (if target { -x } else { x }).max(0.0) + tail;
    let max = MAX_LOGIT_CROSS_ENTROPY as f32;
    let value = if value > max { max } else { value };
    if x.is_nan() { x } else { value }
}

/// The binary cross-entropy of one voxel from its logit `x` and its target, as
/// [`cross_entropy`](super::sums::cross_entropy) computes it in `f64`, in vectorisable `f32`.
#[inline(always)]
pub(crate) fn logit_cross_entropy(x: f32, target: bool) -> f32 {
    logit_cross_entropy_with_tail(x, softplus_tail(x), target)
}

/// The binary cross-entropy of one voxel from its probability `p` and its target,
/// `-ln(max(q, PROBABILITY_FLOOR))` with `q = p` (target 1) or `1 - p`, in vectorisable `f32`
/// (`ln(1 - p)` as `ln_1p(-p)`: exact where `p` is tiny). NaN stays NaN.
#[inline(always)]
pub(crate) fn probability_cross_entropy(p: f32, target: bool) -> f32 {
    let floor = PROBABILITY_FLOOR as f32;
    let value = if target {
        -ln_normal(p.max(floor))
    } else if 1.0 - p < floor {
        -ln_normal(floor)
    } else {
        -ln_1p(-p)
    };
    if p.is_nan() { p } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::sums::SumInput;

    fn reference(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Distance in units in the last place between two positive floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn within_a_few_ulps_of_the_library_exp() {
        let mut worst = 0;
        // Every 61st float of magnitude up to 87, both signs: beyond, sigmoid is 0 or 1 to
        // within the smallest normal float.
        for bits in (0..=87f32.to_bits()).step_by(61) {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                worst = worst.max(ulps(sigmoid(x), reference(x)));
            }
        }
        assert!(worst <= 4, "worst error {worst} ulps");
    }

    #[test]
    fn limits_and_nan() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(-200.0) < 1e-37);
        assert!(sigmoid(f32::NEG_INFINITY) >= 0.0);
        assert!(sigmoid(f32::NAN).is_nan());
        // Monotone across the clamp.
        assert!(sigmoid(-86.0) >= sigmoid(-90.0));
    }

    /// Relative error of an `f32` value against an `f64` reference (absolute below `tiny`).
    fn error(found: f32, expected: f64, tiny: f64) -> f64 {
        (f64::from(found) - expected).abs() / expected.abs().max(tiny)
    }

    #[test]
    fn cross_entropy_from_logits_matches_f64() {
        let mut worst = 0f64;
        let mut worst_at = (0.0, false, 0.0, 0.0);
        // Every 37th float of magnitude up to 120, both signs, both targets.
        for bits in (0..=120f32.to_bits()).step_by(37) {
            let x = f32::from_bits(bits);
            for x in [x, -x] {
                for target in [false, true] {
                    let expected = crate::loss::sums::spec::cross_entropy(SumInput::Logits, f64::from(x), target);
                    // Below e^-87 the value is flushed to about 2e-38: absolute error there.
                    let e = error(logit_cross_entropy(x, target), expected, 1e-30);
                    if e > worst {
                        worst = e;
                        worst_at = (x, target, logit_cross_entropy(x, target), expected);
                    }
                }
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst} at {worst_at:?}"); // about 3 ulps
        assert_eq!(logit_cross_entropy(f32::INFINITY, false), 100.0);
        // e^-87 at most where the exponential is flushed.
        assert!(logit_cross_entropy(f32::INFINITY, true) < 2e-38);
        assert_eq!(logit_cross_entropy(f32::NEG_INFINITY, true), 100.0);
        assert_eq!(logit_cross_entropy(0.0, true), std::f32::consts::LN_2);
        assert!(logit_cross_entropy(f32::NAN, true).is_nan());
    }

    #[test]
    fn cross_entropy_from_probabilities_matches_f64() {
        let mut worst = 0f64;
        for bits in (0..=1f32.to_bits()).step_by(41) {
            let p = f32::from_bits(bits);
            for target in [false, true] {
                let expected = crate::loss::sums::spec::cross_entropy(SumInput::Probabilities, f64::from(p), target);
                // Below 1e-9 absolute: `1 - p` in the f64 reference rounds where `p` < 1e-16.
                worst = worst.max(error(probability_cross_entropy(p, target), expected, 1e-9));
            }
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        let floor = -(PROBABILITY_FLOOR as f32).ln();
        assert!((probability_cross_entropy(0.0, true) - floor).abs() < 1e-5);
        assert_eq!(probability_cross_entropy(1.0, true), 0.0);
        assert!(probability_cross_entropy(f32::NAN, false).is_nan());
    }
}
