//! `distill data` subcommands: filter/decontaminate/export traces, and pre-tokenise SFT data.

use std::path::{Path, PathBuf};

use anyhow::Context;
use datasets::filter::{run_filter, FilterConfig, FilterReport};
use datasets::sft::{prepare_examples, write_token_file, OverflowPolicy, SftBuildConfig, TrainingFormat};

/// Arguments of `distill data`.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Keep verified, complete traces; drop length outliers, duplicates, near-duplicates and
    /// benchmark-contaminated samples; export messages (Parquet + JSONL) and OpenR1 layouts.
    Filter(FilterArgs),
    /// Render and tokenise training data with a student's tokenizer into a `format = "tokens"`
    /// Parquet file (input_ids, labels with -100 on non-assistant tokens).
    Tokenize(TokenizeArgs),
}

/// `distill data filter`.
#[derive(clap::Args, Debug)]
struct FilterArgs {
    /// Trace directory (Parquet shards from `distill teacher sample`) or one trace file.
    #[arg(long)]
    traces: PathBuf,
    /// Output directory (messages.parquet/.jsonl, openr1.parquet, filter_report.json, _manifest.json).
    #[arg(long)]
    out: PathBuf,
    /// TOML filter config (see configs/data/filter.toml); defaults apply to absent keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set length.max=16384` or `--set near_dup.enabled=false`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Also decontaminate against this problem file (JSONL/Parquet; repeatable).
    #[arg(long = "decontam-file", value_name = "FILE")]
    decontam_files: Vec<PathBuf>,
    /// Count length in tokens of this (student) tokenizer directory.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

/// `distill data tokenize`.
#[derive(clap::Args, Debug)]
struct TokenizeArgs {
    /// Training data: filter output dir, messages/trace Parquet or JSONL.
    #[arg(long)]
    input: PathBuf,
    /// Student tokenizer directory (tokenizer.json + tokenizer_config.json with chat template).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output Parquet file.
    #[arg(long)]
    out: PathBuf,
    /// Longest example in tokens.
    #[arg(long, default_value_t = 16384)]
    max_seq_len: usize,
    /// What to do with longer examples.
    #[arg(long, value_enum, default_value_t = Overflow::Drop)]
    overflow: Overflow,
    /// Token appended after each assistant turn (default: the template's end-of-turn token).
    #[arg(long)]
    eos_token: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Overflow {
    Drop,
    Truncate,
}

/// Runs one `distill data` subcommand.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Filter(a) => filter(a),
        DataCommand::Tokenize(a) => tokenize(a),
    }
}

/// Reads `path` (if any) as a TOML table and applies `KEY=VALUE` overrides (dotted keys; the value
/// is parsed as TOML, falling back to a plain string).
fn load_config_value(path: Option<&Path>, sets: &[String]) -> anyhow::Result<toml::Value> {
    let root = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            toml::from_str::<toml::Table>(&text).with_context(|| format!("{}", p.display()))?
        }
        None => toml::Table::new(),
    };
    let mut root = toml::Value::Table(root);
    datasets::overrides::apply_overrides(&mut root, sets).map_err(anyhow::Error::msg)?;
    Ok(root)
}

fn filter(a: FilterArgs) -> anyhow::Result<()> {
    let value = load_config_value(a.config.as_deref(), &a.set)?;
    let origin = a.config.as_ref().map_or("filter config".to_string(), |p| p.display().to_string());
    let mut cfg: FilterConfig = value.try_into().with_context(|| origin.clone())?;
    cfg.decontam.files.extend(a.decontam_files);
    if let Some(t) = a.tokenizer {
        cfg.length.tokenizer = Some(t);
    }
    let report = run_filter(&a.traces, &a.out, &cfg)?;
    print_report(&report, &a.out);
    Ok(())
}

fn print_report(r: &FilterReport, out: &Path) {
    let rows = [
        ("input rows", r.input_rows),
        ("dropped_error", r.dropped_error),
        ("dropped_truncated", r.dropped_truncated),
        ("dropped_incorrect", r.dropped_incorrect),
        ("dropped_length", r.dropped_length),
        ("dropped_contaminated", r.dropped_contaminated),
        ("dropped_duplicate", r.dropped_duplicate),
        ("dropped_near_duplicate", r.dropped_near_duplicate),
        ("dropped_per_problem_cap", r.dropped_per_problem_cap),
        ("kept", r.kept),
    ];
    for (name, n) in rows {
        println!("{name:<24} {n:>10}");
    }
    println!("{:<24} {:>10} of {}", "kept problems", r.kept_problems, r.input_problems);
    for (source, n) in &r.contaminated_by {
        println!("  contaminated by {source}: {n}");
    }
    println!("wrote {}", out.display());
}

fn tokenize(a: TokenizeArgs) -> anyhow::Result<()> {
    let tok = datasets::TextTokenizer::from_dir(&a.tokenizer)?;
    let cfg = SftBuildConfig {
        max_seq_len: a.max_seq_len,
        overflow: match a.overflow {
            Overflow::Drop => OverflowPolicy::Drop,
            Overflow::Truncate => OverflowPolicy::Truncate,
        },
        eos_token: a.eos_token,
        ..SftBuildConfig::default()
    };
    let (examples, stats) = prepare_examples(&a.input, TrainingFormat::Traces, Some(&tok), &cfg)?;
    write_token_file(&a.out, &examples)?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    println!("wrote {} examples to {}", examples.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_overrides_nest_and_parse_types() {
        let v = load_config_value(None, &["length.max=100".into(), "near_dup.enabled=false".into(), "verdicts=[\"correct\", \"incorrect\"]".into()]).unwrap();
        let cfg: FilterConfig = v.try_into().unwrap();
        assert_eq!(cfg.length.max, Some(100));
        assert!(!cfg.near_dup.enabled);
        assert_eq!(cfg.verdicts, [datasets::records::Verdict::Correct, datasets::records::Verdict::Incorrect]);
        let bad = load_config_value(None, &["lenght.max=1".into()]).unwrap();
        assert!(bad.try_into::<FilterConfig>().is_err());
    }

    /// The shipped config documents the defaults: it must parse and equal them.
    #[test]
    fn shipped_filter_config_lists_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/data/filter.toml");
        let cfg: FilterConfig = load_config_value(Some(&path), &[]).unwrap().try_into().unwrap();
        assert_eq!(cfg, FilterConfig::default());
    }
}
