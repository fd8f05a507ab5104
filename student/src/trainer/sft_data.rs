//! The SFT data side of a run: training and held-out rows, the pad id, the run length and the
//! micro-batches of each optimizer step drawn from the resumable row stream.

use datasets::TextTokenizer;
use models::{GenerationConfig, ModelConfig};

use crate::batch::{MicroBatch, RowStream, TrainRow};
use crate::config::TrainConfig;
use crate::data::{load_rows, DataStats};
use crate::error::Result;

/// Loaded training and held-out rows.
pub struct SftData {
    /// Training rows (examples or packed rows).
    pub rows: Vec<TrainRow>,
    /// Held-out rows (empty without `data.eval`).
    pub eval_rows: Vec<TrainRow>,
    /// Statistics of the training data.
    pub train_stats: DataStats,
    /// Statistics of the held-out data.
    pub eval_stats: Option<DataStats>,
    /// Padding id of micro-batches.
    pub pad_id: u32,
}

impl SftData {
    /// Loads `data.train` (and `data.eval`), and adds the data's end-of-turn token to the
    /// generation config's EOS ids so the trained model stops where its examples stop.
    pub fn load(cfg: &TrainConfig, tokenizer: Option<&TextTokenizer>, model_config: &ModelConfig, generation: &mut GenerationConfig) -> Result<Self> {
        let pad_id = generation
            .pad_token_id
            .or(model_config.pad_token_id)
            .or(tokenizer.and_then(|t| t.pad_token_id()))
            .or(generation.eos_token_ids.first().copied())
            .unwrap_or(0);
        let (rows, train_stats) = load_rows(&cfg.data.train, &cfg.data, tokenizer, cfg.train.seed, cfg.train.shuffle, pad_id)?;
        let (eval_rows, eval_stats) = match &cfg.data.eval {
            Some(p) => {
                let (r, s) = load_rows(p, &cfg.data, tokenizer, cfg.train.seed, false, pad_id)?;
                (r, Some(s))
            }
            None => (Vec::new(), None),
        };
        if let Some(eos) = train_stats.eos_token_id {
            if !generation.eos_token_ids.contains(&eos) {
                tracing::info!(eos, "adding the assistant end-of-turn token to generation_config eos_token_id");
                generation.eos_token_ids.push(eos);
            }
        }
        Ok(Self {
            rows,
            eval_rows,
            train_stats,
            eval_stats,
            pad_id,
        })
    }

    /// Rows of `epochs` full passes.
    pub fn epoch_rows(&self, cfg: &TrainConfig) -> u64 {
        self.rows.len() as u64 * cfg.train.epochs
    }

    /// Optimizer steps of the run: `max_steps`, else enough for `epochs` passes.
    pub fn total_steps(&self, cfg: &TrainConfig, world: usize) -> u64 {
        let rows_per_step = (cfg.train.batch_size * cfg.train.grad_accum * world) as u64;
        if cfg.train.max_steps > 0 {
            cfg.train.max_steps
        } else {
            self.epoch_rows(cfg).div_ceil(rows_per_step)
        }
    }

    /// The micro-batches of the next optimizer step and the epoch of its last row; `None`
    /// when the data is exhausted (`epochs` passes done).
    /// With `world` data-parallel peers a step holds `grad_accum × world` micro-batches (every
    /// peer gathers them all and computes its share), so the data order does not depend on
    /// the number of peers.
    pub fn next_step(&self, cfg: &TrainConfig, world: usize, stream: &mut RowStream, mut epoch: u64) -> Option<(Vec<MicroBatch>, u64)> {
        let limit = if cfg.train.max_steps > 0 { u64::MAX } else { self.epoch_rows(cfg) };
        let micro_per_step = cfg.train.grad_accum * world;
        let mut mbs = Vec::with_capacity(micro_per_step);
        for _ in 0..micro_per_step {
            let mut idx = Vec::with_capacity(cfg.train.batch_size);
            while idx.len() < cfg.train.batch_size && stream.consumed() < limit {
                let (i, e) = stream.next_index();
                idx.push(i);
                epoch = e;
            }
            if idx.is_empty() {
                break;
            }
            let refs: Vec<&TrainRow> = idx.iter().map(|&i| &self.rows[i]).collect();
            mbs.push(MicroBatch::new(&refs, self.pad_id));
        }
        (!mbs.is_empty()).then_some((mbs, epoch))
    }
}
