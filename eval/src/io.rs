//! Small file helpers: whole-file writes that never leave a half-written file behind.

use std::io::Write;
use std::path::Path;

use crate::EvalError;

/// Writes `bytes` to `path` through a temp file in the same directory, fsynced and renamed into
/// place, creating parent directories.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(EvalError::io(path, e));
    }
    Ok(())
}
