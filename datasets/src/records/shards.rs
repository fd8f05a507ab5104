//! Parquet shards of records: the codec every record type shares, the atomic shard writer that
//! numbers shards after those already present, and the resume index that says which samples a
//! directory already holds.
//!
//! A shard is written whole to a hidden temp file, fsynced and renamed ([`crate::atomic`]), so
//! a directory only ever holds complete, readable files — the property crash-safe resume
//! relies on. Temp files a killed run left behind are swept when a writer opens the directory.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::sample::{sample_column, SampleRecord};
use super::RecordsError;
use crate::atomic::{self, AtomicFile};

/// Prefix of shard file names (`part-00000.parquet`, …).
pub const SHARD_PREFIX: &str = "part-";

/// A record type stored in Parquet shards: a [`SampleRecord`] plus its own columns.
pub trait ShardRecord: Sized {
    /// The file's Arrow schema (column order as documented for the file type).
    fn schema() -> SchemaRef;

    /// Key-value metadata written into every file (e.g. a schema version). Default none.
    fn metadata() -> Vec<KeyValue> {
        Vec::new()
    }

    /// The shared columns of this row.
    fn sample(&self) -> &SampleRecord;

    /// Column `name` when it is one of this type's own columns (`None` otherwise).
    fn own_column(name: &str, rows: &[Self]) -> Option<ArrayRef>;

    /// Appends the rows of `batch` (read from `path`, which errors name) to `out`.
    fn decode(path: &Path, batch: &RecordBatch, out: &mut Vec<Self>) -> Result<(), RecordsError>;
}

/// Converts rows into one record batch with `R`'s schema.
pub fn to_batch<R: ShardRecord>(rows: &[R]) -> Result<RecordBatch, ArrowError> {
    let schema = R::schema();
    let samples: Vec<&SampleRecord> = rows.iter().map(R::sample).collect();
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            sample_column(f.name(), &samples)
                .or_else(|| R::own_column(f.name(), rows))
                .ok_or_else(|| ArrowError::SchemaError(format!("no encoder for `{}`", f.name())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

/// Encodes rows as a complete Parquet file in memory (snappy, `R`'s metadata).
pub fn encode_parquet<R: ShardRecord>(rows: &[R]) -> Result<Vec<u8>, ParquetError> {
    let batch = to_batch(rows)?;
    let metadata = R::metadata();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata((!metadata.is_empty()).then_some(metadata))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(buf)
}

/// Writes `rows` as the file `path` atomically (parent directories are created), so readers
/// and a resumed run never see a partial shard.
pub fn write_shard<R: ShardRecord>(path: &Path, rows: &[R]) -> Result<(), RecordsError> {
    let bytes = encode_parquet(rows).map_err(|source| RecordsError::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    let mut f = AtomicFile::create(path)?;
    f.write_all(&bytes).map_err(|e| RecordsError::io(path, e))?;
    f.commit()?;
    Ok(())
}

/// Reads every row of one record file.
pub fn read_shard<R: ShardRecord>(path: &Path) -> Result<Vec<R>, RecordsError> {
    let mut rows = Vec::new();
    for batch in read_shard_batches(path)? {
        rows.extend(batch?);
    }
    Ok(rows)
}

/// Reads one record file a record batch at a time (about 1,024 rows each), so that a large
/// file is never whole in memory (`distill data filter` streams its inputs through this).
pub fn read_shard_batches<R: ShardRecord>(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<R>, RecordsError>>, RecordsError> {
    let file = fs::File::open(path).map_err(|e| RecordsError::io(path, e))?;
    let parquet = |source| RecordsError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    let path = path.to_path_buf();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|source| RecordsError::Arrow {
            path: path.clone(),
            source,
        })?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        R::decode(&path, &batch, &mut rows)?;
        Ok(rows)
    }))
}

/// The completed shard files of a directory, sorted by name (hidden temp files and
/// non-Parquet files such as `_manifest.json` are skipped).
pub fn list_shards(dir: &Path) -> Result<Vec<PathBuf>, RecordsError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| RecordsError::io(dir, e))? {
        let p = entry.map_err(|e| RecordsError::io(dir, e))?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with('.') && name.ends_with(".parquet") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every row of every shard in `dir`, in shard-name order (later shards later).
pub fn read_shard_dir<R: ShardRecord>(dir: &Path) -> Result<Vec<R>, RecordsError> {
    let mut rows = Vec::new();
    for shard in list_shards(dir)? {
        rows.extend(read_shard(&shard)?);
    }
    Ok(rows)
}

/// The number of a shard named `part-NNNNN.parquet`.
pub fn shard_number(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(SHARD_PREFIX)?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

/// True for temp files of an interrupted write: [`atomic::is_temp_name`] names, and the
/// `.NAME.PID.tmp` names older versions used. They are never data.
fn is_stale_temp(name: &str) -> bool {
    atomic::is_temp_name(name) || (name.starts_with('.') && name.ends_with(".tmp"))
}

/// Buffers rows and writes them as whole shards numbered after those already in the directory.
pub struct ShardWriter<R> {
    dir: PathBuf,
    next: usize,
    pending: Vec<R>,
    shard_size: usize,
}

impl<R: ShardRecord> ShardWriter<R> {
    /// Opens `dir` (created if missing): sweeps stale temp files, numbers new shards after the
    /// highest existing one. Each shard holds `shard_size` rows (at least 1).
    pub fn open(dir: &Path, shard_size: usize) -> Result<Self, RecordsError> {
        fs::create_dir_all(dir).map_err(|e| RecordsError::io(dir, e))?;
        let mut next = 0;
        for entry in fs::read_dir(dir).map_err(|e| RecordsError::io(dir, e))? {
            let path = entry.map_err(|e| RecordsError::io(dir, e))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if is_stale_temp(&name) {
                let _ = fs::remove_file(&path);
            } else if let Some(n) = shard_number(&path) {
                next = usize::max(next, n + 1);
            }
        }
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            next,
            pending: Vec::new(),
            shard_size: shard_size.max(1),
        })
    }

    /// Adds a row; writes a shard when `shard_size` rows are pending.
    pub fn push(&mut self, row: R) -> Result<(), RecordsError> {
        self.pending.push(row);
        if self.pending.len() >= self.shard_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending rows (if any) as the next shard.
    pub fn flush(&mut self) -> Result<(), RecordsError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self
            .dir
            .join(format!("{SHARD_PREFIX}{:05}.parquet", self.next));
        write_shard(&path, &self.pending)?;
        tracing::debug!(shard = %path.display(), rows = self.pending.len(), "wrote shard");
        self.next += 1;
        self.pending.clear();
        Ok(())
    }
}

/// Which samples a directory already holds, by (problem id, sample index). A later row for the
/// same identity supersedes an earlier one; the caller decides which rows count as done
/// (traces: every row, failures included; eval: successful rows only).
#[derive(Debug, Default)]
pub struct ResumeIndex {
    latest: HashMap<(String, u32), bool>,
}

impl ResumeIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a row found on disk. Returns false when its identity was seen before (a
    /// duplicate, which now supersedes the earlier row).
    pub fn record(&mut self, sample: &SampleRecord, done: bool) -> bool {
        self.latest.insert(sample.key(), done).is_none()
    }

    /// True when the latest row for this identity counts as done.
    pub fn is_done(&self, problem_id: &str, sample_index: u32) -> bool {
        self.latest
            .get(&(problem_id.to_string(), sample_index))
            .copied()
            .unwrap_or(false)
    }

    /// Identities whose latest row counts as done.
    pub fn done_count(&self) -> usize {
        self.latest.values().filter(|d| **d).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_numbers_parse() {
        assert_eq!(shard_number(Path::new("/x/part-00012.parquet")), Some(12));
        assert_eq!(shard_number(Path::new("/x/other.parquet")), None);
    }

    #[test]
    fn stale_temps_of_every_version_are_recognised() {
        assert!(is_stale_temp(".part-00001.parquet.1234.tmp"));
        assert!(is_stale_temp(".part-00001.parquet.tmp-1234"));
        assert!(is_stale_temp(".part-00001.parquet.tmp-1234-7"));
        assert!(!is_stale_temp("part-00001.parquet"));
        assert!(!is_stale_temp("manifest.json"));
    }
}
