//! The run directory before the first step, and the resume guard: leftovers of interrupted
//! writes are removed, a directory that already holds a run is refused unless the run is
//! resumed (`--resume`) or cleared (`--overwrite`), and a resumed checkpoint's config must
//! match this run's (`--allow-config-change` to override).
//!
//! Restarting in place at step 0 used to overwrite `metrics.jsonl` while `keep_last` pruning
//! then kept the old run's higher-step checkpoints, so a later `--resume` jumped to the old
//! run's step: two runs mixed in one directory without an error.

use std::path::{Path, PathBuf};

use super::RunOptions;
use crate::checkpoint;
use crate::error::{Result, StudentError};

/// Files the trainer writes at the top of `output.dir` (besides `checkpoint-<n>/` and
/// `final/`): what marks a directory as holding a run, and what `--overwrite` deletes.
pub const RUN_FILES: [&str; 3] = ["metrics.jsonl", "train_config.toml", "run_manifest.json"];

/// Config keys that may differ between a checkpoint and the run resuming it: they say where
/// and how often files are written, never what is computed. Every other key (data, model,
/// optimizer, schedule, steps, seeds, dtypes, `output.save_dtype` of the final model) counts as
/// a change.
pub const RESUME_EXEMPT_KEYS: [&str; 4] = ["output.dir", "output.save_every", "output.keep_last", "output.max_shard_bytes"];

/// `[train]` keys that only say how a step is spread over devices and machines. A resume may
/// change them freely as long as the micro-batches per step (`grad_accum` × devices × nodes)
/// stay the same: the steps then see the same rows in the same order and the same gradients.
pub const LAYOUT_KEYS: [&str; 6] = ["devices", "nodes", "node_rank", "orchestrator", "node_address", "shard_optimizer"];

/// Makes `out` ready for a run as `opts` say: created, stale temporaries removed, an existing
/// run refused ([`StudentError::RunExists`]) unless resumed or overwritten; with
/// `opts.overwrite` the old run's files (only those the trainer writes) are deleted.
pub fn prepare(out: &Path, opts: &RunOptions) -> Result<()> {
    if opts.resume && opts.overwrite {
        return Err(StudentError::Config {
            path: "run options".into(),
            msg: "--resume and --overwrite exclude each other (continue the run, or delete it)".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| StudentError::io(out, e))?;
    checkpoint::remove_stale_temps(out)?;
    let found = run_entries(out)?;
    if found.is_empty() || opts.resume {
        return Ok(());
    }
    if !opts.overwrite {
        let names: Vec<String> = found.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
        return Err(StudentError::RunExists {
            dir: out.to_path_buf(),
            found: names.join(", "),
        });
    }
    for p in &found {
        if p.is_dir() {
            crate::fsutil::remove_dir_via_trash(p)?;
        } else {
            std::fs::remove_file(p).map_err(|e| StudentError::io(p, e))?;
        }
    }
    tracing::info!(dir = %out.display(), removed = found.len(), "--overwrite: removed the previous run");
    Ok(())
}

/// The entries of `out` that belong to a run: [`RUN_FILES`], `final/` and every
/// `checkpoint-<n>/` (complete or not), sorted by name.
fn run_entries(out: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| StudentError::io(out, e))? {
        let entry = entry.map_err(|e| StudentError::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_ckpt = name.strip_prefix("checkpoint-").is_some_and(|s| s.parse::<u64>().is_ok());
        if is_ckpt || name == "final" || RUN_FILES.contains(&name.as_str()) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Checks that resuming `ckpt` with the resolved config `resolved` (hash `config_sha`) does not
/// change the training: the checkpoint's own `train_config.toml` is compared key by key
/// (ignoring [`RESUME_EXEMPT_KEYS`]); a checkpoint without one is compared by its recorded
/// hash. A change is an error unless `allow_change`, then a warning.
pub fn check_config(ckpt: &Path, recorded_sha: &str, resolved: &str, config_sha: &str, allow_change: bool) -> Result<()> {
    let saved = ckpt.join(checkpoint::CONFIG_FILE);
    let keys = if saved.is_file() {
        let old = std::fs::read_to_string(&saved).map_err(|e| StudentError::io(&saved, e))?;
        let changed = changed_keys(&old, resolved).map_err(|msg| StudentError::Checkpoint { path: saved.clone(), msg })?;
        if changed.is_empty() {
            return Ok(());
        }
        format!("changed: {}", changed.join(", "))
    } else if recorded_sha == config_sha {
        return Ok(());
    } else {
        format!("its config hash differs and it holds no {} to name the keys", checkpoint::CONFIG_FILE)
    };
    if allow_change {
        tracing::warn!(checkpoint = %ckpt.display(), %keys, "--allow-config-change: resuming with a changed config");
        return Ok(());
    }
    Err(StudentError::ConfigChanged { checkpoint: ckpt.to_path_buf(), keys })
}

/// The dotted keys whose values differ between two TOML documents (present in one only, or
/// different), minus [`RESUME_EXEMPT_KEYS`]; the data-parallel layout ([`LAYOUT_KEYS`]) is
/// compared as micro-batches per step (reported as `train.grad_accum`).
pub fn changed_keys(old: &str, new: &str) -> std::result::Result<Vec<String>, String> {
    let parse = |s: &str| s.parse::<toml::Table>().map(per_step_layout).map_err(|e| e.to_string());
    let (old, new) = (parse(old)?, parse(new)?);
    let mut out = Vec::new();
    diff_tables("", &old, &new, &mut out);
    out.retain(|k| !RESUME_EXEMPT_KEYS.contains(&k.as_str()));
    out.sort();
    Ok(out)
}

/// Replaces `train.grad_accum` by the micro-batches per step over all peers and drops the
/// [`LAYOUT_KEYS`].
fn per_step_layout(mut t: toml::Table) -> toml::Table {
    if let Some(toml::Value::Table(train)) = t.get_mut("train") {
        let devices = train.get("devices").and_then(|v| v.as_array()).map_or(1, |a| a.len().max(1)) as i64;
        let nodes = train.get("nodes").and_then(|v| v.as_integer()).unwrap_or(1).max(1);
        if let Some(accum) = train.get("grad_accum").and_then(|v| v.as_integer()) {
            train.insert("grad_accum".into(), toml::Value::Integer(accum * devices * nodes));
        }
        for k in LAYOUT_KEYS {
            train.remove(k);
        }
    }
    t
}

fn diff_tables(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => diff_tables(&key, x, y, out),
            (x, y) if x == y => {}
            _ => out.push(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_names_nested_keys_and_skips_exempt_ones() {
        let old = "[optim]\nlr = 1e-3\n[output]\ndir = \"a\"\nkeep_last = 2\n[train]\nseed = 1\n";
        let new = "[optim]\nlr = 2e-3\n[output]\ndir = \"b\"\nkeep_last = 3\n[train]\nseed = 1\nmax_steps = 4\n";
        assert_eq!(changed_keys(old, new).unwrap(), vec!["optim.lr", "train.max_steps"]);
        assert!(changed_keys(old, old).unwrap().is_empty());
        assert!(changed_keys("x = [", old).is_err());
    }

    #[test]
    fn the_peer_layout_may_change_when_the_micro_batches_per_step_stay() {
        let two = "[train]\ngrad_accum = 1\ndevices = [\"cpu\", \"cpu\"]\nshard_optimizer = true\n";
        let one = "[train]\ngrad_accum = 2\n";
        assert!(changed_keys(two, one).unwrap().is_empty());
        let nodes = "[train]\ngrad_accum = 1\nnodes = 2\nnode_rank = 1\norchestrator = \"h:1\"\n";
        assert!(changed_keys(nodes, one).unwrap().is_empty());
        assert_eq!(changed_keys(two, "[train]\ngrad_accum = 1\n").unwrap(), vec!["train.grad_accum"]);
    }

    #[test]
    fn prepare_refuses_a_run_and_overwrite_removes_only_run_files() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        prepare(out, &RunOptions::default()).expect("unrelated files do not make a run");
        std::fs::write(out.join("metrics.jsonl"), "").unwrap();
        std::fs::create_dir_all(out.join("checkpoint-3")).unwrap();
        std::fs::create_dir_all(out.join(".checkpoint-4.tmp-1")).unwrap();
        let err = prepare(out, &RunOptions::default()).unwrap_err().to_string();
        assert!(err.contains(&out.display().to_string()) && err.contains("--resume") && err.contains("--overwrite"), "{err}");
        assert!(!out.join(".checkpoint-4.tmp-1").exists(), "stale temps go first");
        prepare(out, &RunOptions { resume: true, ..Default::default() }).unwrap();
        assert!(out.join("metrics.jsonl").exists());
        prepare(out, &RunOptions { overwrite: true, ..Default::default() }).unwrap();
        let left: Vec<String> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left, vec!["notes.txt"]);
        assert!(prepare(out, &RunOptions { resume: true, overwrite: true, ..Default::default() }).is_err());
    }
}
