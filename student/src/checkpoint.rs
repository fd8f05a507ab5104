//! Checkpoint directories: `<output.dir>/checkpoint-<step>/` holds a complete Hugging Face
//! model directory (written by `models`) plus everything needed to continue the run exactly:
//! `trainer_state.json` (step, data position, seeds, tokens seen) and `optimizer.safetensors`
//! (AdamW moments by parameter name). A checkpoint is built in a temporary directory and
//! renamed into place only when complete, so "the latest checkpoint" is always usable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// Version of the trainer-state layout; bumped on incompatible changes.
pub const STATE_SCHEMA_VERSION: u32 = 1;
/// File name of the trainer state inside a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
/// File name of the optimizer moments inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File name of the LoRA adapters (our layout, names `<target>.lora_a|lora_b`).
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// File name of the resolved config a checkpoint was trained with (compared on resume).
pub const CONFIG_FILE: &str = "train_config.toml";

/// Everything besides weights and moments that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Layout version ([`STATE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Total optimizer steps of the run.
    pub total_steps: u64,
    /// Training rows consumed (data position; the order is a function of seed and epoch).
    pub rows_consumed: u64,
    /// Epoch of the last consumed row.
    pub epoch: u64,
    /// Seed of data order, adapter init and random init.
    pub seed: u64,
    /// Loss tokens trained on so far.
    pub loss_tokens_seen: u64,
    /// Input tokens processed so far.
    pub input_tokens_seen: u64,
    /// Learning rate of the last step (the schedule is recomputed from `step`).
    pub last_lr: f64,
    /// SHA-256 of the resolved config (a resumed run warns if it changed).
    pub config_sha256: String,
}

/// `checkpoint-<step>` under `dir`.
pub fn checkpoint_dir(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("checkpoint-{step}"))
}

/// Completed checkpoints under `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StudentError::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StudentError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<u64>().ok()) {
            let p = entry.path();
            if p.join(STATE_FILE).is_file() {
                out.push((step, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest completed checkpoint, if any.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    Ok(list_checkpoints(dir)?.pop())
}

/// Deletes all but the newest `keep` checkpoints (`keep == 0` keeps all). Each victim is
/// renamed to a `.trash-*` name before it is deleted, so a crash never leaves a half-deleted
/// directory that still looks like a checkpoint.
pub fn prune_checkpoints(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let all = list_checkpoints(dir)?;
    let mut removed = Vec::new();
    if all.len() > keep {
        for (_, p) in &all[..all.len() - keep] {
            crate::fsutil::remove_dir_via_trash(p)?;
            removed.push(p.clone());
        }
    }
    Ok(removed)
}

/// Whether `name` (an entry of a run directory) is a leftover of an interrupted write: a
/// checkpoint or `final/` being built (`.checkpoint-<n>.tmp-<pid>`, `.final.tmp-<pid>`, and the
/// model writer's own `..<name>.tmp-<pid>`), a directory being deleted (`.trash-*`), or a
/// run file being replaced (`.metrics.jsonl.tmp<pid>`). Only names the trainer itself makes.
pub fn is_stale_temp(name: &str) -> bool {
    if name.starts_with(".trash-") {
        return true;
    }
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let rest = rest.trim_start_matches('.');
    const OWNERS: [&str; 5] = ["checkpoint-", "final.", "metrics.jsonl.", "train_config.toml.", "run_manifest.json."];
    OWNERS.iter().any(|o| rest.starts_with(o)) && rest.contains(".tmp")
}

/// Removes the leftovers of interrupted writes ([`is_stale_temp`]) from the run directory
/// `dir` (each may be a full model). Returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(StudentError::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| StudentError::io(dir, e))?;
        if !is_stale_temp(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let p = entry.path();
        let is_dir = entry.file_type().map_err(|e| StudentError::io(&p, e))?.is_dir();
        let r = if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        r.map_err(|e| StudentError::io(&p, e))?;
        tracing::info!(path = %p.display(), "removed the leftover of an interrupted write");
        removed.push(p);
    }
    Ok(removed)
}

/// Reads `trainer_state.json` of a checkpoint and checks its version.
pub fn read_state(ckpt: &Path) -> Result<TrainerState> {
    let path = ckpt.join(STATE_FILE);
    let s: TrainerState = crate::fsutil::read_json(&path)?;
    if s.schema_version != STATE_SCHEMA_VERSION {
        return Err(StudentError::Checkpoint {
            path,
            msg: format!(
                "schema_version {} but this build reads {}",
                s.schema_version, STATE_SCHEMA_VERSION
            ),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_last_and_latest() {
        let d = tempfile::tempdir().unwrap();
        for s in [2u64, 10, 4] {
            let c = checkpoint_dir(d.path(), s);
            std::fs::create_dir_all(&c).unwrap();
            std::fs::write(c.join(STATE_FILE), "{}").unwrap();
        }
        // an incomplete one (no state) is ignored
        std::fs::create_dir_all(checkpoint_dir(d.path(), 12)).unwrap();
        assert_eq!(latest_checkpoint(d.path()).unwrap().unwrap().0, 10);
        prune_checkpoints(d.path(), 2).unwrap();
        let left: Vec<u64> = list_checkpoints(d.path()).unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(left, vec![4, 10]);
        let names: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "no trash left: {names:?}");
    }

    #[test]
    fn stale_temp_names() {
        for n in [".checkpoint-7.tmp-12", "..checkpoint-7.tmp-12.tmp-12", ".final.tmp-3", "..final.tmp-3", ".trash-checkpoint-2-9", ".metrics.jsonl.tmp44"] {
            assert!(is_stale_temp(n), "{n}");
        }
        for n in ["checkpoint-7", "final", ".git", ".checkpoint-notes", "metrics.jsonl", ".mydata.tmp-1", "notes.tmp"] {
            assert!(!is_stale_temp(n), "{n}");
        }
    }
}
