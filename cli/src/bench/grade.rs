//! `distill bench grade`: grading throughput on 500 × 64 MATH-500-derived responses, next to
//! Math-Verify on the same inputs (`benches/grade_mathverify.py`), plus the agreement of the
//! two verdicts on the pairs Math-Verify graded.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

/// Arguments of `distill bench grade`.
#[derive(clap::Args, Debug)]
pub struct GradeBenchArgs {
    /// Problem file with `answer` and `solution` fields.
    #[arg(long, default_value = "eval/benchmarks/math500.jsonl")]
    pub problems: PathBuf,
    /// Responses per problem (the original solution and perturbed variants).
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// Where the generated pairs and the peer's verdicts are written.
    #[arg(long, default_value = "target/bench-grade")]
    pub work_dir: PathBuf,
    /// Pairs Math-Verify grades (it is slow; its rate is measured on this prefix). 0 = all.
    #[arg(long, default_value_t = 4000)]
    pub peer_limit: usize,
    /// Python interpreter with `math-verify` installed; the peer is skipped if it fails.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the Math-Verify run.
    #[arg(long)]
    pub no_peer: bool,
}

/// A deterministic wrong variant of an answer: bump its last digit, or append `+1`.
fn wrong_answer(ans: &str, k: usize) -> String {
    let mut chars: Vec<char> = ans.chars().collect();
    if let Some(pos) = chars.iter().rposition(char::is_ascii_digit) {
        let d = chars[pos].to_digit(10).unwrap_or(0) as usize;
        chars[pos] = char::from_digit(((d + 1 + k % 9) % 10) as u32, 10).unwrap_or('1');
        return chars.into_iter().collect();
    }
    format!("{ans}+1")
}

/// The `k`-th response for a problem: the reference solution and rewrites of it that a model
/// might produce (think blocks, unboxed answers, units, wrong answers, truncation).
fn response(solution: &str, answer: &str, k: usize) -> String {
    let half = &solution[..solution
        .char_indices()
        .nth(solution.chars().count() / 2)
        .map_or(0, |(i, _)| i)];
    match k % 8 {
        0 => solution.to_string(),
        1 => format!("<think>\n{solution}\n</think>\n\nThe final answer is $\\boxed{{{answer}}}$."),
        2 => format!(
            "<think>\n{half}\n</think>\n\nSo the answer is $\\boxed{{{}}}$.",
            wrong_answer(answer, k)
        ),
        3 => format!("{half}\n\nAnswer: ${answer}$"),
        4 => format!(
            "<think>{half}</think>\nThus $\\boxed{{{}}}$",
            answer.replace("\\frac", "\\dfrac").replace(',', ", ")
        ),
        5 => format!("{half} Therefore the result is \\boxed{{{answer} \\text{{ units}}}}."),
        6 => format!("<think>\n{half}"),
        // Minerva-style ending; boxes are dropped from the reasoning so the response has one
        // final answer.
        _ => format!(
            "{}\n\nThe final answer is ${}$. I hope it is correct.",
            half.replace("\\boxed", ""),
            wrong_answer(answer, k / 8)
        ),
    }
}

fn build_pairs(problems: &Path, samples: usize) -> anyhow::Result<Vec<(String, String)>> {
    let file = std::fs::File::open(problems)
        .with_context(|| format!("cannot open {}", problems.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not valid JSON", problems.display(), i + 1))?;
        let (Some(answer), Some(solution)) = (v["answer"].as_str(), v["solution"].as_str()) else {
            anyhow::bail!(
                "{}:{}: needs string `answer` and `solution`",
                problems.display(),
                i + 1
            );
        };
        for k in 0..samples {
            pairs.push((answer.to_string(), response(solution, answer, k)));
        }
    }
    Ok(pairs)
}

/// Runs the benchmark.
pub fn run(args: GradeBenchArgs) -> anyhow::Result<()> {
    let pairs = build_pairs(&args.problems, args.samples)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let pairs_path = args.work_dir.join("pairs.jsonl");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&pairs_path)?);
        for (gold, pred) in &pairs {
            serde_json::to_writer(&mut w, &serde_json::json!({"gold": gold, "pred": pred}))?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }

    let start = Instant::now();
    let verdicts: Vec<grader::Verdict> = pairs
        .iter()
        .map(|(g, p)| grader::grade(g, p).verdict)
        .collect();
    let secs = start.elapsed().as_secs_f64();
    let ours = pairs.len() as f64 / secs;
    let correct = verdicts.iter().filter(|v| v.is_correct()).count();
    println!(
        "distill grader : {} responses in {secs:.3} s = {ours:.0} answers/s (1 thread; {correct} correct)",
        pairs.len()
    );

    if args.no_peer {
        return Ok(());
    }
    let peer_out = args.work_dir.join("mathverify_verdicts.jsonl");
    let script = Path::new("benches/grade_mathverify.py");
    let output = std::process::Command::new(&args.python)
        .arg(script)
        .arg("--pairs")
        .arg(&pairs_path)
        .arg("--limit")
        .arg(args.peer_limit.to_string())
        .arg("--out")
        .arg(&peer_out)
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "Math-Verify    : not measured ({} failed: {})",
                script.display(),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return Ok(());
        }
        Err(e) => {
            println!(
                "Math-Verify    : not measured (cannot run {}: {e})",
                args.python
            );
            return Ok(());
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("Math-Verify script printed no JSON summary")?;
    let peer_rate = summary["answers_per_s"].as_f64().unwrap_or(f64::NAN);
    let peer_n = summary["answers"].as_u64().unwrap_or(0);
    println!("Math-Verify    : {peer_n} responses, {peer_rate:.0} answers/s (1 process)");
    println!("speed-up       : {:.0}x (target >= 100x)", ours / peer_rate);

    let file = std::fs::File::open(&peer_out)
        .with_context(|| format!("cannot open {}", peer_out.display()))?;
    // Math-Verify does not know `<think>`: on a truncated response (unclosed think block) it
    // grades whatever the reasoning contains, while the R1 protocol counts it as no answer.
    let (mut agree, mut total, mut agree_closed, mut total_closed) =
        (0usize, 0usize, 0usize, 0usize);
    for ((line, ours), (_, pred)) in std::io::BufReader::new(file)
        .lines()
        .zip(&verdicts)
        .zip(&pairs)
    {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let same = v["correct"].as_bool().unwrap_or(false) == ours.is_correct();
        total += 1;
        agree += usize::from(same);
        let truncated = pred.contains("<think>") && !pred.contains("</think>");
        if !truncated {
            total_closed += 1;
            agree_closed += usize::from(same);
        }
    }
    let pct = |a: usize, t: usize| 100.0 * a as f64 / t.max(1) as f64;
    println!(
        "agreement      : {agree}/{total} = {:.2}% of verdicts equal to Math-Verify's; {:.2}% \
         excluding truncated (unclosed <think>) responses",
        pct(agree, total),
        pct(agree_closed, total_closed)
    );
    Ok(())
}
