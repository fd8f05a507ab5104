//! Helpers shared by the models integration tests: fixture paths, reference tensors, and
//! max-abs-difference checks.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;
use models::weights::SafetensorsFiles;

pub type B = burn::backend::Flex;

pub fn device() -> burn::backend::flex::FlexDevice {
    burn::backend::flex::FlexDevice
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Reference tensors of a fixture directory.
pub struct Reference {
    files: SafetensorsFiles,
}

impl Reference {
    pub fn open(name: &str) -> Self {
        let files = SafetensorsFiles::open_file(&fixture(name).join("reference.safetensors")).expect("reference.safetensors");
        Reference { files }
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    /// (f32 values, shape)
    pub fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let d = self.files.tensor_data(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape = d.shape.to_vec();
        (d.iter::<f32>().collect(), shape)
    }

    /// Token id rows of an i64 `[b, t]` tensor.
    pub fn ids(&self, name: &str) -> Vec<Vec<u32>> {
        let raw = self.files.raw(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{:?}", raw.dtype), "I64", "{name}");
        let vals: Vec<u32> = raw.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32).collect();
        let (b, t) = (raw.shape[0], raw.shape[1]);
        (0..b).map(|i| vals[i * t..(i + 1) * t].to_vec()).collect()
    }
}

/// Host f32 values of a tensor.
pub fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(burn::tensor::FloatDType::F32).into_data().iter::<f32>().collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(got, want);
    assert!(d <= tol, "{what}: max abs diff {d:e} > {tol:e}");
}

/// A private scratch directory under the target dir (no tempfile dependency needed).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
