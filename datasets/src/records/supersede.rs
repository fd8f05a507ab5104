//! Replacing samples in a shard directory: a sample redone on resume (a permanently failed row
//! retried with `--retry-failed`, or an eval sample that failed) must end up as one row.
//!
//! Replacement is two atomic steps, in this order: the new row is written in a new shard
//! (numbered after every existing one), then each older shard holding a superseded row is
//! rewritten without it (temp file + rename, or removed when nothing is left). A kill between
//! the steps leaves both rows on disk; since readers of a run directory and the
//! [`ResumeIndex`](super::ResumeIndex) let the later shard win, the directory still means the
//! same thing, and the next run finishes the cleanup ([`superseded_rows`] finds what is left).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::shards::{read_shard, write_shard, ShardRecord};
use super::RecordsError;

/// Identity of a sample: (problem id, sample index).
pub type SampleKey = (String, u32);

/// Rewrites `shard` without the rows whose identity is in `keys` (atomically; the file is
/// removed when no row is left). Returns how many rows were dropped.
pub fn remove_rows<R: ShardRecord>(
    shard: &Path,
    keys: &HashSet<SampleKey>,
) -> Result<usize, RecordsError> {
    let rows: Vec<R> = read_shard(shard)?;
    let before = rows.len();
    let kept: Vec<R> = rows
        .into_iter()
        .filter(|r| !keys.contains(&r.sample().key()))
        .collect();
    let removed = before - kept.len();
    if removed == 0 {
        return Ok(0);
    }
    if kept.is_empty() {
        std::fs::remove_file(shard).map_err(|e| RecordsError::io(shard, e))?;
    } else {
        write_shard(shard, &kept)?;
    }
    tracing::debug!(shard = %shard.display(), removed, "dropped superseded rows");
    Ok(removed)
}

/// Drops every listed (shard → keys) row; returns the total dropped.
pub fn remove_superseded<R: ShardRecord>(
    plan: &HashMap<PathBuf, HashSet<SampleKey>>,
) -> Result<usize, RecordsError> {
    let mut total = 0;
    let mut shards: Vec<&PathBuf> = plan.keys().collect();
    shards.sort();
    for shard in shards {
        total += remove_rows::<R>(shard, &plan[shard])?;
    }
    Ok(total)
}

/// Tracks, while a directory's shards are read in name order, where each identity's latest row
/// lives, and which earlier rows it supersedes.
#[derive(Debug, Default)]
pub struct LatestRows {
    latest: HashMap<SampleKey, PathBuf>,
    superseded: HashMap<PathBuf, HashSet<SampleKey>>,
}

impl LatestRows {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a row of `key` in `shard` (shards visited in name order). Returns false when the
    /// identity was seen before: the earlier row is now superseded.
    pub fn see(&mut self, key: SampleKey, shard: &Path) -> bool {
        match self.latest.insert(key.clone(), shard.to_path_buf()) {
            None => true,
            Some(old) => {
                self.superseded.entry(old).or_default().insert(key);
                false
            }
        }
    }

    /// The shard holding `key`'s latest row.
    pub fn shard_of(&self, key: &SampleKey) -> Option<&Path> {
        self.latest.get(key).map(PathBuf::as_path)
    }

    /// Rows superseded by a later row for the same identity, by shard.
    pub fn superseded_rows(&self) -> &HashMap<PathBuf, HashSet<SampleKey>> {
        &self.superseded
    }
}

/// The superseded rows of a directory whose shards are `shards` (in name order) holding
/// `keys_of(shard)`: a convenience over [`LatestRows`].
pub fn superseded_rows(
    shards: &[PathBuf],
    mut keys_of: impl FnMut(&Path) -> Result<Vec<SampleKey>, RecordsError>,
) -> Result<HashMap<PathBuf, HashSet<SampleKey>>, RecordsError> {
    let mut latest = LatestRows::new();
    for shard in shards {
        for key in keys_of(shard)? {
            latest.see(key, shard);
        }
    }
    Ok(latest.superseded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::shards::list_shards;
    use crate::records::{FinishReason, SampleRecord, Verdict};
    use crate::traces::{TraceMessage, TraceRow};

    fn row(p: &str, i: u32, error: Option<&str>) -> TraceRow {
        TraceRow {
            sample: SampleRecord {
                problem_id: p.into(),
                sample_index: i,
                reference_answer: "1".into(),
                extracted_answer: None,
                verdict: if error.is_some() {
                    Verdict::Error
                } else {
                    Verdict::Incorrect
                },
                prompt_tokens: 1,
                completion_tokens: 1,
                finish_reason: if error.is_some() {
                    FinishReason::Error
                } else {
                    FinishReason::Stop
                },
                seed: 0,
                temperature: 0.6,
                top_p: 0.95,
                max_tokens: 8,
                latency_ms: 0,
                error: error.map(str::to_string),
            },
            source: None,
            problem: "q".into(),
            prompt: vec![TraceMessage {
                role: "user".into(),
                content: "q".into(),
            }],
            reasoning: String::new(),
            content: String::new(),
            completion: String::new(),
            teacher: "t".into(),
            created_at: 0,
        }
    }

    #[test]
    fn later_rows_replace_earlier_ones_and_empty_shards_go() {
        let dir = tempfile::tempdir().unwrap();
        let s0 = dir.path().join("part-00000.parquet");
        let s1 = dir.path().join("part-00001.parquet");
        let s2 = dir.path().join("part-00002.parquet");
        write_shard(&s0, &[row("a", 0, Some("HTTP 400")), row("b", 0, None)]).unwrap();
        write_shard(&s1, &[row("c", 0, Some("HTTP 400"))]).unwrap();
        write_shard(&s2, &[row("a", 0, None), row("c", 0, None)]).unwrap();
        let shards = list_shards(dir.path()).unwrap();
        let plan = superseded_rows(&shards, |p| {
            Ok(read_shard::<TraceRow>(p)?
                .iter()
                .map(|r| r.sample.key())
                .collect())
        })
        .unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(remove_superseded::<TraceRow>(&plan).unwrap(), 2);
        assert!(!s1.exists(), "a shard left empty is removed");
        let rows: Vec<TraceRow> = list_shards(dir.path())
            .unwrap()
            .iter()
            .flat_map(|p| read_shard::<TraceRow>(p).unwrap())
            .collect();
        let mut keys: Vec<_> = rows
            .iter()
            .map(|r| (r.sample.key(), r.error.is_some()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                (("a".into(), 0), false),
                (("b".into(), 0), false),
                (("c".into(), 0), false)
            ]
        );
        // Nothing left to supersede: a second pass is a no-op.
        let shards = list_shards(dir.path()).unwrap();
        let plan = superseded_rows(&shards, |p| {
            Ok(read_shard::<TraceRow>(p)?
                .iter()
                .map(|r| r.sample.key())
                .collect())
        })
        .unwrap();
        assert!(plan.is_empty());
    }
}
