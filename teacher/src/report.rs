//! How a finished sampling invocation is summarised for a person (the one-line result the CLI
//! and the quickstart print), rather than the struct's `Debug` dump.

use std::fmt;

use crate::sampler::RunReport;

impl fmt::Display for RunReport {
    /// `DIR: 30/32 rows (12 new in 4.1s), correct 25 (83.3%), truncated 1, failed 0`, then
    /// `, N unfinished` / `, interrupted` when they apply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "{}: {}/{} rows ({} new in {:.1}s), correct {} ({:.1}%), truncated {}, failed {}",
            self.out_dir.display(),
            c.rows,
            c.expected_rows,
            self.new_rows,
            self.elapsed_s,
            c.correct,
            100.0 * c.correct as f64 / c.rows.max(1) as f64,
            c.truncated,
            c.failed
        )?;
        if c.unfinished > 0 {
            write!(f, ", {} unfinished", c.unfinished)?;
        }
        if self.interrupted {
            f.write_str(", interrupted")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::RunCounts;
    use crate::RunReport;

    #[test]
    fn a_report_reads_as_one_line_of_counts() {
        let r = RunReport {
            out_dir: "runs/traces".into(),
            counts: RunCounts {
                rows: 30,
                expected_rows: 32,
                correct: 15,
                truncated: 1,
                unfinished: 2,
                ..Default::default()
            },
            interrupted: true,
            new_rows: 12,
            replaced: 0,
            first_error: None,
            elapsed_s: 4.06,
        };
        assert_eq!(
            r.to_string(),
            "runs/traces: 30/32 rows (12 new in 4.1s), correct 15 (50.0%), truncated 1, failed 0, 2 unfinished, interrupted"
        );
    }
}
