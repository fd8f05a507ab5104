//! `_manifest.json` of a trace directory: what was asked, of whom, from which input, and how
//! far the run got. It is what makes a trace dataset auditable months later, and what a resume
//! checks before appending to a directory.
//!
//! The leading `_` lets `pd.read_parquet("traces/")` / `pyarrow.dataset` read the directory:
//! they skip `_`- and `.`-prefixed files but fail on any other non-Parquet file. Directories
//! written before the rename hold `manifest.json`; it is still read, and replaced by
//! `_manifest.json` on the next write.

use std::path::Path;

use datasets::records::RunStatus;
use serde::{Deserialize, Serialize};

pub use datasets::records::provenance::{git_rev, now_rfc3339, InputHash};

use crate::config::TeacherConfig;
use crate::TeacherError;

/// File name of the manifest inside the output directory.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// The manifest's name before it gained its `_` (read on resume, removed on the next write).
pub const LEGACY_MANIFEST_FILE: &str = "manifest.json";

/// Counts describing progress and quality of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Problems in the (possibly truncated) input.
    pub problems: usize,
    /// k.
    pub samples_per_problem: u32,
    /// problems × k.
    pub expected_rows: usize,
    /// Rows on disk.
    pub rows: usize,
    /// Rows graded correct.
    pub correct: usize,
    /// Rows that ended with `length`.
    pub truncated: usize,
    /// Rows recorded as permanent failures.
    pub failed: usize,
    /// Samples that could not be completed in this invocation (transient faults outlasted the
    /// retries, or the run was interrupted); a rerun does them.
    pub unfinished: usize,
    /// Prompt + completion tokens over all rows.
    pub completion_tokens: u64,
}

/// The manifest document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Trace schema version of the shards ([`datasets::traces::TRACE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// `distill` version that wrote it.
    pub distill_version: String,
    /// Git revision of the source tree, when it could be determined.
    pub git_rev: Option<String>,
    /// Teacher model name.
    pub teacher: String,
    /// Backend used (`openai` / `native`).
    pub backend: String,
    /// `running`, `complete`, `incomplete` or `interrupted`.
    pub status: RunStatus,
    /// Resolved configuration (after `--set` and flags; API keys never appear here, only the
    /// variable name).
    pub config: TeacherConfig,
    /// Input files and their hashes.
    pub inputs: Vec<InputHash>,
    /// Progress and quality counts.
    pub counts: RunCounts,
    /// Creation time of the run (first invocation), RFC 3339 UTC.
    pub created_at: String,
    /// Last update, RFC 3339 UTC.
    pub updated_at: String,
}

impl Manifest {
    /// Reads `dir/_manifest.json` (or the older `dir/manifest.json`) if present.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, TeacherError> {
        for name in [MANIFEST_FILE, LEGACY_MANIFEST_FILE] {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return serde_json::from_str(&text)
                        .map(Some)
                        .map_err(|source| TeacherError::Json(datasets::PathError::new(path, source)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(TeacherError::io(path, e)),
            }
        }
        Ok(None)
    }

    /// Writes `dir/_manifest.json` atomically, then removes a `manifest.json` of an older
    /// version so the directory holds one manifest and stays readable as a Parquet dataset.
    pub fn write(&self, dir: &Path) -> Result<(), TeacherError> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        datasets::atomic::write_atomic(&dir.join(MANIFEST_FILE), &json)?;
        let legacy = dir.join(LEGACY_MANIFEST_FILE);
        match std::fs::remove_file(&legacy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TeacherError::io(legacy, e)),
            _ => Ok(()),
        }
    }

    /// Refuses to mix samples of different settings in one directory: the sampling parameters,
    /// teacher and problem file contents must match (execution settings such as concurrency or
    /// replica URLs may change).
    pub fn check_compatible(
        &self,
        cfg: &TeacherConfig,
        inputs: &[InputHash],
    ) -> Result<(), TeacherError> {
        let mut diffs = Vec::new();
        if self.config.sampling != cfg.sampling {
            diffs.push(format!(
                "sampling {:?} vs {:?}",
                self.config.sampling, cfg.sampling
            ));
        }
        if self.teacher != cfg.teacher_name() {
            diffs.push(format!(
                "teacher `{}` vs `{}`",
                self.teacher,
                cfg.teacher_name()
            ));
        }
        let old: Vec<&str> = self.inputs.iter().map(|i| i.sha256.as_str()).collect();
        let new: Vec<&str> = inputs.iter().map(|i| i.sha256.as_str()).collect();
        if old != new {
            diffs.push("problem file contents differ".into());
        }
        if self.config.run.max_problems != cfg.run.max_problems {
            diffs.push("run.max_problems differs".into());
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(TeacherError::Mismatch(format!(
                "{} holds a run with different settings ({}); use another out_dir",
                cfg.out_dir.display(),
                diffs.join("; ")
            )))
        }
    }
}
