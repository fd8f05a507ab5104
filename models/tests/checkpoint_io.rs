//! Loading and saving HF checkpoint directories: round trips, sharding, tied embeddings, and
//! the errors a user gets for broken checkpoints and configs.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use models::{load_model, save_model, CausalLm, DType, ForwardInput, ModelError, SaveOptions};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        // Checkpoint files only: fixture dirs also hold reference subdirectories (grpo/).
        if e.path().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn logits_of(dir: &Path, ids: &[u32]) -> Vec<f32> {
    let m = load_model::<B>(dir, &device(), DType::F32).unwrap();
    values(m.model.forward(ForwardInput::from_rows(&[ids.to_vec()], &device()).unwrap()))
}

#[test]
fn save_sharded_round_trip_is_exact_and_hf_shaped() {
    let src = fixture("qwen2");
    let m = load_model::<B>(&src, &device(), DType::F32).unwrap();
    let out = scratch("roundtrip").join("ckpt");
    let opts = SaveOptions { max_shard_bytes: 400_000, ..Default::default() };
    save_model(&out, &m.model, &m.config, &m.generation, &opts).unwrap();

    let index: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("model.safetensors.index.json")).unwrap()).unwrap();
    let wm = index["weight_map"].as_object().unwrap();
    let shards: std::collections::BTreeSet<&str> = wm.values().map(|v| v.as_str().unwrap()).collect();
    assert!(shards.len() > 1, "expected several shards, got {shards:?}");
    assert!(shards.iter().all(|s| s.starts_with("model-0000") && s.contains("-of-")));
    // Same tensor names as the original file, and lm_head kept (untied).
    let orig = models::SafetensorsFiles::open(&src).unwrap();
    let mut saved: Vec<&str> = wm.keys().map(String::as_str).collect();
    saved.sort();
    assert_eq!(saved, orig.names());
    // Metadata format=pt in every shard header.
    for s in &shards {
        let bytes = fs::read(out.join(s)).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "pt");
    }
    let cfg: serde_json::Value = serde_json::from_str(&fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"][0], "Qwen2ForCausalLM");
    assert_eq!(cfg["sliding_window"], 131072, "unknown keys survive");
    assert!(out.join("generation_config.json").exists());

    let ids = [3u32, 14, 15, 92, 65, 35];
    assert_eq!(logits_of(&src, &ids), logits_of(&out, &ids), "round trip must be bit exact");
    // No temp dirs left behind; refuses to overwrite unless asked.
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty());
    assert!(save_model(&out, &m.model, &m.config, &m.generation, &SaveOptions::default()).is_err());
    save_model(&out, &m.model, &m.config, &m.generation, &SaveOptions { overwrite: true, dtype: Some(DType::BF16), ..Default::default() }).unwrap();
    let bf = models::SafetensorsFiles::open(&out).unwrap();
    assert_eq!(format!("{:?}", bf.raw("lm_head.weight").unwrap().dtype), "BF16");
    let d = max_abs_diff(&logits_of(&src, &ids), &logits_of(&out, &ids));
    assert!(d > 0.0 && d < 0.05, "bf16 storage changes logits slightly, got {d}");
}

#[test]
fn tied_embeddings_have_no_lm_head_and_use_embed_tokens() {
    let dir = scratch("tied");
    let src = fixture("llama3");
    copy_dir(&src, &dir);
    let mut cfg: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["tie_word_embeddings"] = true.into();
    fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let m = load_model::<B>(&dir, &device(), DType::F32).unwrap();
    assert_eq!(m.unused_tensors, vec!["lm_head.weight".to_string()], "untied file's lm_head is reported unused");
    let ids = [1u32, 2, 3, 4];
    let hidden = m.model.forward_hidden(ForwardInput::from_rows(&[ids.to_vec()], &device()).unwrap());
    let models::Model::Decoder(d) = &m.model else { panic!("expected the Qwen2/Llama decoder") };
    let by_embed = values(hidden.clone().matmul(d.model.embed_tokens.weight.val().transpose().unsqueeze::<3>()));
    assert_close("tied logits", &values(m.model.logits(hidden)), &by_embed, 1e-5);
    let out = scratch("tied-saved").join("m");
    save_model(&out, &m.model, &m.config, &m.generation, &SaveOptions::default()).unwrap();
    let saved = models::SafetensorsFiles::open(&out).unwrap();
    assert!(!saved.contains("lm_head.weight"));
    assert!(out.join("model.safetensors").exists() && !out.join("model.safetensors.index.json").exists());
    assert_eq!(logits_of(&out, &ids), logits_of(&dir, &ids));
}

#[test]
fn rope_parameters_spelling_loads_identically() {
    let dir = scratch("rope-params");
    copy_dir(&fixture("llama3"), &dir);
    let mut cfg: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let o = cfg.as_object_mut().unwrap();
    let mut rp = o.remove("rope_scaling").unwrap();
    rp["rope_theta"] = o.remove("rope_theta").unwrap();
    o.insert("rope_parameters".into(), rp);
    fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let ids = [9u32, 8, 7, 6, 5, 4, 3];
    assert_eq!(logits_of(&dir, &ids), logits_of(&fixture("llama3"), &ids));
}

fn err_of(dir: &Path) -> String {
    match load_model::<B>(dir, &device(), DType::F32) {
        Ok(_) => panic!("{} loaded but should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_checkpoints_name_the_tensor_file_or_key() {
    let src = fixture("qwen2");
    let orig = models::SafetensorsFiles::open(&src).unwrap();
    let tensors: Vec<(String, burn::tensor::TensorData)> =
        orig.names().into_iter().map(|n| (n.to_string(), orig.tensor_data(n, None).unwrap())).collect();

    // Missing tensor.
    let dir = scratch("missing");
    copy_dir(&src, &dir);
    let kept: Vec<_> = tensors.iter().filter(|(n, _)| n != "model.layers.1.self_attn.k_proj.bias").cloned().collect();
    models::write_safetensors(&dir.join("model.safetensors"), &kept).unwrap();
    let e = err_of(&dir);
    assert!(e.contains("model.layers.1.self_attn.k_proj.bias") && e.contains("model.safetensors"), "{e}");

    // Wrong shape.
    let mut bad = tensors.clone();
    let i = bad.iter().position(|(n, _)| n == "model.norm.weight").unwrap();
    bad[i].1 = burn::tensor::TensorData::new(vec![1.0f32; 32], [32]);
    models::write_safetensors(&dir.join("model.safetensors"), &bad).unwrap();
    let e = err_of(&dir);
    assert!(e.contains("model.norm.weight") && e.contains("[32]") && e.contains("[64]"), "{e}");

    // Truncated file.
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let e = err_of(&dir);
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");

    // Extra tensor: loads, reported unused.
    let mut extra = tensors.clone();
    extra.push(("model.layers.9.mystery.weight".into(), burn::tensor::TensorData::new(vec![0.0f32; 4], [4])));
    models::write_safetensors(&dir.join("model.safetensors"), &extra).unwrap();
    let m = load_model::<B>(&dir, &device(), DType::F32).unwrap();
    assert_eq!(m.unused_tensors, vec!["model.layers.9.mystery.weight".to_string()]);
}

#[test]
fn bad_configs_name_the_key() {
    let dir = scratch("badcfg");
    copy_dir(&fixture("qwen2"), &dir);
    let orig: serde_json::Value = serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let write = |v: &serde_json::Value| fs::write(dir.join("config.json"), v.to_string()).unwrap();

    let mut v = orig.clone();
    v["model_type"] = "mamba".into();
    write(&v);
    let e = err_of(&dir);
    assert!(e.contains("mamba") && e.contains("config.json"), "{e}");

    let mut v = orig.clone();
    v.as_object_mut().unwrap().remove("num_hidden_layers");
    write(&v);
    let e = load_model::<B>(&dir, &device(), DType::F32).unwrap_err();
    assert!(matches!(&e, ModelError::MissingKey { key, .. } if key == "num_hidden_layers"), "{e}");

    let mut v = orig.clone();
    v["num_key_value_heads"] = 3.into();
    write(&v);
    assert!(err_of(&dir).contains("num_key_value_heads"));

    let mut v = orig;
    v["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 2.0});
    write(&v);
    assert!(err_of(&dir).contains("longrope"));
}

#[test]
fn random_model_builds_the_configured_shape() {
    let cfg = models::ModelConfig::from_dir(&fixture("qwen2")).unwrap();
    let m = models::random_model::<B>(&cfg, &device(), DType::F32, 0.02, 1).unwrap();
    assert_eq!(m.param_count(), cfg.dense_param_count());
    let files = models::SafetensorsFiles::open(&fixture("qwen2")).unwrap();
    let stored: usize = files.names().iter().map(|n| files.raw(n).unwrap().shape.iter().product::<usize>()).sum();
    assert_eq!(stored, cfg.dense_param_count());
}

fn saved_config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// transformers 5 reads `dtype`, 4.x `torch_dtype`: both must name the dtype of the tensors
/// actually written, whatever the source config said (a bf16 source saved in f32 used to keep
/// `"dtype": "bfloat16"`, and transformers 5 then loaded the f32 weights as bf16).
#[test]
fn saved_config_names_the_saved_dtype_under_both_keys() {
    for source_keys in [&["dtype", "torch_dtype"][..], &["dtype"][..], &["torch_dtype"][..]] {
        let src = scratch(&format!("bf16-src-{}", source_keys.join("-")));
        copy_dir(&fixture("qwen2"), &src);
        let mut cfg = saved_config(&src);
        let o = cfg.as_object_mut().unwrap();
        o.remove("torch_dtype");
        for k in source_keys {
            o.insert(k.to_string(), "bfloat16".into());
        }
        fs::write(src.join("config.json"), cfg.to_string()).unwrap();
        let m = load_model::<B>(&src, &device(), DType::F32).unwrap();
        assert_eq!(m.config.torch_dtype.as_deref(), Some("bfloat16"));
        for (save, name, st) in [
            (Some(DType::F32), "float32", "F32"),
            (None, "float32", "F32"),
            (Some(DType::BF16), "bfloat16", "BF16"),
        ] {
            let out = src.parent().unwrap().join(format!("saved-{}-{name}-{}", source_keys.len(), save.is_some()));
            let opts = SaveOptions { dtype: save, overwrite: true, ..Default::default() };
            save_model(&out, &m.model, &m.config, &m.generation, &opts).unwrap();
            let written = saved_config(&out);
            assert_eq!(written["dtype"], name, "{source_keys:?} saved as {save:?}: {written}");
            assert_eq!(written["torch_dtype"], name, "{source_keys:?} saved as {save:?}: {written}");
            let files = models::SafetensorsFiles::open(&out).unwrap();
            assert_eq!(format!("{:?}", files.raw("lm_head.weight").unwrap().dtype), st);
            let reloaded = models::ModelConfig::from_dir(&out).unwrap();
            assert_eq!(reloaded.torch_dtype.as_deref(), Some(name));
        }
    }
}
