//! Progress of long stages (training steps, teacher samples, eval samples) when no progress bar
//! is drawn: stderr is not a terminal (batch jobs, `2> log`, CI) or the bar is turned off. A bar
//! alone would leave such logs with only a start and an end line for hours; instead each stage
//! logs a line through `tracing` every [`ProgressEvery`] (30 s by default, `distill
//! --progress-every` changes it) with done/total, rate and ETA.
//!
//! Rates and ETAs count only this invocation's items, so a resumed run does not credit the
//! work of the run before it.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a stage without a progress bar logs a progress line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProgressEvery {
    /// At most one line per this much time (the default: 30 s).
    Time(Duration),
    /// One line every this many steps or samples.
    Items(u64),
}

impl Default for ProgressEvery {
    fn default() -> Self {
        ProgressEvery::Time(Duration::from_secs(30))
    }
}

impl FromStr for ProgressEvery {
    type Err = String;

    /// `30s` / `2.5s` (a time interval) or `100` (every 100 steps or samples).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "`{s}`: expected seconds such as `30s` or a count of steps/samples such as `100`"
            )
        };
        if let Some(secs) = s.strip_suffix('s') {
            let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
            if !(secs.is_finite() && secs >= 0.0) {
                return Err(bad());
            }
            return Ok(ProgressEvery::Time(Duration::from_secs_f64(secs)));
        }
        match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(ProgressEvery::Items(n)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ProgressEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgressEvery::Time(d) => write!(f, "{}s", d.as_secs_f64()),
            ProgressEvery::Items(n) => write!(f, "{n}"),
        }
    }
}

static EVERY: Mutex<ProgressEvery> = Mutex::new(ProgressEvery::Time(Duration::from_secs(30)));

/// Sets the process-wide interval (the CLI's `--progress-every`).
pub fn set_progress_every(every: ProgressEvery) {
    *EVERY.lock().unwrap_or_else(|e| e.into_inner()) = every;
}

/// The process-wide interval (default 30 s).
pub fn progress_every() -> ProgressEvery {
    *EVERY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a progress bar would be seen: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Where a stage stands when a progress line is due.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressTick {
    /// Items done, earlier invocations included.
    pub done: u64,
    /// Items in the whole stage.
    pub total: u64,
    /// Items per second in this invocation.
    pub rate: f64,
    /// Time left at `rate` (`None` before the first item).
    pub eta: Option<Duration>,
}

impl ProgressTick {
    /// `12/40 (30%)`.
    pub fn position(&self) -> String {
        format!(
            "{}/{} ({:.0}%)",
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64
        )
    }

    /// The ETA as `1h02m`, `4m05s`, `12s` (`?` when unknown).
    pub fn eta_text(&self) -> String {
        self.eta.map_or_else(|| "?".into(), format_duration)
    }
}

/// `1h02m`, `4m05s` or `12s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// Decides when a progress line is due and computes the rate and ETA for it.
#[derive(Debug)]
pub struct ProgressLog {
    every: ProgressEvery,
    start: Instant,
    last_line: Instant,
    first: u64,
    last_logged: u64,
    total: u64,
}

impl ProgressLog {
    /// A log at `done` of `total` with the process-wide interval.
    pub fn new(total: u64, done: u64) -> Self {
        Self::with_every(progress_every(), total, done)
    }

    /// A log at `done` of `total` logging every `every`.
    pub fn with_every(every: ProgressEvery, total: u64, done: u64) -> Self {
        let now = Instant::now();
        ProgressLog {
            every,
            start: now,
            last_line: now,
            first: done,
            last_logged: done,
            total,
        }
    }

    /// Moves to `done`; returns the tick when a line is due (an interval passed, or the stage
    /// just finished).
    pub fn update(&mut self, done: u64) -> Option<ProgressTick> {
        if done <= self.last_logged {
            return None;
        }
        let due = match self.every {
            ProgressEvery::Time(d) => self.last_line.elapsed() >= d,
            ProgressEvery::Items(n) => done - self.last_logged >= n,
        };
        if !due && done < self.total {
            return None;
        }
        self.last_line = Instant::now();
        self.last_logged = done;
        Some(self.tick(done))
    }

    fn tick(&self, done: u64) -> ProgressTick {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = done.saturating_sub(self.first) as f64 / secs;
        let left = self.total.saturating_sub(done) as f64;
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left / rate));
        ProgressTick {
            done,
            total: self.total,
            rate,
            eta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_time_or_counts() {
        assert_eq!(
            "30s".parse(),
            Ok(ProgressEvery::Time(Duration::from_secs(30)))
        );
        assert_eq!(
            "0.5s".parse(),
            Ok(ProgressEvery::Time(Duration::from_millis(500)))
        );
        assert_eq!("100".parse(), Ok(ProgressEvery::Items(100)));
        for bad in ["0", "-1s", "s", "ten", ""] {
            assert!(bad.parse::<ProgressEvery>().is_err(), "{bad}");
        }
        assert_eq!(ProgressEvery::default().to_string(), "30s");
    }

    #[test]
    fn every_n_items_logs_on_multiples_and_at_the_end() {
        let mut log = ProgressLog::with_every(ProgressEvery::Items(3), 10, 2);
        let due: Vec<u64> = (3..=10)
            .filter_map(|d| log.update(d))
            .map(|t| t.done)
            .collect();
        assert_eq!(
            due,
            vec![5, 8, 10],
            "every 3 from the resumed position, then the last"
        );
        assert!(log.update(10).is_none(), "nothing new, no line");
    }

    #[test]
    fn a_long_interval_logs_only_the_end_with_rate_and_eta() {
        let mut log = ProgressLog::with_every(ProgressEvery::Time(Duration::from_secs(3600)), 4, 0);
        assert!(log.update(1).is_none());
        let mut fast = ProgressLog::with_every(ProgressEvery::Time(Duration::ZERO), 4, 0);
        std::thread::sleep(Duration::from_millis(5));
        let t = fast.update(1).unwrap();
        assert!(t.rate > 0.0 && t.eta.is_some(), "{t:?}");
        assert_eq!(t.position(), "1/4 (25%)");
        assert_eq!(log.update(4).unwrap().eta, Some(Duration::ZERO));
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_duration(Duration::from_secs(12)), "12s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(3725)), "1h02m");
    }
}
