//! The run's records written before the first step: the resolved config and the manifest
//! (input hashes, data statistics, seed, git revision, resume origin).

use super::setup::Resume;
use super::sft_data::SftData;
use crate::checkpoint::STATE_SCHEMA_VERSION;
use crate::config::{ModelInit, TrainConfig};
use crate::error::Result;
use crate::manifest::{self, RunManifest};

/// Writes `train_config.toml` (the resolved config) and `run_manifest.json` to `output.dir`.
pub fn write_sft_records(cfg: &TrainConfig, resolved: &str, config_sha: &str, data: &SftData, total_steps: u64, resume: &Resume) -> Result<()> {
    let out = &cfg.output.dir;
    crate::fsutil::write_atomic(&out.join("train_config.toml"), resolved.as_bytes())?;
    let model_files = match (&cfg.model.init, &cfg.model.path) {
        (ModelInit::Pretrained, Some(p)) => manifest::hash_model_dir(p)?,
        _ => Vec::new(),
    };
    let run_manifest = RunManifest {
        schema_version: manifest::MANIFEST_SCHEMA_VERSION,
        state_schema_version: STATE_SCHEMA_VERSION,
        distill_version: env!("CARGO_PKG_VERSION").to_string(),
        git_rev: manifest::git_rev(),
        seed: cfg.train.seed,
        config_sha256: config_sha.to_string(),
        train_files: manifest::hash_data(&cfg.data.train)?,
        eval_files: match &cfg.data.eval {
            Some(p) => manifest::hash_data(p)?,
            None => Vec::new(),
        },
        model_files,
        train_data: data.train_stats.clone(),
        eval_data: data.eval_stats.clone(),
        total_steps,
        resumed_from: resume.dir().map(|d| d.to_path_buf()),
    };
    crate::fsutil::write_json(&out.join("run_manifest.json"), &run_manifest)
}
