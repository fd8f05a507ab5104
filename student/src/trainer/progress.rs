//! Step progress of a training run: an indicatif bar when stderr is a terminal, otherwise (a
//! batch job's log file, a pipe) a `tracing` line every [`datasets::progress::ProgressEvery`]
//! with step/total, loss, lr, tokens/s and ETA, so a log shows more than a start and an end.
//! Only the leader of a data-parallel run reports.

use datasets::progress::{stderr_is_terminal, ProgressLog};
use indicatif::{ProgressBar, ProgressStyle};

/// The bar or the periodic log of one run (neither on non-leader peers).
pub(crate) enum StepProgress {
    /// Drawn on a terminal.
    Bar(ProgressBar),
    /// Logged when no bar is drawn.
    Log(ProgressLog),
    /// Nothing (non-leader peers).
    Quiet,
}

impl StepProgress {
    /// Positioned at step `start` of `total`. `bar` asks for the bar (the CLI's default; off
    /// with `--no-progress`); `leader` is false on the other data-parallel peers.
    pub(crate) fn new(bar: bool, leader: bool, total: u64, start: u64) -> Self {
        if !leader {
            return StepProgress::Quiet;
        }
        if !bar || !stderr_is_terminal() {
            return StepProgress::Log(ProgressLog::new(total, start));
        }
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps ({eta}) {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_position(start);
        StepProgress::Bar(b)
    }

    /// Step `step` is done; `summary` (e.g. `loss 2.1 lr 1e-4 812 tok/s`) describes it.
    pub(crate) fn step(&mut self, step: u64, summary: impl FnOnce() -> String) {
        match self {
            StepProgress::Bar(b) => {
                b.set_position(step);
                b.set_message(summary());
            }
            StepProgress::Log(log) => {
                if let Some(t) = log.update(step) {
                    tracing::info!("step {}, {}, ETA {}", t.position(), summary(), t.eta_text());
                }
            }
            StepProgress::Quiet => {}
        }
    }

    /// Leaves the bar's final state on screen.
    pub(crate) fn finish(&self) {
        if let StepProgress::Bar(b) = self {
            b.finish();
        }
    }
}
