//! The k-quant types (Q4_K, Q5_K, Q6_K) as ggml's reference quantisers make them today
//! (`quantize_row_q{4,5,6}_K_ref`, what `llama-quantize` runs without an importance
//! matrix), so that our files hold the bytes llama.cpp's would.
//!
//! candle ships ports of these quantisers, but of an older ggml: its Q6_K scale search
//! refines iteratively where ggml now tries 18 fixed scales, and it rounds halves away from
//! zero where ggml rounds them to even; the files load and run, but are not llama.cpp's
//! bytes. The tests compare with `llama-quantize`'s output (tests/fixtures/gguf).
//!
//! Each 256-value super-block is quantised on its own; the arithmetic is f32 in ggml's
//! order of operations, so that the results are bit for bit the same.

use half::f16;

pub(crate) const QK_K: usize = 256;
/// ggml's threshold under which a group counts as all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even.
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// A scale for `x` with signed levels in [-nmax, nmax - 1] (weights x², ggml's
/// `make_qx_quants` with rmse_type 1): the plain max-based scale, then the best of 18
/// nudged ones by weighted least squares. Writes the levels (offset by nmax) to `levels`.
fn signed_scale(x: &[f32], nmax: i32, levels: &mut [i8]) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let iscale = -(nmax as f32) / max;
    for (l, &v) in levels.iter_mut().zip(x) {
        *l = (level(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in -9i32..=9 {
        if step == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1f32 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (l, &v) in levels.iter_mut().zip(x) {
                *l = (level(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// A scale and a minimum for `x` with levels in [0, nmax] (ggml's `make_qkx2_quants`,
/// squared error): the min-max fit, then `steps` + 1 candidate scales from
/// (nmax + rmin) / range in `rdelta` steps, each refit by weighted least squares.
/// Returns (scale, -min) and writes the levels.
fn scale_and_min(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    steps: i32,
    levels: &mut [u8],
) -> (f32, f32) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..x.len() {
        // Comparisons, not f32::min/max, as ggml does (they differ on signed zeros).
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..x.len() {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut candidate = [0u8; 32];
    let candidate = &mut candidate[..x.len()];
    for step in 0..=steps {
        let iscale = (rmin + rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            candidate[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0f32;
            for i in 0..x.len() {
                let diff = this_scale * candidate[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                levels.copy_from_slice(candidate);
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The 6-bit scales and mins of a Q4_K/Q5_K block, packed into 12 bytes as ggml packs
/// them, with the block's f16 d and dmin; and the levels requantised with those scales.
/// `nmax` 15 (Q4_K) or 31 (Q5_K).
fn scaled_block(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    steps: i32,
    levels: &mut [u8; QK_K],
) -> (f16, f16, [u8; 12]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut weights = [0f32; 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let group = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in group {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(group) {
            *w = av_x + v.abs();
        }
        let (s, m) = scale_and_min(
            group,
            &weights,
            nmax,
            rmin,
            0.1,
            steps,
            &mut levels[32 * j..32 * j + 32],
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = if j < 4 {
            (packed[j] & 63, packed[j + 4] & 63)
        } else {
            (
                (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4),
                (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
            )
        };
        let scale = d.to_f32() * sc as f32;
        if scale == 0.0 {
            continue;
        }
        let offset = dmin.to_f32() * m as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + offset) / scale).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed)
}

/// One Q4_K block (144 bytes) of 256 values.
pub(crate) fn q4k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0u8; QK_K];
    let (d, dmin, scales) = scaled_block(x, 15, -1.0, 20, &mut levels);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&scales);
    for chunk in levels.chunks_exact(64) {
        for l in 0..32 {
            out.push(chunk[l] | (chunk[l + 32] << 4));
        }
    }
}

/// One Q5_K block (176 bytes) of 256 values.
pub(crate) fn q5k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0u8; QK_K];
    let (d, dmin, scales) = scaled_block(x, 31, -0.5, 15, &mut levels);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&dmin.to_le_bytes());
    out.extend_from_slice(&scales);
    let mut high = [0u8; QK_K / 8];
    let mut low = [0u8; QK_K / 2];
    for (n, chunk) in levels.chunks_exact(64).enumerate() {
        let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
        for j in 0..32 {
            let (mut l1, mut l2) = (chunk[j], chunk[j + 32]);
            if l1 > 15 {
                l1 -= 16;
                high[j] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                high[j] |= m2;
            }
            low[32 * n + j] = l1 | (l2 << 4);
        }
    }
    out.extend_from_slice(&high);
    out.extend_from_slice(&low);
}

/// One Q6_K block (210 bytes) of 256 values.
pub(crate) fn q6k_block(x: &[f32], out: &mut Vec<u8>) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = signed_scale(
            &x[16 * ib..16 * ib + 16],
            32,
            &mut levels[16 * ib..16 * ib + 16],
        );
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        out.extend(std::iter::repeat_n(0u8, 210));
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    let mut block_scales = [0i8; QK_K / 16];
    for (b, s) in block_scales.iter_mut().zip(&scales) {
        *b = nearest_int(iscale * s).min(127) as i8;
    }
    for (j, &sc) in block_scales.iter().enumerate() {
        let scale = d.to_f32() * sc as f32;
        if scale == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / scale).clamp(-32, 31) + 32) as i8;
        }
    }
    let mut low = [0u8; QK_K / 2];
    let mut high = [0u8; QK_K / 4];
    for (half, chunk) in levels.chunks_exact(128).enumerate() {
        let (ql, qh) = (&mut low[64 * half..], &mut high[32 * half..]);
        for l in 0..32 {
            let q = |k: usize| chunk[l + 32 * k] as u8;
            ql[l] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            ql[l + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            qh[l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    out.extend_from_slice(&low);
    out.extend_from_slice(&high);
    out.extend(block_scales.iter().map(|s| *s as u8));
    out.extend_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
    }

    #[test]
    fn blocks_have_ggml_sizes_and_zero_blocks_are_zero() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
        for (f, size) in [
            (q4k_block as fn(&[f32], &mut Vec<u8>), 144),
            (q5k_block, 176),
            (q6k_block, 210),
        ] {
            let mut out = Vec::new();
            f(&x, &mut out);
            assert_eq!(out.len(), size);
            let mut zeros = Vec::new();
            f(&[0.0; QK_K], &mut zeros);
            assert!(zeros.iter().all(|&b| b == 0), "an all-zero block is zeros");
        }
    }
}
