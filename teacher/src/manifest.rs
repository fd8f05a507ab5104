//! `manifest.json` of a trace directory: what was asked, of whom, from which input, and how
//! far the run got. It is what makes a trace dataset auditable months later, and what a resume
//! checks before appending to a directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::TeacherConfig;
use crate::TeacherError;

/// File name of the manifest inside the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

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

/// Hash of one input file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHash {
    /// Path as given.
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
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
    pub status: String,
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
    /// Reads `dir/manifest.json` if present.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, TeacherError> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TeacherError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TeacherError::io(path, e)),
        }
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), TeacherError> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        datasets::atomic::write_atomic(&dir.join(MANIFEST_FILE), &json)?;
        Ok(())
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

/// SHA-256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<InputHash, TeacherError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| TeacherError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| TeacherError::io(path, e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok(InputHash {
        path: path.to_path_buf(),
        sha256: hex::encode(h.finalize()),
        bytes,
    })
}

/// The git revision: `DISTILL_GIT_REV` if set, else `git rev-parse HEAD` in the current
/// directory (with a `+dirty` suffix when the tree has changes); `None` outside a checkout.
pub fn git_rev() -> Option<String> {
    if let Ok(v) = std::env::var("DISTILL_GIT_REV") {
        return Some(v);
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    Some(if dirty { format!("{rev}+dirty") } else { rev })
}

/// Current time as RFC 3339 UTC (second precision), without a date-time dependency.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_374_400 + 3661), "2025-11-29T01:01:01Z");
    }
}
