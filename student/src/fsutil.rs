//! Small file helpers: every output is written to a temporary sibling and renamed, so a crash
//! never leaves a half-written file under the final name. Single files go through
//! `datasets::atomic`; the directory helpers (checkpoints) live here.

use std::path::Path;

use crate::error::{Result, StudentError};

/// Writes `bytes` to `path` atomically: [`datasets::atomic::write_atomic`] (temp file in the
/// same directory, fsync, rename, directory fsync), the one atomic writer of the workspace.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    datasets::atomic::write_atomic(path, bytes).map_err(|e| StudentError::dataset(format!("writing {}", path.display()), e))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(|e| StudentError::Json {
        path: path.into(),
        msg: e.to_string(),
    })?;
    write_atomic(path, s.as_bytes())
}

/// Reads and parses a JSON file, naming the file on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| StudentError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| StudentError::Json {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// Replaces directory `dst` by the fully written directory `tmp` (same parent).
pub fn replace_dir(tmp: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(|e| StudentError::io(dst, e))?;
    }
    std::fs::rename(tmp, dst).map_err(|e| StudentError::io(dst, e))
}

/// Flushes every file under `dir` (recursively), then the directories themselves, to disk.
pub fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| StudentError::io(dir, e))? {
        let entry = entry.map_err(|e| StudentError::io(dir, e))?;
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| StudentError::io(&p, e))?;
        if ft.is_dir() {
            sync_tree(&p)?;
        } else if ft.is_file() {
            std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(|e| StudentError::io(&p, e))?;
        }
    }
    sync_dir(dir)
}

/// Flushes a directory's entries (names created or renamed in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| StudentError::io(dir, e))
}

/// Removes directory `p` without ever leaving a partly deleted directory under its name (a
/// half-deleted `checkpoint-<n>/` would look like a model): it is renamed to
/// `.trash-<name>-<pid>` first, then deleted.
pub fn remove_dir_via_trash(p: &Path) -> Result<()> {
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let trash = parent.join(format!(".trash-{name}-{}", std::process::id()));
    if trash.exists() {
        std::fs::remove_dir_all(&trash).map_err(|e| StudentError::io(&trash, e))?;
    }
    std::fs::rename(p, &trash).map_err(|e| StudentError::io(p, e))?;
    std::fs::remove_dir_all(&trash).map_err(|e| StudentError::io(&trash, e))
}

/// Publishes the fully written directory `tmp` as `dst` (same parent) in one rename: its
/// files and the directory are fsync'd first, an existing `dst` goes through the trash, and
/// the parent is fsync'd after, so `dst` is either absent or complete.
pub fn publish_dir(tmp: &Path, dst: &Path) -> Result<()> {
    sync_tree(tmp)?;
    if dst.exists() {
        remove_dir_via_trash(dst)?;
    }
    std::fs::rename(tmp, dst).map_err(|e| StudentError::io(dst, e))?;
    let parent = dst.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(parent)
}
