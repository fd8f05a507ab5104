//! Supervised fine-tuning data: from conversations or pre-tokenised rows to packed training rows.
//!
//! The pipeline the student trainer runs (each step a public function so it can be tested and
//! reused on its own):
//! 1. [`load_training_rows`] — conversations (trace / messages / OpenR1 layouts) or token rows;
//! 2. [`build_examples`] — render with the student's chat template, tokenise, mask the prompt
//!    with -100, append the end-of-turn token, apply `max_seq_len` (drop or truncate, counted);
//! 3. [`shuffle`] — deterministic from the seed;
//! 4. [`pack`] / [`pack_with`] — rows of exactly `max_seq_len` with per-document `position_ids`
//!    and `segment_ids` (or [`pad_example`] when packing is off).
//!
//! [`prepare_examples`] runs steps 1–2 for either format.

mod build;
mod load;
mod pack;

pub use build::{
    apply_length_policy, assistant_end_token, build_examples, render, shuffle, strip_prompt_overlap,
    BuildStats, Conversation, OverflowPolicy, SftBuildConfig, SftExample, IGNORE_INDEX,
};
pub use load::{load_training_rows, training_files, write_token_file, TrainingData, TrainingFormat};
pub use pack::{pack, pack_with, pad_example, PackStrategy, PackedRow, PAD_SEGMENT};

use std::path::Path;

use crate::{DatasetError, TextTokenizer};

/// Loads `path` in `format` and returns examples ready to shuffle and pack: conversations are
/// built with `tok`; token rows only get the length policy. `tok` is required for `traces`.
pub fn prepare_examples(
    path: &Path,
    format: TrainingFormat,
    tok: Option<&TextTokenizer>,
    cfg: &SftBuildConfig,
) -> Result<(Vec<SftExample>, BuildStats), DatasetError> {
    match load_training_rows(path, format)? {
        TrainingData::Conversations(rows) => {
            let tok = tok.ok_or_else(|| {
                DatasetError::Invalid("format \"traces\" needs the student's tokenizer to build examples".into())
            })?;
            build_examples(&rows, tok, cfg)
        }
        TrainingData::Tokens(rows) => {
            let mut stats = BuildStats { input: rows.len(), ..BuildStats::default() };
            let out = rows.into_iter().filter_map(|ex| apply_length_policy(ex, cfg, &mut stats)).collect();
            Ok((out, stats))
        }
    }
}
