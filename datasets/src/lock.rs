//! One writer per output directory.
//!
//! Two `teacher sample` runs on one `--out` interleave shards of different settings under one
//! manifest; two `student train` runs on one `output.dir` overwrite each other's checkpoints. Every
//! stage therefore takes an [`OutputLock`] on its output directory before writing: an exclusive
//! `flock` (through [`std::fs::File::try_lock`]) on `<dir>/.distill.lock` — or, for a directory
//! that is replaced as a whole on completion (`data filter`), on `.<name>.lock` beside it. A second
//! run fails at once with an error naming the holder (pid, host, command, age), read from the
//! lock file.
//!
//! The kernel releases a `flock` when its process dies, so a lock left by a killed run is free
//! again: the next run takes it over and logs who held it. A clean exit empties the file before
//! unlocking, which is how a leftover owner record is recognised as a dead process. The file
//! itself is never deleted (deleting would let two runs lock two different files of one name).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the lock file inside a locked directory (hidden, so pandas/pyarrow and the shard
/// listings skip it; stages that check a directory for emptiness must skip it too).
pub const LOCK_FILE: &str = ".distill.lock";

/// Who holds (or last held) a lock: written into the lock file by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the holder (a pid means nothing on another machine).
    pub host: String,
    /// What the holder is doing, e.g. `distill data filter`.
    pub command: String,
    /// When the lock was taken, seconds since the Unix epoch.
    pub started_at_unix: u64,
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let age = now_unix().saturating_sub(self.started_at_unix);
        write!(
            f,
            "`{}` (pid {} on host {}, started {age} s ago)",
            self.command, self.pid, self.host
        )
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "{dir} is in use by another run: {holder} (lock file {lock}); wait for it to finish or \
         choose another output directory"
    )]
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Description of the holder as recorded in the lock file.
        holder: String,
    },
    /// Creating, opening or writing the lock file failed.
    #[error("{path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on an output directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

impl OutputLock {
    /// Locks `dir` (created if missing) for `command`, or fails at once naming the holder.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::acquire_file(&dir.join(LOCK_FILE), dir, command)
    }

    /// Locks `dir` through `.<name>.lock` in its parent (created if missing), for directories
    /// that are built elsewhere and renamed into place, which would carry a lock file inside
    /// them away.
    pub fn acquire_beside(dir: &Path, command: &str) -> Result<Self, LockError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|source| LockError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        Self::acquire_file(&parent.join(format!(".{name}.lock")), dir, command)
    }

    /// Takes the lock file `path` guarding `dir`.
    fn acquire_file(path: &Path, dir: &Path, command: &str) -> Result<Self, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        let path = path.to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = match read_owner(&mut file) {
                    Some(owner) => owner.to_string(),
                    None => "another process (owner not yet recorded)".to_string(),
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    lock: path,
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        if let Some(previous) = read_owner(&mut file) {
            tracing::warn!(lock = %path.display(), "taking over the lock of {previous}, which ended without releasing it");
        }
        let owner = LockOwner {
            pid: std::process::id(),
            host: host_name(),
            command: command.to_string(),
            started_at_unix: now_unix(),
        };
        let json = serde_json::to_vec(&owner).expect("lock owner serialises");
        file.set_len(0).map_err(io(&path))?;
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        file.write_all(&json).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(Self { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // An empty file marks a clean release; a non-empty unlocked one, a dead holder.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The owner record in a lock file, if it holds one.
fn read_owner(file: &mut File) -> Option<LockOwner> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This machine's name (Linux `/proc`, then `/etc/hostname`, then `$HOSTNAME`).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_holder_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let first = OutputLock::acquire(&out, "distill test one").unwrap();
        let err = OutputLock::acquire(&out, "distill test two")
            .unwrap_err()
            .to_string();
        assert!(err.contains("distill test one"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert_eq!(std::fs::read_to_string(out.join(LOCK_FILE)).unwrap(), "");
        let _again = OutputLock::acquire(&out, "distill test two").unwrap();
    }

    #[test]
    fn lock_of_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed run leaves: an owner record and no flock.
        let dead = LockOwner {
            pid: 999_999,
            host: host_name(),
            command: "distill dead".into(),
            started_at_unix: 1,
        };
        std::fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let lock = OutputLock::acquire(dir.path(), "distill alive").unwrap();
        let owner: LockOwner =
            serde_json::from_slice(&std::fs::read(lock.path()).unwrap()).unwrap();
        assert_eq!(
            (owner.pid, owner.command.as_str()),
            (std::process::id(), "distill alive")
        );
    }
}
