//! Training data for a run: `datasets::sft` loads, renders (student chat template), masks,
//! length-filters and packs; this module picks the options from the config and turns the
//! result into [`TrainRow`]s. Packed rows have their trailing padding removed (the batcher pads
//! each micro-batch only to its longest row).

use std::path::Path;

use datasets::sft::{self, OverflowPolicy, PackStrategy, SftBuildConfig, TrainingFormat, PAD_SEGMENT};
use datasets::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::batch::TrainRow;
use crate::config::{DataFormat, DataSection, OverLength};
use crate::error::{Result, StudentError};

/// What loading did, recorded in the run manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DataStats {
    /// Examples before length filtering.
    pub input_examples: usize,
    /// Examples kept.
    pub examples: usize,
    /// Dropped for exceeding `max_seq_len`.
    pub dropped_too_long: usize,
    /// Truncated to `max_seq_len`.
    pub truncated: usize,
    /// Dropped because no trained token remained.
    pub dropped_no_labels: usize,
    /// Training rows (after packing).
    pub rows: usize,
    /// Non-padding tokens.
    pub tokens: usize,
    /// Loss tokens.
    pub label_tokens: usize,
    /// Token appended after each assistant turn (must be an EOS of the saved model).
    pub eos_token_id: Option<u32>,
}

/// Loads `path` as configured in `[data]`; `tok` is needed for `traces`/`messages`. The
/// example order is shuffled from `seed` before packing (so packs mix sources), then rows are
/// reshuffled per epoch by the batcher.
pub fn load_rows(
    path: &Path,
    data: &DataSection,
    tok: Option<&TextTokenizer>,
    seed: u64,
    shuffle: bool,
    pad_id: u32,
) -> Result<(Vec<TrainRow>, DataStats)> {
    let format = match data.format {
        DataFormat::Traces | DataFormat::Messages => TrainingFormat::Traces,
        DataFormat::Tokens => TrainingFormat::Tokens,
    };
    let build = SftBuildConfig {
        max_seq_len: data.max_seq_len,
        overflow: match data.over_length {
            OverLength::Drop => OverflowPolicy::Drop,
            OverLength::Truncate => OverflowPolicy::Truncate,
        },
        ..SftBuildConfig::default()
    };
    let (mut examples, bs) = sft::prepare_examples(path, format, tok, &build)
        .map_err(|e| StudentError::dataset(format!("reading training data {}", path.display()), e))?;
    if examples.is_empty() {
        return Err(StudentError::Data(format!(
            "{}: no usable examples ({} read, {} too long, {} without trained tokens)",
            path.display(),
            bs.input,
            bs.dropped_too_long,
            bs.dropped_no_labels
        )));
    }
    if shuffle && data.packing {
        sft::shuffle(&mut examples, seed);
    }
    let rows: Vec<TrainRow> = if data.packing {
        sft::pack_with(&examples, data.max_seq_len, PackStrategy::Sequential, pad_id)
            .into_iter()
            .map(|r| {
                let n = r.segment_ids.iter().rposition(|&s| s != PAD_SEGMENT).map_or(0, |i| i + 1);
                TrainRow {
                    input_ids: r.input_ids[..n].to_vec(),
                    labels: r.labels[..n].to_vec(),
                    position_ids: Some(r.position_ids[..n].iter().map(|&p| i64::from(p)).collect()),
                    segment_ids: Some(r.segment_ids[..n].iter().map(|&s| i64::from(s)).collect()),
                }
            })
            .collect()
    } else {
        examples.into_iter().map(|e| TrainRow::single(e.input_ids, e.labels)).collect()
    };
    let stats = DataStats {
        input_examples: bs.input,
        examples: bs.examples,
        dropped_too_long: bs.dropped_too_long,
        truncated: bs.truncated,
        dropped_no_labels: bs.dropped_no_labels,
        rows: rows.len(),
        tokens: rows.iter().map(|r| r.input_ids.len()).sum(),
        label_tokens: rows.iter().map(|r| r.num_loss_tokens()).sum(),
        eos_token_id: bs.eos_token_id,
    };
    if stats.dropped_too_long > 0 {
        tracing::warn!(
            file = %path.display(),
            dropped = stats.dropped_too_long,
            max_seq_len = data.max_seq_len,
            "examples longer than max_seq_len were dropped"
        );
    }
    Ok((rows, stats))
}
