//! The one "I/O failed on this path" error every crate's error enum wraps (as
//! `Io(#[from] PathIoError)`), so the path-naming message and the kept source are written once.

use std::path::PathBuf;

/// An I/O failure on a named file or directory. Displays the path; the OS error is its source,
/// so the CLI prints `error: <path> Caused by: <os error>`.
#[derive(Debug, thiserror::Error)]
#[error("{path}")]
pub struct PathIoError {
    /// File or directory involved.
    pub path: PathBuf,
    /// Underlying error.
    #[source]
    pub source: std::io::Error,
}

impl PathIoError {
    /// `source` happened on `path`.
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PathIoError { path: path.into(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn names_the_path_and_keeps_the_source() {
        let e = PathIoError::new("/x/y", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "/x/y");
        assert_eq!(e.source().unwrap().to_string(), "gone");
    }
}
