//! The serde-derived config parsing (`models::hf_config`) against the values the hand parser
//! it replaced produced: `config_serde/expected.txt` was written by that parser (run over the
//! same fixtures and quirk configs, before it was deleted), one outcome per line. Also: errors
//! name the file and the key path.

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

fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = read(&fixtures().join(fixture).join("config.json"));
    edit(v.as_object_mut().unwrap());
    v
}

fn dense_quirks() -> Vec<Value> {
    vec![
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
    ]
}

#[test]
fn an_unknown_model_type_is_unsupported() {
    let v = edited("qwen2", |o| {
        o.insert("model_type".into(), "mamba".into());
    });
    assert!(matches!(ModelConfig::from_value(v, Path::new(P)), Err(ModelError::UnsupportedArchitecture { .. })));
}

fn deepseek_quirks() -> Vec<Value> {
    vec![
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
    ]
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

/// All cases, one outcome line each: `ok <Debug of the parsed values>` or `err <key>`.
fn outcomes(
    model: impl Fn(Value) -> Result<ModelConfig, ModelError>,
    deepseek: impl Fn(&Value) -> Result<DeepseekV3Config, ModelError>,
    generation: impl Fn(Value, &Path) -> Result<GenerationConfig, ModelError>,
) -> Vec<String> {
    let line = |r: Result<String, ModelError>| match r {
        Ok(s) => format!("ok {s}"),
        Err(e) => format!("err {}", key_of(&e)),
    };
    let mut out = Vec::new();
    for dir in fixture_dirs() {
        let v = read(&dir.join("config.json"));
        out.push(line(model(v.clone()).map(|c| shown(&c))));
        if v["model_type"] == "deepseek_v3" {
            out.push(line(deepseek(&v).map(|c| format!("{c:?}"))));
        }
        let g = dir.join("generation_config.json");
        if g.is_file() {
            out.push(line(generation(read(&g), &g).map(|c| shown_gen(&c))));
        }
    }
    for v in dense_quirks() {
        out.push(line(model(v).map(|c| shown(&c))));
    }
    for v in deepseek_quirks() {
        out.push(line(deepseek(&v).map(|c| format!("{c:?}"))));
    }
    out
}

#[test]
fn every_fixture_and_quirk_parses_to_the_hand_parsers_values() {
    let new = outcomes(
        |v| ModelConfig::from_value(v, Path::new(P)),
        |v| DeepseekV3Config::from_value(v, Path::new(P)),
        GenerationConfig::from_value,
    );
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config_serde/expected.txt")).unwrap();
    let expected: Vec<&str> = text.lines().collect();
    assert_eq!(new.len(), expected.len());
    for (i, (n, e)) in new.iter().zip(&expected).enumerate() {
        assert_eq!(n, e, "case {i}");
    }
    for dir in fixture_dirs() {
        let v = read(&dir.join("config.json"));
        assert_eq!(ModelConfig::from_value(v.clone(), Path::new(P)).unwrap().raw, v, "raw JSON is kept");
    }
}
