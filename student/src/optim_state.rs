//! The optimizer-state file (`optimizer.safetensors` of a checkpoint): one tensor per stored
//! moment in its own storage, so that a resumed run continues from exactly the states it
//! saved. f32 moments keep the original layout (`<param>.exp_avg`, F32), bf16 moments are
//! BF16 tensors under the same key, 8-bit moments are `<key>.q8codes` (U8) plus
//! `<key>.q8absmax` (F32, one per 256-value block).

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::error::{Result, StudentError};
use crate::optim_lean::{MomentStore, Quantized};

const CODES: &str = ".q8codes";
const ABSMAX: &str = ".q8absmax";

fn err(path: &Path, msg: String) -> StudentError {
    StudentError::Checkpoint { path: path.into(), msg }
}

fn float_bytes<B: Backend>(t: &Tensor<B, 1>) -> (safetensors::Dtype, Vec<u8>) {
    match t.dtype() {
        DType::BF16 => {
            let d = t.clone().into_data();
            let v: Vec<u8> = d.iter::<burn::tensor::bf16>().flat_map(|x| x.to_bits().to_le_bytes()).collect();
            (safetensors::Dtype::BF16, v)
        }
        _ => {
            let v: Vec<u8> = t.clone().into_data().iter::<f32>().flat_map(|x| x.to_le_bytes()).collect();
            (safetensors::Dtype::F32, v)
        }
    }
}

/// Writes `(key, store)` pairs atomically.
pub fn save_stores<B: Backend>(path: &Path, entries: &[(String, &MomentStore<B>)]) -> Result<()> {
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<u8>, usize)> = Vec::new();
    for (key, store) in entries {
        match store {
            MomentStore::F32(t) | MomentStore::Bf16(t) => {
                let (dt, b) = float_bytes(t);
                tensors.push((key.clone(), dt, b, t.dims()[0]));
            }
            MomentStore::Q8(q, _) => {
                let codes: Vec<u8> = q.codes.clone().into_data().iter::<u8>().collect();
                let n = codes.len();
                tensors.push((format!("{key}{CODES}"), safetensors::Dtype::U8, codes, n));
                let (dt, b) = float_bytes(&q.absmax);
                tensors.push((format!("{key}{ABSMAX}"), dt, b, q.absmax.dims()[0]));
            }
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, dt, b, n)| safetensors::tensor::TensorView::new(*dt, vec![*n], b).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(path, e.to_string()))?;
    let bytes = safetensors::serialize(views, None).map_err(|e| err(path, e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Reads what [`save_stores`] wrote, keyed as saved (`<param>.exp_avg`, `<param>.exp_avg_sq`).
/// The sign of an 8-bit moment's map follows its key (`exp_avg_sq` is unsigned).
pub fn load_stores<B: Backend>(path: &Path, device: &B::Device) -> Result<HashMap<String, MomentStore<B>>> {
    let bytes = std::fs::read(path).map_err(|e| StudentError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(path, e.to_string()))?;
    let mut out = HashMap::new();
    let mut codes: HashMap<String, Tensor<B, 1, Int>> = HashMap::new();
    let mut absmax: HashMap<String, Tensor<B, 1>> = HashMap::new();
    for (key, view) in st.tensors() {
        let n = view.shape().iter().product::<usize>();
        let raw = view.data().to_vec();
        let float = |dt: DType| Tensor::<B, 1>::from_data(TensorData::from_bytes_vec(raw.clone(), [n], dt), (device, dt));
        match (view.dtype(), key.strip_suffix(CODES), key.strip_suffix(ABSMAX)) {
            (safetensors::Dtype::U8, Some(base), _) => {
                let t = Tensor::<B, 1, Int>::from_data(TensorData::from_bytes_vec(raw, [n], DType::U8), (device, DType::U8));
                codes.insert(base.to_string(), t);
            }
            (safetensors::Dtype::F32, _, Some(base)) => {
                absmax.insert(base.to_string(), float(DType::F32));
            }
            (safetensors::Dtype::F32, None, None) => {
                out.insert(key, MomentStore::F32(float(DType::F32)));
            }
            (safetensors::Dtype::BF16, None, None) => {
                out.insert(key, MomentStore::Bf16(float(DType::BF16)));
            }
            (dt, _, _) => return Err(err(path, format!("{key}: unexpected dtype {dt:?}"))),
        }
    }
    for (base, c) in codes {
        let a = absmax.remove(&base).ok_or_else(|| err(path, format!("{base}{CODES} without {base}{ABSMAX}")))?;
        if a.dims()[0] != c.dims()[0].div_ceil(crate::optim_lean::QUANT_BLOCK as usize) {
            return Err(err(path, format!("{base}: {} codes but {} absmax blocks", c.dims()[0], a.dims()[0])));
        }
        let signed = !base.ends_with(".exp_avg_sq");
        out.insert(base, MomentStore::Q8(Quantized { codes: c, absmax: a }, signed));
    }
    if let Some(base) = absmax.keys().next() {
        return Err(err(path, format!("{base}{ABSMAX} without {base}{CODES}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim_lean::StateMode;
    use burn::backend::Flex;

    #[test]
    fn every_storage_round_trips_exactly() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("optimizer.safetensors");
        let x: Vec<f32> = (0..700).map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3).collect();
        let t = Tensor::<Flex, 1>::from_data(TensorData::new(x, [700]), &dev);
        let stores = [
            ("a.exp_avg", MomentStore::store(t.clone(), StateMode::F32, true)),
            ("b.exp_avg", MomentStore::store(t.clone(), StateMode::Bf16, true)),
            ("c.exp_avg", MomentStore::store(t.clone(), StateMode::Q8, true)),
            ("c.exp_avg_sq", MomentStore::store(t.clone().abs(), StateMode::Q8, false)),
        ];
        let entries: Vec<(String, &MomentStore<Flex>)> = stores.iter().map(|(k, s)| (k.to_string(), s)).collect();
        save_stores(&f, &entries).unwrap();
        let back = load_stores::<Flex>(&f, &dev).unwrap();
        assert_eq!(back.len(), 4);
        for (k, s) in &stores {
            let b = &back[*k];
            assert_eq!(b.mode(), s.mode(), "{k}");
            let (p, q): (Vec<f32>, Vec<f32>) = (
                s.to_f32().into_data().iter::<f32>().collect(),
                b.to_f32().into_data().iter::<f32>().collect(),
            );
            assert_eq!(p, q, "{k}");
        }
    }
}
