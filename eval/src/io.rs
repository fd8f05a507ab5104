//! Whole-file writes that never leave a half-written file behind (the shared `datasets`
//! temp-file-then-rename writer, with errors in this crate's type).

use std::path::Path;

use crate::EvalError;

/// Writes `bytes` to `path` atomically, creating parent directories.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        }
    }
    datasets::atomic::write_atomic(path, bytes).map_err(|e| EvalError::Invalid(e.to_string()))
}
