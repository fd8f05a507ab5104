//! The run manifest (`<output.dir>/run_manifest.json`) and the resolved config
//! (`<output.dir>/train_config.toml`): what went in (input hashes, git revision, seeds, data
//! statistics) so that a checkpoint can be traced back to exactly what produced it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TrainConfig;
use crate::data::DataStats;
use crate::error::{Result, StudentError};

/// Version of the manifest layout.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// One hashed input file (path, size, SHA-256): the provenance record of `datasets`.
pub use datasets::records::provenance::InputHash as InputFile;
/// `DISTILL_GIT_REV`, else `git rev-parse HEAD` (+dirty), as every stage records it.
pub use datasets::records::provenance::git_rev;

/// What `run_manifest.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunManifest {
    /// Layout version.
    pub schema_version: u32,
    /// Trainer-state layout version of the checkpoints.
    pub state_schema_version: u32,
    /// `distill` version.
    pub distill_version: String,
    /// `git rev-parse HEAD` of the working directory, when available.
    pub git_rev: Option<String>,
    /// Seed of the run.
    pub seed: u64,
    /// SHA-256 of the resolved config TOML.
    pub config_sha256: String,
    /// Training data files.
    pub train_files: Vec<InputFile>,
    /// Held-out data files.
    pub eval_files: Vec<InputFile>,
    /// Model files (config.json + weight headers) of the starting point.
    pub model_files: Vec<InputFile>,
    /// Data statistics (drops, truncations, tokens).
    pub train_data: DataStats,
    /// Held-out data statistics.
    pub eval_data: Option<DataStats>,
    /// Total optimizer steps.
    pub total_steps: u64,
    /// Checkpoint the run resumed from, if any.
    pub resumed_from: Option<PathBuf>,
}

/// SHA-256 and size of a file ([`datasets::records::provenance::hash_file`]).
fn hash_file(path: &Path) -> Result<InputFile> {
    datasets::records::provenance::hash_file(path).map_err(|e| StudentError::dataset(format!("hashing {}", path.display()), e))
}

/// SHA-256 of a string.
pub fn sha256_str(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Hashes every data file behind `path` (a file or a directory of shards).
pub fn hash_data(path: &Path) -> Result<Vec<InputFile>> {
    let files = datasets::sft::training_files(path)
        .map_err(|e| StudentError::dataset(format!("listing training files {}", path.display()), e))?;
    files
        .into_iter()
        .map(|p| hash_file(&p))
        .collect()
}

/// Hashes a model directory: config files fully, safetensors by header.
pub fn hash_model_dir(dir: &Path) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| StudentError::io(dir, e))?;
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => m.len(),
            _ => continue,
        };
        let sha256 = if name.ends_with(".safetensors") {
            let mut f = std::fs::File::open(&p).map_err(|e| StudentError::io(&p, e))?;
            let mut len = [0u8; 8];
            f.read_exact(&mut len).map_err(|e| StudentError::io(&p, e))?;
            let n = u64::from_le_bytes(len).min(100 << 20) as usize;
            let mut header = vec![0u8; n];
            f.read_exact(&mut header).map_err(|e| StudentError::io(&p, e))?;
            hex::encode(Sha256::digest(&header))
        } else if name.ends_with(".json") {
            hash_file(&p)?.sha256
        } else {
            continue;
        };
        out.push(InputFile { path: p, bytes, sha256 });
    }
    Ok(out)
}

/// The resolved config as TOML (what `train_config.toml` holds; re-loadable with `--config`).
pub fn resolved_toml(cfg: &TrainConfig) -> Result<String> {
    toml::to_string_pretty(cfg).map_err(|e| StudentError::Config {
        path: "resolved config".into(),
        msg: e.to_string(),
    })
}
