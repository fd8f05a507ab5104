//! `distill eval grade --pairs FILE.jsonl [--out FILE.jsonl]`: grade (gold, pred) pairs.
//!
//! Each input line is a JSON object with `gold` and `pred` (a full response or a bare answer;
//! other fields are ignored). Each output line, in input order, holds `verdict`, `correct` and
//! `extracted`. Blank input lines are skipped. Output goes to stdout, or atomically to `--out`.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Arguments of `distill eval grade`.
#[derive(clap::Args, Debug)]
pub struct GradeArgs {
    /// JSONL input; every line an object with `gold` and `pred` (strings or numbers).
    #[arg(long, value_name = "FILE.jsonl")]
    pub pairs: PathBuf,
    /// JSONL output (written to a temporary file, then renamed); stdout when absent.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: Option<PathBuf>,
}

/// One graded output line.
#[derive(serde::Serialize)]
struct GradedLine<'a> {
    verdict: grader::Verdict,
    correct: bool,
    extracted: Option<&'a str>,
}

/// Reads a string field; JSON numbers are accepted as their decimal text (gold `42`).
fn field(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(format!("field `{key}` must be a string, found {other}")),
        None => Err(format!("missing field `{key}`")),
    }
}

/// Grades every line of `input`, writing one JSON line per pair to `out`; returns
/// (pairs, correct, unparseable gold).
fn grade_stream(
    input: impl BufRead,
    name: &Path,
    out: &mut impl Write,
) -> anyhow::Result<(usize, usize, usize)> {
    let (mut n, mut correct, mut bad_gold) = (0, 0, 0);
    for (i, line) in input.lines().enumerate() {
        let lineno = i + 1;
        let line = line.with_context(|| format!("{}:{lineno}: read failed", name.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{lineno}: not valid JSON", name.display()))?;
        let Some(obj) = value.as_object() else {
            bail!(
                "{}:{lineno}: expected a JSON object with `gold` and `pred`",
                name.display()
            );
        };
        let (gold, pred) = match (field(obj, "gold"), field(obj, "pred")) {
            (Ok(g), Ok(p)) => (g, p),
            (Err(e), _) | (_, Err(e)) => bail!("{}:{lineno}: {e}", name.display()),
        };
        let g = grader::grade(&gold, &pred);
        n += 1;
        correct += usize::from(g.verdict.is_correct());
        bad_gold += usize::from(g.verdict == grader::Verdict::UnparseableGold);
        let row = GradedLine {
            verdict: g.verdict,
            correct: g.verdict.is_correct(),
            extracted: g.extracted.as_deref(),
        };
        serde_json::to_writer(&mut *out, &row)?;
        out.write_all(b"\n")?;
    }
    Ok((n, correct, bad_gold))
}

/// Runs `distill eval grade`.
pub fn run(args: GradeArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.pairs)
        .with_context(|| format!("cannot open {}", args.pairs.display()))?;
    let input = BufReader::new(file);
    let (n, correct, bad_gold) = match &args.out {
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            let r = grade_stream(input, &args.pairs, &mut w)?;
            w.flush()?;
            r
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file_name = path.file_name().context("--out must name a file")?;
            let tmp = dir.join(format!(
                ".{}.tmp-{}",
                file_name.to_string_lossy(),
                std::process::id()
            ));
            let result = (|| {
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let mut w = BufWriter::new(f);
                let r = grade_stream(input, &args.pairs, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                anyhow::Ok(r)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?
        }
    };
    tracing::info!(pairs = n, correct, unparseable_gold = bad_gold, "graded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_in_order_and_names_bad_lines() {
        let input = "{\"gold\": \"\\\\frac12\", \"pred\": \"so \\\\boxed{0.5}\"}\n\n{\"gold\": 3, \"pred\": \"4\"}\n";
        let mut out = Vec::new();
        let (n, c, _) = grade_stream(input.as_bytes(), Path::new("p.jsonl"), &mut out).unwrap();
        assert_eq!((n, c), (2, 1));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["verdict"], "correct");
        assert_eq!(lines[0]["correct"], true);
        assert_eq!(lines[0]["extracted"], "0.5");
        assert_eq!(lines[1]["verdict"], "incorrect");

        let bad = "{\"gold\": \"1\", \"pred\": \"1\"}\n{\"gold\": \"1\"}\n";
        let err = grade_stream(bad.as_bytes(), Path::new("p.jsonl"), &mut Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("p.jsonl:2: missing field `pred`"),
            "{err:#}"
        );
        let err = grade_stream(
            "not json\n".as_bytes(),
            Path::new("q.jsonl"),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("q.jsonl:1"), "{err:#}");
    }
}
