//! A sigmoid for the fused CPU path that the compiler can vectorise.
//!
//! `f32::exp` is a call into the C library, one voxel at a time; this one is branch-free
//! arithmetic (Cody-Waite range reduction and the minimax polynomial of Cephes' `expf`), so a
//! loop over a slice runs on SIMD lanes. It stays within a few units in the last place of
//! `1 / (1 + exp(-x))` computed with `f32::exp` (tested below over the whole useful range).

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

#[cfg(test)]
mod tests {
    use super::sigmoid;

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
}
