//! The run directory: a second run in a directory that holds one is refused unless resumed or
//! overwritten, a resumed checkpoint's config must match, checkpoints are published whole and
//! pruned to exactly `keep_last`, and leftovers of interrupted writes are removed at start.

mod common;

use std::path::Path;

use common::{fixture, sft_rows, tiny_config_with, write_tokens};

type AB = burn::backend::Autodiff<burn::backend::Flex>;

fn run(cfg: &student::TrainConfig, opts: student::RunOptions) -> student::Result<student::TrainSummary> {
    student::train::<AB>(cfg, &Default::default(), &opts)
}

fn opts(resume: bool, overwrite: bool, allow_config_change: bool) -> student::RunOptions {
    student::RunOptions { resume, overwrite, allow_config_change, ..Default::default() }
}

fn steps(out: &Path) -> Vec<u64> {
    student::read_metrics(out).unwrap().iter().map(|m| m.step).collect()
}

fn checkpoints(out: &Path) -> Vec<u64> {
    student::checkpoint::list_checkpoints(out).unwrap().into_iter().map(|c| c.0).collect()
}

fn hidden_entries(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn config(tmp: &Path, out: &Path, sets: &[&str]) -> student::TrainConfig {
    let train = tmp.join("t.jsonl");
    if !train.exists() {
        write_tokens(&train, &sft_rows("qwen2"));
    }
    let mut all = vec!["train.batch_size=1", "output.save_every=1"];
    all.extend_from_slice(sets);
    tiny_config_with(&fixture("qwen2"), &train, out, &all)
}

/// The scenario of the bug: a second run without `--resume` used to restart at step 0 in
/// place, overwrite metrics.jsonl, and let `keep_last` keep the OLD high-step checkpoints, so a
/// later `--resume` jumped to the old run's step.
#[test]
fn a_second_run_in_place_is_refused_and_overwrite_starts_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let first = config(tmp.path(), &out, &["train.max_steps=4", "output.keep_last=2"]);
    run(&first, opts(false, false, false)).unwrap();
    assert_eq!(checkpoints(&out), vec![2, 3], "pruning keeps exactly the newest keep_last");
    assert!(hidden_entries(&out).is_empty(), "no temporary or trash left: {:?}", hidden_entries(&out));
    assert!(out.join("checkpoint-3").join(student::checkpoint::CONFIG_FILE).is_file());

    let second = config(tmp.path(), &out, &["train.max_steps=2", "output.keep_last=2"]);
    let err = run(&second, opts(false, false, false)).expect_err("a second run in place must be refused").to_string();
    assert!(err.contains(&out.display().to_string()) && err.contains("--resume") && err.contains("--overwrite"), "{err}");
    assert_eq!(steps(&out), vec![1, 2, 3, 4], "the refused run touched nothing");
    assert_eq!(checkpoints(&out), vec![2, 3]);

    std::fs::write(out.join("notes.txt"), "not the trainer's").unwrap();
    run(&second, opts(false, true, false)).unwrap();
    assert_eq!(steps(&out), vec![1, 2]);
    assert_eq!(checkpoints(&out), vec![1], "the old run's checkpoints are gone");
    assert!(out.join("notes.txt").is_file(), "--overwrite deletes only the trainer's files");

    let resumed = run(&second, opts(true, false, false)).unwrap();
    assert_eq!(resumed.resumed_from.as_deref(), Some(out.join("checkpoint-1").as_path()));
    assert_eq!(steps(&out), vec![1, 2]);
}

#[test]
fn resuming_with_a_changed_config_is_an_error_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&config(tmp.path(), &out, &["train.max_steps=2"]), opts(false, false, false)).unwrap();
    assert_eq!(checkpoints(&out), vec![1]);

    let changed = config(tmp.path(), &out, &["train.max_steps=2", "optim.lr=2e-3"]);
    let err = run(&changed, opts(true, false, false)).expect_err("a changed lr must not resume silently").to_string();
    assert!(err.contains("optim.lr") && err.contains("--allow-config-change") && err.contains("checkpoint-1"), "{err}");
    assert_eq!(steps(&out), vec![1, 2], "the refused resume touched nothing");

    // keys that only say where and how often files are written may change
    let exempt = config(tmp.path(), &out, &["train.max_steps=2", "output.keep_last=5"]);
    let r = run(&exempt, opts(true, false, false)).unwrap();
    assert_eq!(r.resumed_from.as_deref(), Some(out.join("checkpoint-1").as_path()));

    let r = run(&changed, opts(true, false, true)).unwrap();
    assert_eq!(r.resumed_from.as_deref(), Some(out.join("checkpoint-1").as_path()));
}

#[test]
fn leftovers_of_interrupted_writes_are_removed_and_never_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = config(tmp.path(), &out, &["train.max_steps=3"]);
    run(&cfg, opts(false, false, false)).unwrap();
    assert_eq!(checkpoints(&out), vec![1, 2]);
    // a checkpoint being built (complete-looking, higher step), the model writer's own temp,
    // a victim of pruning half deleted, a final/ being built
    let leftovers = [".checkpoint-9.tmp-4242", "..checkpoint-9.tmp-4242.tmp-4242", ".trash-checkpoint-0-4242", ".final.tmp-4242"];
    for l in leftovers {
        let d = out.join(l);
        std::fs::create_dir_all(&d).unwrap();
        for f in std::fs::read_dir(out.join("checkpoint-2")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), d.join(f.file_name())).unwrap();
        }
    }
    let r = run(&cfg, opts(true, false, false)).unwrap();
    assert_eq!(r.resumed_from.as_deref(), Some(out.join("checkpoint-2").as_path()));
    assert_eq!(r.steps, 3);
    assert!(hidden_entries(&out).is_empty(), "leftovers removed: {:?}", hidden_entries(&out));
}

fn config_dtypes(dir: &Path) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    (v["dtype"].as_str().unwrap_or("<absent>").into(), v["torch_dtype"].as_str().unwrap_or("<absent>").into())
}

/// A bf16-configured source (transformers 5 writes `"dtype": "bfloat16"`) trained and saved
/// with `output.save_dtype = "f32"`: every `checkpoint-<step>/` and `final/` holds f32 tensors,
/// and its config.json must say so under both keys, or transformers loads them as bf16.
#[test]
fn f32_saves_of_a_bf16_source_say_float32_in_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("bf16-model");
    std::fs::create_dir_all(&src).unwrap();
    for e in std::fs::read_dir(fixture("qwen2")).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
    }
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["dtype"] = "bfloat16".into();
    cfg["torch_dtype"] = "bfloat16".into();
    std::fs::write(src.join("config.json"), cfg.to_string()).unwrap();

    let out = tmp.path().join("run");
    let mut c = config(tmp.path(), &out, &["train.max_steps=2", "output.keep_last=2", "output.save_dtype=\"f32\""]);
    c.model.path = Some(src.clone());
    run(&c, opts(false, false, false)).unwrap();
    let f32 = ("float32".to_string(), "float32".to_string());
    assert_eq!(checkpoints(&out), vec![1]);
    for dir in [out.join("checkpoint-1"), out.join("final")] {
        assert_eq!(config_dtypes(&dir), f32, "{}", dir.display());
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(st.tensors().iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F32), "{}", dir.display());
    }
    // Without save_dtype, final/ follows the source's bf16, and says so.
    let out = tmp.path().join("run-default");
    let mut c = config(tmp.path(), &out, &["train.max_steps=1"]);
    c.model.path = Some(src);
    run(&c, opts(false, false, false)).unwrap();
    let bf16 = ("bfloat16".to_string(), "bfloat16".to_string());
    assert_eq!(config_dtypes(&out.join("final")), bf16);
}
