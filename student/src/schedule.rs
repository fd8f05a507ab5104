//! Learning-rate schedules, computed in f64 by us (Burn's schedulers restart cosine and cannot
//! chain warmup). The formulas are transformers' `get_{constant,linear,cosine}_schedule_with_warmup`
//! (cosine with `min_lr_rate`), so an LR curve can be compared with an HF Trainer run point for
//! point: optimizer step `s` (1-based) uses the factor of HF's `current_step = s - 1`, which
//! makes the first warmup step's LR 0 exactly as in transformers.

use crate::config::{ScheduleKind, ScheduleSection};

/// A resolved schedule: the kind plus absolute step counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Shape after warmup.
    pub kind: ScheduleKind,
    /// Peak learning rate.
    pub peak_lr: f64,
    /// Warmup length in optimizer steps.
    pub warmup_steps: u64,
    /// Total optimizer steps of the run.
    pub total_steps: u64,
    /// Final LR / peak LR for linear and cosine decay.
    pub min_lr_ratio: f64,
}

impl LrSchedule {
    /// Resolves `[schedule]` against the run length (`warmup_ratio` applies when
    /// `warmup_steps` is 0, rounded up like HF's `get_warmup_steps`).
    pub fn new(section: &ScheduleSection, peak_lr: f64, total_steps: u64) -> Self {
        let warmup_steps = if section.warmup_steps > 0 {
            section.warmup_steps
        } else {
            (section.warmup_ratio * total_steps as f64).ceil() as u64
        };
        Self {
            kind: section.kind,
            peak_lr,
            warmup_steps,
            total_steps,
            min_lr_ratio: section.min_lr_ratio,
        }
    }

    /// The learning rate of optimizer step `step` (1-based).
    pub fn lr(&self, step: u64) -> f64 {
        self.peak_lr * self.factor(step.saturating_sub(1))
    }

    fn factor(&self, cur: u64) -> f64 {
        let (w, n) = (self.warmup_steps, self.total_steps);
        if cur < w {
            return cur as f64 / w.max(1) as f64;
        }
        let m = self.min_lr_ratio;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => {
                let f = (n.saturating_sub(cur)) as f64 / (n.saturating_sub(w)).max(1) as f64;
                m + (1.0 - m) * f.max(0.0)
            }
            ScheduleKind::Cosine => {
                let progress = (cur - w) as f64 / (n.saturating_sub(w)).max(1) as f64;
                let f = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
                m + (1.0 - m) * f.max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind, warmup: u64, total: u64, min: f64) -> LrSchedule {
        LrSchedule::new(
            &ScheduleSection {
                kind,
                warmup_steps: warmup,
                warmup_ratio: 0.0,
                min_lr_ratio: min,
            },
            1e-3,
            total,
        )
    }

    #[test]
    fn warmup_then_cosine_matches_transformers() {
        let s = sched(ScheduleKind::Cosine, 10, 110, 0.0);
        assert_eq!(s.lr(1), 0.0); // HF: current_step 0 → factor 0
        assert!((s.lr(6) - 0.5e-3).abs() < 1e-15);
        assert!((s.lr(11) - 1e-3).abs() < 1e-15);
        // halfway through the decay: cos(pi/2) → 0.5
        assert!((s.lr(61) - 0.5e-3).abs() < 1e-12);
        assert!(s.lr(110) > 0.0 && s.lr(110) < 1e-6);
        let m = sched(ScheduleKind::Cosine, 0, 100, 0.1);
        assert!((m.lr(1) - 1e-3).abs() < 1e-15);
        assert!((m.lr(101) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn linear_and_constant() {
        let l = sched(ScheduleKind::Linear, 0, 100, 0.0);
        assert!((l.lr(51) - 0.5e-3).abs() < 1e-15);
        let c = sched(ScheduleKind::Constant, 4, 100, 0.0);
        assert!((c.lr(3) - 0.5e-3).abs() < 1e-15);
        assert_eq!(c.lr(77), 1e-3);
    }

    #[test]
    fn warmup_ratio_rounds_up() {
        let s = LrSchedule::new(
            &ScheduleSection {
                kind: ScheduleKind::Cosine,
                warmup_steps: 0,
                warmup_ratio: 0.05,
                min_lr_ratio: 0.0,
            },
            1.0,
            101,
        );
        assert_eq!(s.warmup_steps, 6);
    }
}
