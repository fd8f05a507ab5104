//! JSON Lines reading and writing with errors that name the file and the line, because problem
//! sets and exported datasets are edited by hand and a bad line must be findable.

use crate::atomic::AtomicFile;
use crate::DatasetError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Read every non-blank line of `path` as a JSON value, with its 1-based line number.
pub fn read_jsonl_values(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, DatasetError> {
    let file = File::open(path).map_err(|e| DatasetError::io(path, e))?;
    parse_jsonl_values(BufReader::new(file), path)
}

/// Parse JSON Lines from any reader (a file, or text embedded in the binary); `origin` names
/// the source in errors, which carry the 1-based line number.
pub fn parse_jsonl_values(
    reader: impl BufRead,
    origin: &Path,
) -> Result<Vec<(usize, serde_json::Value)>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| DatasetError::line(origin, line_no, e.to_string()))?;
        // Tolerate a UTF-8 byte-order mark (Windows editors write one).
        let line = if line_no == 1 {
            line.trim_start_matches('\u{feff}')
        } else {
            &line
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| DatasetError::line(origin, line_no, format!("invalid JSON: {e}")))?;
        out.push((line_no, v));
    }
    Ok(out)
}

/// Read every non-blank line of `path` as a `T`.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, DatasetError> {
    read_jsonl_values(path)?
        .into_iter()
        .map(|(line, v)| {
            serde_json::from_value(v).map_err(|e| DatasetError::line(path, line, e.to_string()))
        })
        .collect()
}

/// Write `items` as JSON Lines, atomically (temp file then rename).
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), DatasetError> {
    let mut f = AtomicFile::create(path)?;
    for item in items {
        let s = serde_json::to_string(item)
            .map_err(|e| DatasetError::file(path, format!("cannot serialise row: {e}")))?;
        f.write_all(s.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .map_err(|e| DatasetError::io(path, e))?;
    }
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        write_jsonl(
            &p,
            &[serde_json::json!({"a": 1}), serde_json::json!({"a": 2})],
        )
        .unwrap();
        let v: Vec<serde_json::Value> = read_jsonl(&p).unwrap();
        assert_eq!(v.len(), 2);
        std::fs::write(&p, "\u{feff}{\"a\":1}\n\n{\"a\":\n").unwrap();
        let err = read_jsonl_values(&p).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:3:"), "{err}");
    }
}
