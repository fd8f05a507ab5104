//! Pass 2 of `distill data filter` and its output directory.
//!
//! The output is built in a temp directory beside `--out` (`.<name>.tmp-<pid>-<n>`) and renamed
//! into place once complete; an existing output is moved aside (`.<name>.old-<pid>`) and removed
//! only after the new one is in place. A kill therefore leaves either the old output or the new
//! one, never a mix; leftovers of killed runs are removed when the next run starts (under the
//! directory's lock, `.<name>.lock` beside it, so never those of a live run). Because the whole
//! directory is replaced, `--out` must hold nothing but filter outputs.
//!
//! Pass 2 re-reads the shards and writes the exported rows in sorted order: directly when they
//! already arrive sorted, otherwise through a spill file in the temp directory (length-prefixed
//! JSON rows read back by offset), so memory holds one row at a time plus one Parquet row group.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::scan::RowMeta;
use super::{
    Decision, DropReason, DroppedRecord, ExportConfig, FilterConfig, OpenR1Generations,
    LEGACY_MANIFEST_FILE, MANIFEST_FILE,
};
use crate::atomic::{is_temp_name, sync_parent_dir, AtomicFile};
use crate::export::{
    messages_sink, openr1_records, openr1_sink, MessagesRecord, OpenR1Record, ParquetSink,
    ProblemExtras,
};
use crate::lock::{OutputLock, LOCK_FILE};
use crate::traces::{read_trace_batches, TraceRow};
use crate::{DatasetError, ProblemColumns};

/// Every file a filter run may leave in its output directory.
const OUTPUT_FILES: &[&str] = &[
    "messages.parquet",
    "messages.jsonl",
    "openr1.parquet",
    "dropped.jsonl",
    "filter_report.json",
    MANIFEST_FILE,
    LEGACY_MANIFEST_FILE,
    LOCK_FILE,
];

/// The output directory being built: a locked target and the temp directory beside it.
pub(super) struct OutDir {
    target: PathBuf,
    parent: PathBuf,
    name: String,
    temp: PathBuf,
    _lock: OutputLock,
    committed: bool,
}

impl OutDir {
    /// Locks `target`, checks it holds only filter outputs, removes leftovers of killed runs and
    /// creates a fresh temp directory beside it.
    pub fn begin(target: &Path) -> Result<Self, DatasetError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n != "..")
            .ok_or_else(|| DatasetError::file(target, "--out must name a directory"))?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let lock = OutputLock::acquire_beside(target, "distill data filter")?;
        let existing = match std::fs::read_dir(target) {
            Ok(entries) => entries
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DatasetError::io(target, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(DatasetError::io(target, e)),
        };
        for entry in existing {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !OUTPUT_FILES.contains(&file.as_str()) && !is_temp_name(&file) {
                return Err(DatasetError::file(
                    target,
                    format!(
                        "holds `{file}`, which `distill data filter` does not write; the output \
                         directory is replaced as a whole, so choose an empty or filter output directory"
                    ),
                ));
            }
        }
        remove_leftovers(&parent, &name)?;
        let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::create_dir(&temp).map_err(|e| DatasetError::io(&temp, e))?;
        Ok(Self {
            target: target.to_path_buf(),
            parent,
            name,
            temp,
            _lock: lock,
            committed: false,
        })
    }

    /// The temp directory the outputs are written into.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Puts the complete temp directory in place of the target (the old one is removed after).
    pub fn commit(mut self) -> Result<(), DatasetError> {
        for file in std::fs::read_dir(&self.temp).map_err(|e| DatasetError::io(&self.temp, e))? {
            let file = file.map_err(|e| DatasetError::io(&self.temp, e))?;
            let _ = File::open(file.path()).and_then(|f| f.sync_all());
        }
        let old = self
            .parent
            .join(format!(".{}.old-{}", self.name, std::process::id()));
        if self.target.exists() {
            std::fs::rename(&self.target, &old).map_err(|e| DatasetError::io(&self.target, e))?;
            fail_point("rename-old")?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(|e| DatasetError::io(&self.target, e))?;
        self.committed = true;
        sync_parent_dir(&self.target);
        if let Err(e) = std::fs::remove_dir_all(&old).or_else(|e| match old.exists() {
            true => Err(e),
            false => Ok(()),
        }) {
            tracing::warn!(dir = %old.display(), "could not remove the previous output: {e}");
        }
        Ok(())
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.temp);
            // Interrupted between the two renames: put the previous output back.
            let old = self
                .parent
                .join(format!(".{}.old-{}", self.name, std::process::id()));
            if old.is_dir() && !self.target.exists() {
                let _ = std::fs::rename(&old, &self.target);
            }
        }
    }
}

/// Removes `.<name>.tmp-*` and `.<name>.old-*` directories left in `parent` by killed runs.
fn remove_leftovers(parent: &Path, name: &str) -> Result<(), DatasetError> {
    let (tmp, old) = (format!(".{name}.tmp-"), format!(".{name}.old-"));
    for entry in std::fs::read_dir(parent).map_err(|e| DatasetError::io(parent, e))? {
        let entry = entry.map_err(|e| DatasetError::io(parent, e))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if (file.starts_with(&tmp) || file.starts_with(&old)) && entry.path().is_dir() {
            tracing::info!(dir = %entry.path().display(), "removing the leftover of an interrupted filter run");
            std::fs::remove_dir_all(entry.path()).map_err(|e| DatasetError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Test hook: the step at which the next run on this thread fails.
    pub(super) static FAIL_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Fails with an injected error when a test asked for it at `step`; a no-op otherwise.
pub(super) fn fail_point(step: &str) -> Result<(), DatasetError> {
    #[cfg(test)]
    if FAIL_AT.with(|f| f.get()) == Some(step) {
        return Err(DatasetError::Invalid(format!("injected failure at {step}")));
    }
    let _ = step;
    Ok(())
}

/// Calls `f` with the rows of every input file, a record batch at a time, in file order.
pub(super) fn for_each_batch(
    traces: &Path,
    inputs: &[PathBuf],
    mut f: impl FnMut(Vec<TraceRow>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    for file in inputs {
        if !traces.is_dir() && file.extension().is_some_and(|e| e == "jsonl") {
            f(crate::jsonl::read_jsonl(file)?)?;
            continue;
        }
        let batches = read_trace_batches(file)?;
        for batch in batches {
            f(batch?)?;
        }
    }
    Ok(())
}

/// Which rows pass 2 exports: the kept ones, and with `openr1_generations = "all"` every
/// non-failed row of a problem that kept one.
fn exported_rows(metas: &[RowMeta], problems: usize, cfg: &ExportConfig) -> Vec<bool> {
    let kept = |m: &RowMeta| m.decision == Decision::Keep;
    if !(cfg.openr1 && cfg.openr1_generations == OpenR1Generations::All) {
        return metas.iter().map(kept).collect();
    }
    let mut has_kept = vec![false; problems];
    metas
        .iter()
        .filter(|m| kept(m))
        .for_each(|m| has_kept[m.problem as usize] = true);
    let failed = |m: &RowMeta| {
        matches!(
            m.decision,
            Decision::Drop {
                reason: DropReason::Error,
                ..
            }
        )
    };
    metas
        .iter()
        .map(|m| has_kept[m.problem as usize] && !failed(m))
        .collect()
}

/// Pass 2: re-reads the inputs and writes the exported rows in `order` into `dir`.
#[allow(clippy::too_many_arguments)]
pub(super) fn export_rows(
    traces: &Path,
    inputs: &[PathBuf],
    metas: &[RowMeta],
    ids: &[String],
    order: &[u32],
    cfg: &FilterConfig,
    extras: &HashMap<String, ProblemExtras>,
    dir: &Path,
) -> Result<(), DatasetError> {
    let exported = exported_rows(metas, ids.len(), &cfg.export);
    let mut in_sequence = order.iter().filter(|&&i| exported[i as usize]);
    let sorted_on_arrival = {
        let mut last = None;
        in_sequence.all(|&i| last.replace(i).is_none_or(|l| l < i))
    };
    let mut out = Exporter::create(dir, &cfg.export, extras)?;
    let mut next = 0usize;
    let mut visit =
        |batch: Vec<TraceRow>,
         sink: &mut dyn FnMut(usize, TraceRow) -> Result<(), DatasetError>| {
            for row in batch {
                let m = metas.get(next).ok_or_else(|| changed(traces))?;
                if ids[m.problem as usize] != row.problem_id || m.sample_index != row.sample_index {
                    return Err(changed(traces));
                }
                if exported[next] {
                    sink(next, row)?;
                }
                next += 1;
            }
            Ok(())
        };
    if sorted_on_arrival {
        let mut direct =
            |i: usize, row: TraceRow| out.push(row, metas[i].decision == Decision::Keep);
        for_each_batch(traces, inputs, |batch| visit(batch, &mut direct))?;
    } else {
        tracing::info!(
            "inputs are not in (problem_id, sample_index) order: spilling exported rows to disk"
        );
        let mut spill = Spill::create(&dir.join(".spill"), metas.len())?;
        for_each_batch(traces, inputs, |batch| {
            visit(batch, &mut |i, row| spill.put(i, row))
        })?;
        let mut spilled = spill.finish()?;
        for &i in order.iter().filter(|&&i| exported[i as usize]) {
            out.push(
                spilled.get(i as usize)?,
                metas[i as usize].decision == Decision::Keep,
            )?;
        }
        spilled.remove();
    }
    if next != metas.len() {
        return Err(changed(traces));
    }
    out.finish()
}

fn changed(traces: &Path) -> DatasetError {
    DatasetError::file(traces, "changed while being filtered (rows differ between the two passes); rerun when the sampler is done")
}

/// Writers of the exported files, fed rows in sorted order.
struct Exporter<'a> {
    cfg: &'a ExportConfig,
    extras: &'a HashMap<String, ProblemExtras>,
    messages: ParquetSink<MessagesRecord>,
    jsonl: Option<JsonlSink>,
    openr1: Option<ParquetSink<OpenR1Record>>,
    /// Rows of the current problem for the OpenR1 layout.
    group: Vec<TraceRow>,
}

impl<'a> Exporter<'a> {
    fn create(
        dir: &Path,
        cfg: &'a ExportConfig,
        extras: &'a HashMap<String, ProblemExtras>,
    ) -> Result<Self, DatasetError> {
        Ok(Self {
            cfg,
            extras,
            messages: messages_sink(&dir.join("messages.parquet"))?,
            jsonl: cfg
                .jsonl
                .then(|| JsonlSink::create(&dir.join("messages.jsonl")))
                .transpose()?,
            openr1: cfg
                .openr1
                .then(|| openr1_sink(&dir.join("openr1.parquet")))
                .transpose()?,
            group: Vec::new(),
        })
    }

    fn push(&mut self, row: TraceRow, kept: bool) -> Result<(), DatasetError> {
        if kept {
            let record = MessagesRecord::from_trace(&row, self.cfg.prompt);
            if let Some(j) = &mut self.jsonl {
                j.push(&record)?;
            }
            self.messages.push(record)?;
            fail_point("messages.parquet")?;
        }
        if self.openr1.is_some() {
            if self
                .group
                .first()
                .is_some_and(|g| g.problem_id != row.problem_id)
            {
                self.flush_group()?;
            }
            self.group.push(row);
        }
        Ok(())
    }

    fn flush_group(&mut self) -> Result<(), DatasetError> {
        let Some(sink) = &mut self.openr1 else {
            return Ok(());
        };
        let rows: Vec<&TraceRow> = self.group.iter().collect();
        for mut record in openr1_records(&rows, self.cfg.prompt) {
            if let Some(extras) = self.extras.get(&record.problem_id) {
                extras.fill(&mut record);
            }
            sink.push(record)?;
        }
        self.group.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(), DatasetError> {
        self.flush_group()?;
        self.messages.finish()?;
        if let Some(j) = self.jsonl {
            j.finish()?;
        }
        if let Some(o) = self.openr1 {
            o.finish()?;
        }
        Ok(())
    }
}

/// JSON Lines written record by record.
struct JsonlSink {
    path: PathBuf,
    file: AtomicFile,
}

impl JsonlSink {
    fn create(path: &Path) -> Result<Self, DatasetError> {
        Ok(Self {
            path: path.to_path_buf(),
            file: AtomicFile::create(path)?,
        })
    }

    fn push<T: Serialize>(&mut self, item: &T) -> Result<(), DatasetError> {
        serde_json::to_writer(&mut self.file, item)
            .map_err(|e| DatasetError::file(&self.path, format!("cannot serialise row: {e}")))?;
        self.file
            .write_all(b"\n")
            .map_err(|e| DatasetError::io(&self.path, e))
    }

    fn finish(self) -> Result<(), DatasetError> {
        self.file.commit()
    }
}

/// `dropped.jsonl`: one line per dropped row, in sorted order.
pub(super) fn write_dropped(
    path: &Path,
    metas: &[RowMeta],
    ids: &[String],
    order: &[u32],
) -> Result<(), DatasetError> {
    let mut sink = JsonlSink::create(path)?;
    for &i in order {
        let m = &metas[i as usize];
        if let Decision::Drop { reason, detail } = &m.decision {
            sink.push(&DroppedRecord {
                problem_id: ids[m.problem as usize].clone(),
                sample_index: m.sample_index,
                reason: *reason,
                detail: detail.clone(),
            })?;
        }
    }
    sink.finish()
}

/// Exported rows parked on disk between reading them (file order) and writing them (sorted).
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
    offsets: Vec<u64>,
    written: u64,
}

/// A finished spill file, read back by row number.
struct Spilled {
    path: PathBuf,
    file: File,
    offsets: Vec<u64>,
    buf: Vec<u8>,
}

impl Spill {
    fn create(path: &Path, rows: usize) -> Result<Self, DatasetError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| DatasetError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
            offsets: vec![u64::MAX; rows],
            written: 0,
        })
    }

    /// Parks row number `i` (its `completion`, which the exports do not use, is dropped).
    fn put(&mut self, i: usize, mut row: TraceRow) -> Result<(), DatasetError> {
        row.completion = String::new();
        let bytes =
            serde_json::to_vec(&row).map_err(|e| DatasetError::file(&self.path, e.to_string()))?;
        let len = u32::try_from(bytes.len())
            .map_err(|_| DatasetError::file(&self.path, "row over 4 GB"))?;
        self.writer
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.writer.write_all(&bytes))
            .map_err(|e| DatasetError::io(&self.path, e))?;
        self.offsets[i] = self.written;
        self.written += 4 + u64::from(len);
        Ok(())
    }

    fn finish(self) -> Result<Spilled, DatasetError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| DatasetError::io(&self.path, e.into_error()))?;
        Ok(Spilled {
            path: self.path,
            file,
            offsets: self.offsets,
            buf: Vec::new(),
        })
    }
}

impl Spilled {
    fn get(&mut self, i: usize) -> Result<TraceRow, DatasetError> {
        let io = |e| DatasetError::io(&self.path, e);
        self.file
            .seek(SeekFrom::Start(self.offsets[i]))
            .map_err(io)?;
        let mut len = [0u8; 4];
        self.file.read_exact(&mut len).map_err(io)?;
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.file.read_exact(&mut self.buf).map_err(io)?;
        serde_json::from_slice(&self.buf).map_err(|e| DatasetError::file(&self.path, e.to_string()))
    }

    fn remove(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `solution`, `problem_type` and `question_type` of the problems that have exported rows, from
/// `configured` or else the problem file recorded in the traces' manifest. A recorded file that
/// is gone only warns (the columns stay null); a configured one must exist.
pub(super) fn problem_extras(
    traces: &Path,
    configured: Option<&Path>,
    metas: &[RowMeta],
    ids: &[String],
) -> Result<HashMap<String, ProblemExtras>, DatasetError> {
    let recorded = recorded_problems(traces);
    let (path, columns) = match (configured, recorded) {
        (Some(p), rec) => (p.to_path_buf(), rec.map(|(_, c)| c).unwrap_or_default()),
        (None, Some((p, c))) if p.is_file() => (p, c),
        (None, Some((p, _))) => {
            tracing::warn!(problems = %p.display(), "the traces' problem file is gone: openr1.parquet `solution` stays null (set export.problems)");
            return Ok(HashMap::new());
        }
        (None, None) => return Ok(HashMap::new()),
    };
    let mut wanted = vec![false; ids.len()];
    metas
        .iter()
        .filter(|m| m.decision == Decision::Keep)
        .for_each(|m| wanted[m.problem as usize] = true);
    let wanted: std::collections::HashSet<&str> = ids
        .iter()
        .zip(&wanted)
        .filter(|(_, &w)| w)
        .map(|(id, _)| id.as_str())
        .collect();
    let problems = crate::load_problems(&path, &columns)?;
    Ok(problems
        .iter()
        .filter(|p| wanted.contains(p.id.as_str()))
        .map(|p| (p.id.clone(), ProblemExtras::of(p)))
        .filter(|(_, e)| *e != ProblemExtras::default())
        .collect())
}

/// The problem file and column names recorded in a trace directory's manifest
/// (`_manifest.json`, or the older `manifest.json`), a relative path resolved against the working
/// directory first and the trace directory's parent second.
fn recorded_problems(traces: &Path) -> Option<(PathBuf, ProblemColumns)> {
    let text = ["_manifest.json", "manifest.json"]
        .iter()
        .find_map(|n| std::fs::read_to_string(traces.join(n)).ok())?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let path = PathBuf::from(v.pointer("/config/problems")?.as_str()?);
    let columns = v
        .pointer("/config/columns")
        .and_then(|c| serde_json::from_value::<ProblemColumns>(c.clone()).ok())
        .unwrap_or_default();
    let beside = traces.parent().map(|p| p.join(&path));
    let path = match beside {
        Some(b) if path.is_relative() && !path.exists() && b.exists() => b,
        _ => path,
    };
    Some((path, columns))
}
