//! FP8 (`float8_e4m3fn`) weights as DeepSeek ships them: e4m3 values with a `weight_scale_inv`
//! per 128×128 block. Dequantisation happens per tensor at load, so a checkpoint is never held
//! in f32 as a whole.

use std::sync::Arc;

use burn::tensor::{DType, TensorData};
use safetensors::tensor::Dtype;

use crate::error::ModelError;
use crate::weights::{DtypeDecoder, RawTensor, SafetensorsFiles};

/// Largest finite e4m3fn value.
pub const E4M3_MAX: f32 = 448.0;

/// Decodes one `float8_e4m3fn` byte (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no
/// infinities, `S.1111.111` = NaN).
pub fn e4m3_to_f32(bits: u8) -> f32 {
    let sign = if bits & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((bits >> 3) & 0x0f) as i32;
    let man = (bits & 0x07) as f32;
    if exp == 0x0f && (bits & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man * (2.0f32).powi(-9)
    } else {
        sign * (1.0 + man / 8.0) * (2.0f32).powi(exp - 7)
    }
}

/// Encodes an f32 as `float8_e4m3fn` with round-to-nearest-even, saturating at ±448 (what a
/// quantiser that scaled its block to the e4m3 range wants). NaN maps to NaN.
pub fn f32_to_e4m3(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = (x.abs() as f64).min(E4M3_MAX as f64);
    let min_normal = 2f64.powi(-6);
    if a < min_normal {
        // Subnormals are multiples of 2^-9; q = 8 is exactly the smallest normal's bit pattern.
        let q = (a / 2f64.powi(-9)).round_ties_even() as u8;
        return sign | q;
    }
    let mut e = a.log2().floor() as i32;
    // Guard against log2 rounding at exact powers of two.
    if 2f64.powi(e) > a {
        e -= 1;
    }
    let mut m = ((a / 2f64.powi(e) - 1.0) * 8.0).round_ties_even() as i32;
    if m == 8 {
        m = 0;
        e += 1;
    }
    sign | (((e + 7) as u8) << 3) | m as u8
}

/// Multiplies a row-major `[rows, cols]` e4m3 matrix by its block scales
/// (`scale_inv` `[ceil(rows/br), ceil(cols/bc)]`) into f32.
pub fn dequantize_blocks(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    scale_inv: &[f32],
    block: [usize; 2],
) -> Vec<f32> {
    let lut: Vec<f32> = (0..=255u8).map(e4m3_to_f32).collect();
    let scols = cols.div_ceil(block[1]);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let srow = &scale_inv[(r / block[0]) * scols..(r / block[0] + 1) * scols];
        let row = &bytes[r * cols..(r + 1) * cols];
        out.extend(row.iter().enumerate().map(|(c, &b)| lut[b as usize] * srow[c / block[1]]));
    }
    out
}

/// Quantises a row-major `[rows, cols]` f32 matrix the way DeepSeek's checkpoints are made:
/// per block, `scale_inv = max|w| / 448`, bytes = e4m3(w / scale_inv). Returns the bytes and
/// `scale_inv` `[ceil(rows/br), ceil(cols/bc)]`. Used to build FP8 test checkpoints and by
/// anyone who wants to store a model in DeepSeek's FP8 layout.
pub fn quantize_blocks(w: &[f32], rows: usize, cols: usize, block: [usize; 2]) -> (Vec<u8>, Vec<f32>) {
    let (sr, sc) = (rows.div_ceil(block[0]), cols.div_ceil(block[1]));
    let mut scale = vec![0f32; sr * sc];
    for r in 0..rows {
        for c in 0..cols {
            let s = &mut scale[(r / block[0]) * sc + c / block[1]];
            *s = s.max(w[r * cols + c].abs());
        }
    }
    for s in scale.iter_mut() {
        *s = if *s == 0.0 { 1.0 } else { *s / E4M3_MAX };
    }
    let bytes = (0..rows * cols)
        .map(|i| f32_to_e4m3(w[i] / scale[(i / cols / block[0]) * sc + (i % cols) / block[1]]))
        .collect();
    (bytes, scale)
}

/// Block size of a checkpoint's FP8 scales: `quantization_config.weight_block_size` in
/// config.json, DeepSeek's 128×128 when absent.
pub fn fp8_block_size(config: &serde_json::Value) -> [usize; 2] {
    config
        .get("quantization_config")
        .and_then(|q| q.get("weight_block_size"))
        .and_then(|b| b.as_array())
        .and_then(|b| match b.as_slice() {
            [r, c] => Some([r.as_u64()? as usize, c.as_u64()? as usize]),
            _ => None,
        })
        .filter(|b| b[0] > 0 && b[1] > 0)
        .unwrap_or([128, 128])
}

/// The [`DtypeDecoder`] that turns `F8_E4M3` weights into f32 using their
/// `<name>_scale_inv` block scales; install it with [`SafetensorsFiles::set_decoder`].
/// Other unknown dtypes are declined.
pub fn fp8_decoder(block: [usize; 2]) -> DtypeDecoder {
    Arc::new(move |raw: &RawTensor<'_>, files: &SafetensorsFiles| {
        if raw.dtype != Dtype::F8_E4M3 {
            return None;
        }
        Some(decode_fp8(raw, files, block))
    })
}

fn decode_fp8(raw: &RawTensor<'_>, files: &SafetensorsFiles, block: [usize; 2]) -> Result<TensorData, ModelError> {
    let bad = |message: String| ModelError::Safetensors { file: raw.file.to_path_buf(), message };
    let [rows, cols] = match raw.shape {
        [r, c] => [*r, *c],
        other => return Err(bad(format!("FP8 tensor `{}` must be 2-D, has shape {other:?}", raw.name))),
    };
    let scale_name = format!("{}_scale_inv", raw.name);
    if !files.contains(&scale_name) {
        return Err(ModelError::MissingTensor {
            tensor: scale_name,
            files: format!("{} (block scale of an FP8 weight)", raw.file.display()),
        });
    }
    let want = [rows.div_ceil(block[0]), cols.div_ceil(block[1])];
    let scale = files.tensor_data(&scale_name, Some(&want))?.convert_dtype(DType::F32);
    let scale: Vec<f32> = scale.iter::<f32>().collect();
    Ok(TensorData::new(dequantize_blocks(raw.data, rows, cols, &scale, block), [rows, cols]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finite_e4m3_value_round_trips() {
        for b in 0..=255u8 {
            let v = e4m3_to_f32(b);
            if v.is_nan() {
                assert!(b & 0x7f == 0x7f);
                continue;
            }
            let back = f32_to_e4m3(v);
            // ±0 both decode to 0.
            assert!(back == b || (v == 0.0 && (back & 0x7f) == 0), "{b:#x} -> {v} -> {back:#x}");
        }
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x38), 1.0);
    }

    #[test]
    fn rounding_is_nearest_even_and_saturating() {
        // 1.0625 lies halfway between 1.0 (m=0) and 1.125 (m=1): ties go to even (1.0).
        assert_eq!(e4m3_to_f32(f32_to_e4m3(1.0625)), 1.0);
        assert_eq!(e4m3_to_f32(f32_to_e4m3(1.07)), 1.125);
        assert_eq!(e4m3_to_f32(f32_to_e4m3(1e6)), 448.0);
        assert_eq!(e4m3_to_f32(f32_to_e4m3(-1e6)), -448.0);
    }

    #[test]
    fn block_quantisation_error_is_bounded_per_block() {
        let (rows, cols) = (5, 7);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.01 * (1 + i / 14) as f32).collect();
        let (q, s) = quantize_blocks(&w, rows, cols, [2, 3]);
        assert_eq!(s.len(), 3 * 3);
        let d = dequantize_blocks(&q, rows, cols, &s, [2, 3]);
        for i in 0..w.len() {
            let scale = s[(i / cols / 2) * 3 + (i % cols) / 3];
            // e4m3 has 3 mantissa bits: relative error ≤ 1/16, plus subnormal spacing.
            assert!((d[i] - w[i]).abs() <= w[i].abs() / 16.0 + scale * 2f32.powi(-9), "{i}");
        }
    }
}
