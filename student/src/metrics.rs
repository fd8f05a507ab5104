//! `metrics.jsonl`: one JSON object per line, one line per optimizer step (plus held-out
//! evaluations), flushed immediately so a crashed run keeps its curve. On resume the file is
//! truncated to the resumed step so the curve has no duplicated or orphaned steps.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StudentError};

/// One optimizer step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    /// Optimizer step (1-based).
    pub step: u64,
    /// Mean cross-entropy over all loss tokens of the step (all micro-batches). With logit
    /// distillation, the mixed objective.
    pub loss: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Input tokens (non-padding) in this step, over all micro-batches.
    pub tokens: u64,
    /// Tokens that carried a loss (the divisor of `loss`).
    pub loss_tokens: u64,
    /// Input tokens (non-padding) per second of wall time for this step.
    pub tokens_per_s: f64,
    /// Epoch (0-based) the step's data came from.
    pub epoch: u64,
    /// Cross-entropy part (only with logit distillation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ce_loss: Option<f64>,
    /// KD part (only with logit distillation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kd_loss: Option<f64>,
    /// Seconds this step spent summing gradients over data-parallel peers (only with
    /// several devices).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub all_reduce_s: Option<f64>,
}

/// A held-out evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalMetrics {
    /// The optimizer step after which it ran.
    pub step: u64,
    /// Mean cross-entropy over all held-out loss tokens.
    pub eval_loss: f64,
    /// Held-out loss tokens.
    pub eval_tokens: u64,
}

/// Appends metrics lines to `<dir>/metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `<dir>/metrics.jsonl`; keeps only lines with `step <= keep_upto` (0 = start fresh).
    pub fn open(dir: &Path, keep_upto: u64) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let kept: Vec<String> = if keep_upto > 0 && path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| StudentError::io(&path, e))?;
            text.lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= keep_upto)
                })
                .map(|l| l.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        crate::fsutil::write_atomic(&path, body.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| StudentError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Appends one record as a line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|e| StudentError::Json {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| StudentError::io(&self.path, e))
    }

    /// Reads back every step record of a metrics file (eval lines skipped).
    pub fn read_steps(path: &Path) -> Result<Vec<StepMetrics>> {
        let text = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| StudentError::Json {
                path: path.into(),
                msg: format!("line {}: {e}", i + 1),
            })?;
            if v.get("loss").is_some() {
                out.push(serde_json::from_value(v).map_err(|e| StudentError::Json {
                    path: path.into(),
                    msg: format!("line {}: {e}", i + 1),
                })?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(step: u64) -> StepMetrics {
        StepMetrics {
            step,
            loss: 1.0 / step as f64,
            grad_norm: 0.5,
            lr: 1e-5,
            tokens: 10,
            loss_tokens: 5,
            tokens_per_s: 100.0,
            epoch: 0,
            ce_loss: None,
            kd_loss: None,
            all_reduce_s: None,
        }
    }

    #[test]
    fn truncates_on_resume() {
        let d = tempfile::tempdir().unwrap();
        let mut w = MetricsWriter::open(d.path(), 0).unwrap();
        for s in 1..=4 {
            w.write(&m(s)).unwrap();
        }
        w.write(&EvalMetrics { step: 4, eval_loss: 2.0, eval_tokens: 5 }).unwrap();
        drop(w);
        let mut w = MetricsWriter::open(d.path(), 2).unwrap();
        w.write(&m(3)).unwrap();
        let steps = MetricsWriter::read_steps(&d.path().join("metrics.jsonl")).unwrap();
        assert_eq!(steps.iter().map(|s| s.step).collect::<Vec<_>>(), vec![1, 2, 3]);
    }
}
