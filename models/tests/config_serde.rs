//! The serde-derived config parsing (`models::hf_config`) against the hand parser it replaced
//! (`config_serde/legacy.rs`): every fixture and every hub quirk parses to the same values, and
//! errors name the file and the key path.

#[path = "config_serde/legacy.rs"]
mod legacy;

use std::path::{Path, PathBuf};

use models::deepseek::DeepseekV3Config;
use models::{GenerationConfig, ModelConfig, ModelError};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every parsed field except the raw JSON (identical by construction).
fn shown(c: &ModelConfig) -> String {
    format!("{:?}", ModelConfig { raw: Value::Null, ..c.clone() })
}

fn shown_gen(g: &GenerationConfig) -> String {
    format!("{:?}", GenerationConfig { raw: Value::Null, ..g.clone() })
}

const P: &str = "config.json";

/// Both parsers agree on `v`: equal values, or errors naming the same key.
fn assert_same(v: Value) {
    let new = ModelConfig::from_value(v.clone(), Path::new(P));
    let old = legacy::model_config(v.clone(), Path::new(P));
    match (&new, &old) {
        (Ok(n), Ok(o)) => assert_eq!(shown(n), shown(o), "{v}"),
        (Err(n), Err(o)) => assert_eq!(key_of(n), key_of(o), "{v}: new `{n}` vs old `{o}`"),
        _ => panic!("{v}: new {new:?} vs old {old:?}"),
    }
}

fn key_of(e: &ModelError) -> String {
    match e {
        ModelError::MissingKey { key, .. } | ModelError::BadValue { key, .. } => key.clone(),
        other => other.to_string(),
    }
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("config.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "{dirs:?}");
    dirs
}

#[test]
fn every_fixture_parses_as_the_hand_parser_did() {
    for dir in fixture_dirs() {
        let v = read(&dir.join("config.json"));
        let new = ModelConfig::from_value(v.clone(), Path::new(P)).unwrap();
        let old = legacy::model_config(v.clone(), Path::new(P)).unwrap();
        assert_eq!(shown(&new), shown(&old), "{}", dir.display());
        assert_eq!(new.raw, v);
        if new.architecture == models::Architecture::DeepseekV3 {
            let new = DeepseekV3Config::from_value(&v, Path::new(P)).unwrap();
            assert_eq!(new, legacy::deepseek_config(&v, Path::new(P)).unwrap(), "{}", dir.display());
        }
        let gpath = dir.join("generation_config.json");
        if gpath.is_file() {
            let g = read(&gpath);
            let new = GenerationConfig::from_value(g.clone(), &gpath).unwrap();
            let old = legacy::generation_config(g, &gpath).unwrap();
            assert_eq!(shown_gen(&new), shown_gen(&old), "{}", gpath.display());
        }
    }
}

fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = read(&fixtures().join(fixture).join("config.json"));
    edit(v.as_object_mut().unwrap());
    v
}

#[test]
fn hub_quirks_parse_as_the_hand_parser_did() {
    let cases = vec![
        // nulls mean absent; kv heads and head_dim default; scalar vs list eos; dtype spelling.
        edited("qwen2", |o| {
            o.insert("num_key_value_heads".into(), Value::Null);
            o.insert("eos_token_id".into(), json!([2, 5]));
            o.remove("torch_dtype");
            o.insert("dtype".into(), "bfloat16".into());
            o.insert("pad_token_id".into(), Value::Null);
        }),
        edited("llama3", |o| {
            o.insert("head_dim".into(), 8.into());
            o.insert("eos_token_id".into(), 3.into());
            o.insert("mlp_bias".into(), true.into());
            o.insert("attention_bias".into(), true.into());
            o.insert("tie_word_embeddings".into(), true.into());
        }),
        // transformers-5 rope_parameters carrying rope_theta.
        edited("llama3", |o| {
            let mut rp = o.remove("rope_scaling").unwrap();
            rp["rope_theta"] = o.remove("rope_theta").unwrap();
            o.insert("rope_parameters".into(), rp);
        }),
        // older `type` spelling, linear and yarn kinds, integral numbers where floats go.
        edited("llama3", |o| {
            o.insert("rope_scaling".into(), json!({"type": "linear", "factor": 4}));
        }),
        edited("qwen2", |o| {
            o.insert("rope_scaling".into(), json!({"type": "yarn", "factor": 4.0,
                "original_max_position_embeddings": 32768, "beta_fast": 16}));
            o.insert("rms_norm_eps".into(), 0.into());
        }),
        edited("llama3", |o| {
            o.remove("rope_theta");
            o.remove("rms_norm_eps");
            o.remove("max_position_embeddings");
            o.insert("rope_scaling".into(), json!({"rope_type": "default"}));
        }),
        // errors: the same key named.
        edited("qwen2", |o| {
            o.remove("vocab_size");
        }),
        edited("qwen2", |o| {
            o.insert("intermediate_size".into(), Value::Null);
        }),
        edited("llama3", |o| {
            o["rope_scaling"].as_object_mut().unwrap().remove("low_freq_factor");
        }),
        edited("llama3", |o| {
            o["rope_scaling"]["rope_type"] = "dynamic".into();
        }),
        edited("qwen2", |o| {
            o.insert("num_key_value_heads".into(), 3.into());
        }),
        edited("qwen2", |o| {
            o.insert("hidden_act".into(), "gelu".into());
        }),
        edited("qwen2", |o| {
            o.insert("hidden_size".into(), "64".into());
        }),
        edited("qwen2", |o| {
            o.insert("tie_word_embeddings".into(), 1.into());
        }),
    ];
    for v in cases {
        assert_same(v);
    }
    let v = edited("qwen2", |o| {
        o.insert("model_type".into(), "mamba".into());
    });
    assert!(matches!(ModelConfig::from_value(v, Path::new(P)), Err(ModelError::UnsupportedArchitecture { .. })));
}

#[test]
fn deepseek_quirks_parse_as_the_hand_parser_did() {
    let cases = vec![
        edited("deepseek_v3_yarn", |o| {
            o.insert("q_lora_rank".into(), Value::Null);
            o.insert("eos_token_id".into(), json!([1, 2]));
            o["rope_scaling"].as_object_mut().unwrap().remove("original_max_position_embeddings");
            o["rope_scaling"].as_object_mut().unwrap().remove("mscale");
        }),
        edited("deepseek_v3", |o| {
            for k in ["n_routed_experts", "n_group", "topk_group", "scoring_func", "topk_method", "moe_intermediate_size"] {
                o.remove(k);
            }
        }),
    ];
    for v in cases {
        let new = DeepseekV3Config::from_value(&v, Path::new(P)).unwrap();
        assert_eq!(new, legacy::deepseek_config(&v, Path::new(P)).unwrap(), "{v}");
    }
}

#[test]
fn a_bad_type_names_its_key_path_and_the_file() {
    let v = edited("llama3", |o| {
        o["rope_scaling"]["factor"] = "x".into();
    });
    let e = ModelConfig::from_value(v.clone(), Path::new("ckpt/config.json")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(&e, ModelError::BadValue { key, .. } if key == "rope_scaling.factor"), "{msg}");
    assert!(msg.contains("ckpt/config.json") && msg.contains("invalid type: string \"x\", expected f64"), "{msg}");
    let v = edited("deepseek_v3", |o| {
        o.insert("n_group".into(), (-1).into());
    });
    let e = DeepseekV3Config::from_value(&v, Path::new("ckpt/config.json")).unwrap_err();
    assert!(matches!(&e, ModelError::BadValue { key, .. } if key == "n_group"), "{e}");
    let g = json!({"eos_token_id": [1, "2"]});
    let e = GenerationConfig::from_value(g, Path::new("ckpt/generation_config.json")).unwrap_err();
    assert!(e.to_string().contains("eos_token_id[1]") && e.to_string().contains("generation_config.json"), "{e}");
}

#[test]
fn a_missing_required_key_is_named() {
    let v = edited("deepseek_v3", |o| {
        o.remove("kv_lora_rank");
    });
    let e = DeepseekV3Config::from_value(&v, Path::new(P)).unwrap_err();
    assert!(matches!(&e, ModelError::MissingKey { key, .. } if key == "kv_lora_rank"), "{e}");
    let v = edited("llama3", |o| {
        o.insert("num_attention_heads".into(), Value::Null);
    });
    let e = ModelConfig::from_value(v, Path::new(P)).unwrap_err();
    assert!(matches!(&e, ModelError::MissingKey { key, .. } if key == "num_attention_heads"), "{e}");
}
