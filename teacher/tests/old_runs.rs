//! Directories written before the seed derivation was unified (64-bit teacher seeds) resume:
//! samples on disk are recognised by (problem id, sample index) and kept as they are, only the
//! missing ones are requested, with the unified 63-bit seeds.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::{config_toml, write_problems};
use datasets::records::{FinishReason, SampleRecord, Verdict};
use datasets::traces::{read_traces, write_trace_shard, TraceMessage, TraceRow};
use futures::future::BoxFuture;
use inference::{Backend, BackendError, ChatRequest, Completion};
use sha2::{Digest, Sha256};
use teacher::TeacherConfig;

/// The teacher's seed derivation before unification: 64 bits, top bit possibly set.
fn old_seed(problem_id: &str, i: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(0u64.to_le_bytes());
    h.update((problem_id.len() as u64).to_le_bytes());
    h.update(problem_id.as_bytes());
    h.update(i.to_le_bytes());
    u64::from_le_bytes(h.finalize()[..8].try_into().unwrap())
}

/// Answers every request at once and remembers the seeds it was asked with.
struct Recorder(Mutex<Vec<u64>>);

impl Backend for Recorder {
    fn model_name(&self) -> &str {
        "fault-teacher"
    }
    fn complete(&self, req: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
        self.0.lock().unwrap().push(req.seed.unwrap());
        Box::pin(async {
            Ok(Completion {
                reasoning: "r".into(),
                content: "\\boxed{42}".into(),
                completion: "r\n</think>\n\n\\boxed{42}".into(),
                finish_reason: FinishReason::Stop,
                prompt_tokens: 1,
                completion_tokens: 2,
                latency_ms: 0,
                error: None,
                thinking: None,
            })
        })
    }
}

fn old_row(problem_id: &str, i: u32) -> TraceRow {
    TraceRow {
        sample: SampleRecord {
            problem_id: problem_id.into(),
            sample_index: i,
            reference_answer: "42".into(),
            extracted_answer: None,
            verdict: Verdict::Error,
            prompt_tokens: 0,
            completion_tokens: 0,
            finish_reason: FinishReason::Error,
            seed: old_seed(problem_id, i),
            temperature: 0.6,
            top_p: 0.95,
            max_tokens: 64,
            latency_ms: 0,
            error: Some("HTTP 400: old failure".into()),
        },
        source: None,
        problem: String::new(),
        prompt: vec![TraceMessage {
            role: "user".into(),
            content: "x".into(),
        }],
        reasoning: String::new(),
        content: String::new(),
        completion: String::new(),
        teacher: "fault-teacher".into(),
        created_at: 0,
    }
}

#[test]
fn a_directory_with_old_64_bit_seeds_resumes_without_redoing_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 8, None);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Problems p0..p3 fully sampled by an old version (k = 2); at least one seed has bit 63 set.
    let old: Vec<TraceRow> = (0..4)
        .flat_map(|p| (0..2).map(move |i| old_row(&format!("p{p}"), i)))
        .collect();
    assert!(old.iter().any(|r| r.seed > i64::MAX as u64));
    write_trace_shard(&out.join("part-00000.parquet"), &old).unwrap();

    let cfg_path = dir.path().join("c.toml");
    let base = vec!["http://127.0.0.1:1/v1".to_string()];
    std::fs::write(&cfg_path, config_toml(&problems, &out, &base, 2, "")).unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt
        .block_on(teacher::run_sampling(&cfg, recorder.clone(), std::future::pending()))
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.counts);
    assert_eq!(report.new_rows, 8, "only p4..p7 were sampled");

    let rows = read_traces(&out).unwrap();
    assert_eq!(rows.len(), 16);
    let mut asked: Vec<u64> = recorder.0.lock().unwrap().clone();
    asked.sort();
    let mut expected: Vec<u64> = (4..8)
        .flat_map(|p| (0..2).map(move |i| teacher::sampler::trace_seed(0, &format!("p{p}"), i)))
        .collect();
    expected.sort();
    assert_eq!(asked, expected);
    let ids: HashSet<_> = rows.iter().map(|r| (r.problem_id.clone(), r.sample_index)).collect();
    assert_eq!(ids.len(), 16, "no sample duplicated");
    for r in rows.iter().filter(|r| r.error.is_some()) {
        assert_eq!(r.seed, old_seed(&r.problem_id, r.sample_index), "old rows untouched");
        // The unified seed is what the HTTP client always sent for these rows.
        let sent = r.seed & (i64::MAX as u64);
        assert_eq!(sent, teacher::sampler::trace_seed(0, &r.problem_id, r.sample_index));
    }
}

/// Trace directories written before the sidecar gained its `_` (so that `pd.read_parquet` and
/// `pyarrow.dataset` read the directory) hold `manifest.json`: a resume reads it (it keeps the
/// run's creation time and is checked against the config), then leaves only `_manifest.json`.
#[test]
fn a_directory_with_the_old_manifest_name_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let problems = dir.path().join("p.jsonl");
    write_problems(&problems, 8, None);
    let out = dir.path().join("out");
    let cfg_path = dir.path().join("c.toml");
    let base = vec!["http://127.0.0.1:1/v1".to_string()];
    std::fs::write(&cfg_path, config_toml(&problems, &out, &base, 2, "")).unwrap();
    let cfg = TeacherConfig::load(&cfg_path, &[]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sample = || {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        rt.block_on(teacher::run_sampling(&cfg, recorder, std::future::pending())).unwrap()
    };
    assert_eq!(sample().new_rows, 16);
    assert!(out.join(teacher::manifest::MANIFEST_FILE).is_file());
    assert!(!out.join("manifest.json").exists());

    // Turn it into an old directory: half the samples, the manifest under its old name.
    let mut rows = read_traces(&out).unwrap();
    rows.retain(|r| ["p0", "p1", "p2", "p3"].contains(&r.problem_id.as_str()));
    for shard in datasets::traces::list_trace_shards(&out).unwrap() {
        std::fs::remove_file(shard).unwrap();
    }
    write_trace_shard(&out.join("part-00000.parquet"), &rows).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(teacher::manifest::MANIFEST_FILE)).unwrap()).unwrap();
    m["created_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::remove_file(out.join(teacher::manifest::MANIFEST_FILE)).unwrap();
    std::fs::write(out.join("manifest.json"), m.to_string()).unwrap();

    let report = sample();
    assert!(report.is_complete(), "{:?}", report.counts);
    assert_eq!(report.new_rows, 8, "only p4..p7 were sampled");
    assert_eq!(read_traces(&out).unwrap().len(), 16);
    let now = teacher::manifest::Manifest::read(&out).unwrap().unwrap();
    assert_eq!(now.created_at, "2020-01-01T00:00:00Z", "the old manifest was read");
    assert!(out.join(teacher::manifest::MANIFEST_FILE).is_file());
    assert!(!out.join("manifest.json").exists(), "one manifest, under the new name");

    // The old manifest is checked like the new one: other settings are refused.
    std::fs::rename(out.join(teacher::manifest::MANIFEST_FILE), out.join("manifest.json")).unwrap();
    let other = TeacherConfig::load(&cfg_path, &["sampling.temperature=0.9".into()]).unwrap();
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    let err = rt.block_on(teacher::run_sampling(&other, recorder, std::future::pending())).unwrap_err();
    assert!(err.to_string().contains("different settings"), "{err}");
}
