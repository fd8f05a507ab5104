//! The one "this failed on that path" error every crate's error enum wraps (as
//! `Io(#[from] PathIoError)`, `Json(#[from] PathJsonError)`), so the path-naming message and
//! the kept source are written once.

use std::path::PathBuf;

/// A failure on a named file or directory. Displays the path; the underlying error is its
/// source, so the CLI prints `error: <path> Caused by: <reason>`.
#[derive(Debug, thiserror::Error)]
#[error("{path}")]
pub struct PathError<E: std::error::Error + 'static> {
    /// File or directory involved.
    pub path: PathBuf,
    /// Underlying error.
    #[source]
    pub source: E,
}

impl<E: std::error::Error + 'static> PathError<E> {
    /// `source` happened on `path`.
    pub fn new(path: impl Into<PathBuf>, source: E) -> Self {
        PathError { path: path.into(), source }
    }
}

/// An I/O failure on a named path.
pub type PathIoError = PathError<std::io::Error>;
/// A JSON file that does not parse.
pub type PathJsonError = PathError<serde_json::Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn names_the_path_and_keeps_the_source() {
        let e = PathIoError::new("/x/y", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert_eq!(e.to_string(), "/x/y");
        assert_eq!(e.source().unwrap().to_string(), "gone");
        let j = PathJsonError::new("/a.json", serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(j.to_string(), "/a.json");
        assert!(j.source().unwrap().to_string().contains("expected"));
    }
}
