//! The sampling progress bar: done/total, samples/s, tokens/s, accept rate, ETA.
//!
//! Rates count only this invocation's samples (a resumed run starts with the bar already
//! advanced, and the rates must not credit the earlier run). When the bar is hidden (disabled,
//! or stderr is not a terminal) a `tracing` line with done/total, rate and ETA is logged every
//! [`datasets::progress::ProgressEvery`] instead, so batch jobs still show progress in their logs.

use std::sync::Mutex;
use std::time::Instant;

use datasets::progress::{stderr_is_terminal, ProgressLog};
use datasets::traces::TraceRow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

struct Stats {
    samples: u64,
    tokens: u64,
    graded: u64,
    correct: u64,
    log: ProgressLog,
}

/// Progress display of one run.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
    stats: Mutex<Stats>,
}

impl Progress {
    /// A bar at `done` of `total`; drawn on stderr when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, total: usize, done: usize) -> Self {
        let target = if enabled && stderr_is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}, ETA {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(done as u64);
        bar.reset_eta();
        Progress {
            bar,
            start: Instant::now(),
            stats: Mutex::new(Stats {
                samples: 0,
                tokens: 0,
                graded: 0,
                correct: 0,
                log: ProgressLog::new(total as u64, done as u64),
            }),
        }
    }

    /// Counts one finished row.
    pub fn record(&self, row: &TraceRow) {
        let mut s = self.stats.lock().expect("progress lock");
        s.samples += 1;
        s.tokens += u64::from(row.completion_tokens);
        if row.error.is_none() {
            s.graded += 1;
            s.correct += u64::from(row.correct());
        }
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let msg = format!(
            "{:.2} samples/s, {:.0} tok/s, accept {:.1}%",
            s.samples as f64 / secs,
            s.tokens as f64 / secs,
            100.0 * s.correct as f64 / s.graded.max(1) as f64
        );
        self.bar.inc(1);
        if self.bar.is_hidden() {
            if let Some(t) = s.log.update(self.bar.position()) {
                tracing::info!("sampling {}, {msg}, ETA {}", t.position(), t.eta_text());
            }
        } else {
            self.bar.set_message(msg);
        }
    }

    /// Leaves the final state on screen.
    pub fn finish(&self) {
        self.bar.abandon();
    }
}
