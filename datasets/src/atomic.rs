//! Crash-safe file output: write to a temp file in the destination directory, fsync, then
//! rename over the final name. A reader (or a resumed run) therefore sees either the old file or
//! the complete new one, never a half-written file — the property every stage relies on when a
//! run is killed and restarted.

use crate::DatasetError;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Temp-file name next to `path`: hidden, unique per process and call, and recognisable
/// (`.NAME.tmp-PID-N`) so that stale ones left by a SIGKILL can be identified and removed.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{name}.tmp-{}-{n}", std::process::id());
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(tmp),
        _ => PathBuf::from(tmp),
    }
}

/// True for names produced by [`temp_path_for`], so that resumable writers can sweep leftovers.
pub fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(".tmp-")
}

/// Write `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
/// Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| DatasetError::io(path, e))?;
    f.commit()
}

/// A file being written that only appears under its final name on [`AtomicFile::commit`].
/// Dropping it without committing deletes the temp file, so an error path leaves nothing behind.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Open a temp file next to `path` (creating parent directories).
    pub fn create(path: &Path) -> Result<Self, DatasetError> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
            }
        }
        let temp = temp_path_for(path);
        let file = File::create(&temp).map_err(|e| DatasetError::io(&temp, e))?;
        Ok(AtomicFile {
            target: path.to_path_buf(),
            temp,
            writer: Some(BufWriter::new(file)),
        })
    }

    /// The final path this file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp path being written (e.g. for writers that need a `File`-backed path).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flush, fsync and rename into place; fsync the directory so the rename itself survives a
    /// power loss.
    pub fn commit(mut self) -> Result<(), DatasetError> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| DatasetError::io(&self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| DatasetError::io(&self.temp, e))?;
        drop(file);
        fs::rename(&self.temp, &self.target).map_err(|e| DatasetError::io(&self.target, e))?;
        sync_parent_dir(&self.target);
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Best effort: make a completed rename durable. Not all platforms/filesystems allow opening a
/// directory, so failures are ignored.
pub fn sync_parent_dir(path: &Path) {
    if let Some(parent) = path.parent() {
        let dir = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Rename a fully written directory `temp_dir` to `final_dir` (which must not exist), for outputs
/// made of several files (e.g. checkpoints): build everything in the temp dir, then rename once.
pub fn commit_dir(temp_dir: &Path, final_dir: &Path) -> Result<(), DatasetError> {
    fs::rename(temp_dir, final_dir).map_err(|e| DatasetError::io(final_dir, e))?;
    sync_parent_dir(final_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.txt");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"partial").unwrap();
            // dropped without commit
        }
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, vec!["a.txt".to_string()]);
        let t = temp_path_for(&p);
        assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
        assert!(!is_temp_name("a.txt"));
    }
}
