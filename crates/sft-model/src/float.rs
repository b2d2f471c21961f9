//! The one float trait of the fused CPU kernels ([`crate::attention`], [`crate::loss`],
//! [`crate::ops`], [`crate::norm`]), and reading a custom op's CPU input as a slice.

use candle_core::{CpuStorage, Layout, Tensor};

/// The values of a contiguous CPU input of a custom op (an error names the op's need).
pub(crate) fn cpu_slice<'a, F: Float>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [F]> {
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused op: input is not contiguous")
    };
    Ok(&<F as candle_core::WithDType>::cpu_storage_as_slice(storage)?[a..b])
}

/// Contiguous values of a tensor, copied.
pub(crate) fn values<F: Float>(t: &Tensor) -> candle_core::Result<Vec<F>> {
    t.contiguous()?.flatten_all()?.to_vec1::<F>()
}

/// The element type of the fused CPU kernels (attention, the loss, softmax, RMSNorm): f32
/// for training, f64 for exact checks.
pub trait Float:
    candle_core::WithDType
    + Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
    fn ln(self) -> Self;
    /// exp in the type's own precision (f32's is several times faster than f64's).
    fn exp(self) -> Self;
    fn f64(self) -> f64;
    fn of(v: f64) -> Self;
    /// `a * b + c`, fused where `M` says so.
    fn madd<M: Fma>(a: Self, b: Self, c: Self) -> Self;
    /// `x = exp(x)` over a slice, `exp(-inf) = 0`.
    fn exp_slice(x: &mut [Self]);
}

/// Whether `a * b + c` is one fused instruction (compiled with FMA) or two.
pub trait Fma {
    fn f32(a: f32, b: f32, c: f32) -> f32;
    fn f64(a: f64, b: f64, c: f64) -> f64;
}

pub struct Fused;
impl Fma for Fused {
    #[inline(always)]
    fn f32(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn f64(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

pub struct Plain;
impl Fma for Plain {
    #[inline(always)]
    fn f32(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn f64(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f32::NEG_INFINITY;
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn madd<M: Fma>(a: Self, b: Self, c: Self) -> Self {
        M::f32(a, b, c)
    }
    #[inline(always)]
    fn exp_slice(x: &mut [Self]) {
        for v in x.iter_mut() {
            *v = exp_f32(*v);
        }
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f64::NEG_INFINITY;
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn f64(self) -> f64 {
        self
    }
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn madd<M: Fma>(a: Self, b: Self, c: Self) -> Self {
        M::f64(a, b, c)
    }
    #[inline(always)]
    fn exp_slice(x: &mut [Self]) {
        for v in x.iter_mut() {
            *v = v.exp();
        }
    }
}

/// `exp(x)` in f32 without a branch or a call, so a loop of it vectorises: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2`, `e^r` by its Taylor polynomial to degree 7 (truncation below
/// 5e-9 relative), times `2^n` built in the exponent bits. Within 2 ulp of `f32::exp` over
/// `[-87, 88]` (tested); below -87 (and `-inf`) it is 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let c = x.clamp(-87.0, 88.0);
    let t = c * LOG2E + SHIFT;
    let n = t - SHIFT;
    let ni = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorisable_exp_is_within_two_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_f32(x), f32::exp(x));
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            worst = worst.max(ulp as f64);
            assert!(ulp <= 2, "exp({x}) = {got}, want {want}");
            x += 0.001_37;
        }
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        println!("worst {worst} ulp");
    }
}
