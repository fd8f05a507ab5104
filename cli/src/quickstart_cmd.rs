//! `distill quickstart`: the whole pipeline on a synthetic task, on CPU, in minutes.
//!
//! Every stage runs through the same library entry points as its own CLI command, and each
//! stage's resolved config is written to `DIR/configs/` first, so a user can rerun any stage by
//! hand (`distill student train --config DIR/configs/teacher_train.toml`, …). Rerunning the
//! quickstart resumes: finished stages are skipped, interrupted ones continue.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::backend::flex::FlexDevice;
use toml::{Table, Value};

use student::distributed::DeviceSpec;

use crate::backend::Cpu;

/// The default config, also compiled in so the command works from any directory.
const DEFAULT_CONFIG: &str = include_str!("../../configs/quickstart.toml");

/// Arguments of `distill quickstart`.
#[derive(clap::Args, Debug)]
pub struct QuickstartArgs {
    /// Output directory for every stage's artifacts.
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Quickstart config (TOML). Default: configs/quickstart.toml as shipped.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set teacher.train.max_steps=200` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// Runs (or resumes) every stage and prints a summary table.
pub fn run(args: QuickstartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (text, origin) = match &args.config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_CONFIG.to_string(), "configs/quickstart.toml (built in)".to_string()),
    };
    let mut doc: Value = toml::from_str(&text).with_context(|| format!("parsing {origin}"))?;
    teacher::config::apply_overrides(&mut doc, &args.set)?;
    let q = Quickstart::new(&args.out, doc)?;
    q.validate().with_context(|| format!("quickstart config {origin}"))?;
    q.write_config("quickstart.toml", &q.doc)?;

    let mut timings = Vec::new();
    let mut stage = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let t = Instant::now();
        eprintln!("\n== quickstart: {name}");
        f().with_context(|| format!("quickstart stage '{name}'"))?;
        timings.push((name.to_string(), t.elapsed().as_secs_f64()));
        Ok(())
    };
    stage("1/8 synthetic task + tokenizer", &mut || q.data())?;
    stage("2/8 train teacher (Llama, from scratch)", &mut || {
        q.train("teacher", &q.data_dir().join("train_gold.jsonl"))
    })?;
    stage("3/8 sample teacher traces", &mut || q.sample())?;
    stage("4/8 filter traces", &mut || q.filter())?;
    stage("5/8 train student (Qwen2, SFT on filtered traces)", &mut || {
        q.train("student", &q.out.join("filtered").join("messages.parquet"))
    })?;
    stage("6/8 GRPO on the SFT student (grader reward, native rollouts)", &mut || q.grpo())?;
    stage("7/8 evaluate teacher, SFT student and GRPO student", &mut || {
        q.evaluate("teacher", "teacher", "teacher")?;
        q.evaluate("student", "student", "student")?;
        q.evaluate("student-grpo", "student", "grpo")
    })?;
    let mut report = None;
    stage("8/8 compare", &mut || {
        report = Some(q.compare()?);
        Ok(())
    })?;
    let report = report.expect("compare stage ran");
    print_summary(&q.out, &report, &timings, started.elapsed().as_secs_f64());
    Ok(())
}

/// The resolved quickstart config and the output directory.
struct Quickstart {
    out: PathBuf,
    doc: Value,
    seed: i64,
}

impl Quickstart {
    fn new(out: &Path, doc: Value) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out.join("configs"))
            .with_context(|| format!("creating {}", out.display()))?;
        let seed = doc.get("seed").and_then(Value::as_integer).unwrap_or(0);
        Ok(Quickstart { out: out.to_path_buf(), doc, seed })
    }

    fn data_dir(&self) -> PathBuf {
        self.out.join("data")
    }

    fn tokenizer_dir(&self) -> PathBuf {
        self.out.join("tokenizer")
    }

    /// A top-level table of the quickstart config (empty when absent).
    fn section(&self, name: &str) -> Table {
        self.doc.get(name).and_then(Value::as_table).cloned().unwrap_or_default()
    }

    /// Writes a stage config into `DIR/configs/` and returns its path.
    fn write_config(&self, name: &str, value: &Value) -> anyhow::Result<PathBuf> {
        let path = self.out.join("configs").join(name);
        let text = format!(
            "# Written by `distill quickstart --out {}`; the exact config this stage ran with.\n{}",
            self.out.display(),
            toml::to_string_pretty(value)?
        );
        datasets::atomic::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Stage 1: synthetic splits and the tokenizer trained on them.
    fn data(&self) -> anyhow::Result<()> {
        let mut task = self.section("task");
        task.insert("seed".into(), Value::Integer(self.seed));
        let cfg: datasets::synthetic::SyntheticConfig =
            Value::Table(task).try_into().context("[task]")?;
        let splits = datasets::synthetic::generate(&cfg)?;
        std::fs::create_dir_all(self.data_dir())?;
        let files = splits.write(&self.data_dir())?;
        eprintln!(
            "   {} train / {} test problems -> {}",
            splits.train.len(),
            splits.test.len(),
            files.train_problems.parent().unwrap_or(Path::new(".")).display()
        );
        if self.tokenizer_dir().join("tokenizer.json").exists() {
            eprintln!("   tokenizer exists, reusing {}", self.tokenizer_dir().display());
            return Ok(());
        }
        let tcfg: datasets::synthetic::TokenizerTrainConfig =
            Value::Table(self.section("tokenizer")).try_into().context("[tokenizer]")?;
        let tok = datasets::synthetic::train_tokenizer(
            &splits.tokenizer_corpus(),
            &tcfg,
            &self.tokenizer_dir(),
        )?;
        eprintln!("   tokenizer: {} tokens -> {}", tok.vocab_size(), self.tokenizer_dir().display());
        Ok(())
    }

    /// Checks the whole config before any stage runs: no unknown keys (at the top level and in
    /// the quickstart's own `[sample]`/`[eval]` tables), and every stage's config parses and
    /// validates — so a typo fails in a second, not after an hour of training.
    fn validate(&self) -> anyhow::Result<()> {
        const TOP: &[&str] = &["seed", "task", "tokenizer", "teacher", "sample", "filter", "student", "grpo", "eval"];
        const SAMPLE: &[&str] = &["samples", "max_problems", "temperature", "top_p", "max_tokens", "concurrency", "max_seq_len"];
        const EVAL: &[&str] = &["samples", "temperature", "top_p", "max_tokens", "concurrency", "max_seq_len"];
        let top = self.doc.as_table().context("expected a TOML table")?;
        check_keys("", top, TOP)?;
        check_keys("sample.", &self.section("sample"), SAMPLE)?;
        check_keys("eval.", &self.section("eval"), EVAL)?;
        check_sampling_values("sample", &self.section("sample"))?;
        check_sampling_values("eval", &self.section("eval"))?;
        let mut task = self.section("task");
        task.insert("seed".into(), Value::Integer(self.seed));
        let _: datasets::synthetic::SyntheticConfig = Value::Table(task).try_into().context("[task]")?;
        let _: datasets::synthetic::TokenizerTrainConfig =
            Value::Table(self.section("tokenizer")).try_into().context("[tokenizer]")?;
        for role in ["teacher", "student"] {
            // Placeholder token ids: the real ones come from the tokenizer stage 1 trains.
            let t = self.train_table(role, Path::new("train.jsonl"), 256, None, &[1]);
            let text = toml::to_string(&Value::Table(t))?;
            let cfg = student::TrainConfig::from_toml_str(&text, &[], &format!("[{role}]"), None)?;
            cpu_peers(&format!("{role}.train.devices"), &cfg.train.devices)?;
        }
        let text = toml::to_string(&Value::Table(self.grpo_table()))?;
        let cfg = student::GrpoConfig::from_toml_str(&text, &[], "[grpo]", None)?;
        cpu_peers("grpo.train.devices", &cfg.train.devices)?;
        let filter: datasets::filter::FilterConfig =
            Value::Table(self.section("filter")).try_into().context("[filter]")?;
        filter.validate().context("[filter]")?;
        for (section, keys) in [("sample", SAMPLE), ("eval", EVAL)] {
            let t = self.section(section);
            if let Some(k) = keys.iter().find(|k| **k != "max_problems" && !t.contains_key(**k)) {
                bail!("[{section}] needs '{k}'");
            }
        }
        Ok(())
    }

    /// The student-trainer config of `role` ("teacher" or "student") training on `train_file`.
    fn train_table(&self, role: &str, train_file: &Path, vocab: usize, bos: Option<u32>, eos: &[u32]) -> Table {
        let mut t = self.section(role);
        let model = table_mut(&mut t, "model");
        model.insert("tokenizer".into(), path_value(&self.tokenizer_dir()));
        let arch = table_mut(model, "arch");
        arch.insert("vocab_size".into(), Value::Integer(vocab as i64));
        if let Some(bos) = bos {
            arch.insert("bos_token_id".into(), Value::Integer(bos.into()));
        }
        let eos: Vec<Value> = eos.iter().map(|&e| Value::Integer(e.into())).collect();
        arch.insert("eos_token_id".into(), Value::Array(eos));
        table_mut(&mut t, "data").insert("train".into(), path_value(train_file));
        table_mut(&mut t, "train").insert("seed".into(), Value::Integer(self.seed));
        table_mut(&mut t, "output").insert("dir".into(), path_value(&self.out.join(role)));
        t
    }

    /// Stages 2 and 5: train `role` ("teacher" or "student") from scratch on `train_file`.
    fn train(&self, role: &str, train_file: &Path) -> anyhow::Result<()> {
        let tok = datasets::TextTokenizer::from_dir(&self.tokenizer_dir())?;
        let t = self.train_table(role, train_file, tok.vocab_size(), tok.bos_token_id(), tok.eos_token_ids());
        let out_dir = self.out.join(role);
        let path = self.write_config(&format!("{role}_train.toml"), &Value::Table(t))?;
        if out_dir.join("final").join("config.json").exists() {
            eprintln!("   {role} already trained: {}", out_dir.join("final").display());
            return Ok(());
        }
        let cfg = student::TrainConfig::load(&path, &[])?;
        let opts = student::RunOptions { resume: true, progress: true, bf16_supported: false, ..Default::default() };
        let peers = vec![DeviceSpec::Cpu; cpu_peers(&format!("{role}.train.devices"), &cfg.train.devices)?];
        let summary = crate::student_cmd::train_peers(&cfg, &peers, &opts, &Default::default())?;
        eprintln!(
            "   {role}: {} steps, last loss {:.4} -> {}",
            summary.steps,
            summary.last_loss.unwrap_or(f64::NAN),
            summary.final_dir.display()
        );
        Ok(())
    }

    /// The `distill student grpo` config of stage 6: the quickstart's `[grpo]` with the SFT
    /// student as the policy, the training problems as prompts and the held-out split for
    /// `eval_pass1`.
    fn grpo_table(&self) -> Table {
        let mut t = self.section("grpo");
        let model = table_mut(&mut t, "model");
        model.insert("path".into(), path_value(&self.out.join("student").join("final")));
        let rollouts = table_mut(&mut t, "rollouts");
        rollouts.insert("problems".into(), path_value(&self.data_dir().join("train.jsonl")));
        rollouts.insert("source".into(), Value::String("native".into()));
        table_mut(&mut t, "eval").insert("problems".into(), path_value(&self.data_dir().join("test.jsonl")));
        table_mut(&mut t, "train").insert("seed".into(), Value::Integer(self.seed));
        table_mut(&mut t, "output").insert("dir".into(), path_value(&self.out.join("grpo")));
        t
    }

    /// Stage 6: GRPO from the SFT student on the training problems, rewarded by the grader.
    fn grpo(&self) -> anyhow::Result<()> {
        let path = self.write_config("grpo.toml", &Value::Table(self.grpo_table()))?;
        let out_dir = self.out.join("grpo");
        if out_dir.join("final").join("config.json").exists() {
            eprintln!("   GRPO student already trained: {}", out_dir.join("final").display());
            return Ok(());
        }
        let cfg = student::GrpoConfig::load(&path, &[])?;
        let opts = student::RunOptions { resume: true, progress: true, bf16_supported: false, ..Default::default() };
        let peers = vec![DeviceSpec::Cpu; cpu_peers("grpo.train.devices", &cfg.train.devices)?];
        let summary = crate::student_cmd::grpo_peers(&cfg, &peers, &opts)?;
        eprintln!(
            "   GRPO: {} steps, last reward {:.3}, held-out pass@1 {} -> {}",
            summary.steps,
            summary.last_reward.unwrap_or(f64::NAN),
            summary.last_eval_pass1.map_or("–".to_string(), |p| format!("{p:.3}")),
            summary.final_dir.display()
        );
        Ok(())
    }

    /// Stage 3: k verified samples per training problem from the teacher, native engine.
    fn sample(&self) -> anyhow::Result<()> {
        let s = self.section("sample");
        let get = |k: &str| s.get(k).cloned().with_context(|| format!("[sample] needs '{k}'"));
        let concurrency = get("concurrency")?;
        let mut sampling = Table::new();
        for k in ["samples", "temperature", "top_p", "max_tokens"] {
            sampling.insert(k.into(), get(k)?);
        }
        sampling.insert("seed".into(), Value::Integer(self.seed));
        let mut run = Table::new();
        run.insert("concurrency".into(), concurrency.clone());
        if let Some(m) = s.get("max_problems") {
            run.insert("max_problems".into(), m.clone());
        }
        let mut native = Table::new();
        native.insert("model_dir".into(), path_value(&self.out.join("teacher").join("final")));
        native.insert("max_batch".into(), concurrency);
        native.insert("max_seq_len".into(), get("max_seq_len")?);
        native.insert("name".into(), Value::String("quickstart-teacher".into()));
        let mut t = Table::new();
        t.insert("backend".into(), Value::String("native".into()));
        t.insert("problems".into(), path_value(&self.data_dir().join("train.jsonl")));
        t.insert("out_dir".into(), path_value(&self.out.join("traces")));
        t.insert("sampling".into(), Value::Table(sampling));
        t.insert("run".into(), Value::Table(run));
        t.insert("native".into(), Value::Table(native));
        let path = self.write_config("teacher_sample.toml", &Value::Table(t))?;
        let cfg = teacher::config::TeacherConfig::load(&path, &[])?;
        let dir = cfg.native.model_dir.clone().context("native.model_dir")?;
        let engine = models::EngineConfig {
            max_batch: cfg.native.max_batch,
            max_seq_len: cfg.native.max_seq_len,
            ..Default::default()
        };
        let model = inference::native::NativeModel::load::<Cpu>(
            &dir,
            FlexDevice,
            burn::tensor::DType::F32,
            engine,
            Some(cfg.teacher_name()),
        )?;
        let backend = std::sync::Arc::new(inference::native::NativeBackend::new(model));
        let rt = tokio::runtime::Runtime::new()?;
        let report = rt.block_on(teacher::sampler::run_sampling(&cfg, backend, async {
            let _ = tokio::signal::ctrl_c().await;
        }))?;
        eprintln!("   {report}");
        Ok(())
    }

    /// Stage 4: keep verified, complete, unique traces not contaminated by the test split.
    fn filter(&self) -> anyhow::Result<()> {
        let mut f = self.section("filter");
        let decontam = table_mut(&mut f, "decontam");
        decontam.insert(
            "files".into(),
            Value::Array(vec![path_value(&self.data_dir().join("test.jsonl"))]),
        );
        let path = self.write_config("filter.toml", &Value::Table(f.clone()))?;
        let cfg: datasets::filter::FilterConfig = Value::Table(f)
            .try_into()
            .with_context(|| format!("{}", path.display()))?;
        let report = datasets::filter::run_filter(
            &self.out.join("traces"),
            &self.out.join("filtered"),
            &cfg,
        )?;
        eprintln!(
            "   kept {} of {} samples ({} problems); dropped: {} incorrect, {} truncated, {} duplicate, {} contaminated",
            report.kept,
            report.input_rows,
            report.kept_problems,
            report.dropped_incorrect,
            report.dropped_truncated,
            report.dropped_duplicate + report.dropped_near_duplicate,
            report.dropped_contaminated
        );
        if report.kept == 0 {
            bail!("the filter kept no trace: the teacher solved nothing (train it longer: --set teacher.train.max_steps=…)");
        }
        Ok(())
    }

    /// Stage 7: the R1 protocol (k samples, temperature, top-p) on the held-out split, for the
    /// model trained in `DIR/<dir>/final`, reported as `name` with `role`.
    fn evaluate(&self, name: &str, role: &str, dir: &str) -> anyhow::Result<()> {
        let e = self.section("eval");
        let get = |k: &str| e.get(k).cloned().with_context(|| format!("[eval] needs '{k}'"));
        let mut model = Table::new();
        model.insert("name".into(), Value::String(name.into()));
        model.insert("role".into(), Value::String(role.into()));
        model.insert("backend".into(), Value::String("native".into()));
        model.insert("checkpoint".into(), path_value(&self.out.join(dir).join("final")));
        model.insert("concurrency".into(), get("concurrency")?);
        let mut native = Table::new();
        native.insert("max_seq_len".into(), get("max_seq_len")?);
        model.insert("native".into(), Value::Table(native));
        let mut protocol = Table::new();
        for k in ["temperature", "top_p", "max_tokens"] {
            protocol.insert(k.into(), get(k)?);
        }
        protocol.insert("seed".into(), Value::Integer(self.seed));
        let mut bench = Table::new();
        bench.insert("name".into(), Value::String("synthetic-test".into()));
        bench.insert("path".into(), path_value(&self.data_dir().join("test.jsonl")));
        bench.insert("samples".into(), get("samples")?);
        let mut t = Table::new();
        t.insert("out_dir".into(), path_value(&self.out.join("eval").join(name)));
        t.insert("model".into(), Value::Table(model));
        t.insert("protocol".into(), Value::Table(protocol));
        t.insert("benchmarks".into(), Value::Array(vec![Value::Table(bench)]));
        let path = self.write_config(&format!("eval_{name}.toml"), &Value::Table(t))?;
        let cfg = eval::EvalConfig::load(&path, &[])?;
        let backend = eval::backends::build_backend::<Cpu>(FlexDevice, &cfg)?;
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(eval::run_eval(&cfg, backend))?;
        Ok(())
    }

    /// Stage 8: report.md, report.json and the plots in DIR; then each model's training
    /// `stage` (`sft` / `grpo`; the teacher has none) and the GRPO reward-over-steps plot.
    fn compare(&self) -> anyhow::Result<eval::compare::CompareReport> {
        let names = ["teacher", "student", "student-grpo"];
        let runs: Vec<PathBuf> = names.iter().map(|n| self.out.join("eval").join(n)).collect();
        let opts = eval::CompareOptions { out_dir: self.out.clone(), teacher: Some("teacher".into()) };
        let mut report = eval::compare_runs(&runs, &opts)?;
        crate::quickstart_report::add_grpo(&self.out, &self.out.join("grpo"), &mut report, &[("student", "sft"), ("student-grpo", "grpo")])?;
        Ok(report)
    }
}

/// Fails on a key of `t` not in `known`, naming it with its `prefix`.
/// Range checks of the quickstart's own `[sample]`/`[eval]` values (the stages' configs check
/// their own): run before stage 1, so a bad value fails in a second, not after training.
/// The number of CPU peers a quickstart stage trains with: `train.devices` lists "cpu" once
/// per peer (the quickstart runs on the CPU backend only); an empty list is one.
fn cpu_peers(key: &str, devices: &[String]) -> anyhow::Result<usize> {
    let specs = student::distributed::parse_devices(devices).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    if specs.iter().any(|d| *d != DeviceSpec::Cpu) {
        bail!("{key}: the quickstart runs on the CPU backend; list \"cpu\" once per peer");
    }
    Ok(specs.len().max(1))
}

fn check_sampling_values(section: &str, t: &Table) -> anyhow::Result<()> {
    for (k, v) in t {
        let number = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        let problem = match k.as_str() {
            "samples" | "max_problems" | "max_tokens" | "concurrency" | "max_seq_len" => match v.as_integer() {
                Some(n) if n >= 1 => None,
                _ => Some("must be a whole number ≥ 1"),
            },
            "temperature" => (!number.is_some_and(|x| x.is_finite() && x >= 0.0)).then_some("must be a number ≥ 0"),
            "top_p" => (!number.is_some_and(|x| x > 0.0 && x <= 1.0)).then_some("must be in (0, 1]"),
            _ => None,
        };
        if let Some(why) = problem {
            bail!("[{section}] {k} = {v} {why}");
        }
    }
    Ok(())
}

fn check_keys(prefix: &str, t: &Table, known: &[&str]) -> anyhow::Result<()> {
    match t.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => bail!("unknown key `{prefix}{k}` (known: {})", known.join(", ")),
        None => Ok(()),
    }
}

/// The sub-table `key` of `t`, created when absent.
fn table_mut<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    let v = t.entry(key.to_string()).or_insert_with(|| Value::Table(Table::new()));
    if !v.is_table() {
        *v = Value::Table(Table::new());
    }
    v.as_table_mut().expect("just made a table")
}

fn path_value(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

/// The final table: what each model scored, how long each stage took, where things are.
fn print_summary(out: &Path, report: &eval::compare::CompareReport, timings: &[(String, f64)], total: f64) {
    println!("\nquickstart finished in {:.1} min — artifacts in {}", total / 60.0, out.display());
    println!("\n| model | role | stage | pass@1 | 95% CI | cons@k | k | problems | mean tokens |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for m in &report.models {
        for (bench, b) in &m.benchmarks {
            println!(
                "| {} ({bench}) | {} | {} | {:.3} | [{:.3}, {:.3}] | {:.3} | {} | {} | {:.1} |",
                m.name,
                m.role.as_str(),
                m.stage.as_deref().unwrap_or("–"),
                b.pass_at_1,
                b.pass_at_1_ci95[0],
                b.pass_at_1_ci95[1],
                b.cons_at_k,
                b.k,
                b.n_problems,
                b.mean_response_tokens
            );
        }
    }
    println!("\n| stage | seconds |");
    println!("|---|---|");
    for (name, secs) in timings {
        println!("| {name} | {secs:.1} |");
    }
    println!("\nreport: {}", out.join("report.md").display());
}
