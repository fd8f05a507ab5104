//! A byte-level tokenizer that fits any model with a vocabulary of at least 261 ids, for tests
//! and benchmarks of the serving path with tiny random checkpoints (the fixture models ship
//! weights but no tokenizer).
//!
//! Ids 0–255 are the 256 bytes in GPT-2's byte-to-unicode alphabet (so any text round-trips),
//! then `<|endoftext|>` (256, pad), `<|im_start|>` (257), `<|im_end|>` (258, EOS), `<think>`
//! (259) and `</think>` (260). The chat template is ChatML with an R1-style generation prompt
//! that opens `<think>\n`, like the distilled R1 models.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::InferenceError;

/// Special tokens and their ids.
pub const SPECIAL_TOKENS: [(&str, u32); 5] = [
    ("<|endoftext|>", 256),
    ("<|im_start|>", 257),
    ("<|im_end|>", 258),
    ("<think>", 259),
    ("</think>", 260),
];

/// The EOS id (`<|im_end|>`).
pub const EOS_ID: u32 = 258;

/// ChatML with `<think>\n` opened by the generation prompt.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";

/// GPT-2's reversible byte → printable char map.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map[b as usize] = char::from_u32(c).expect("valid char");
    }
    map
}

/// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
pub fn write_byte_tokenizer(dir: &Path) -> Result<(), InferenceError> {
    let mut vocab = Map::new();
    for (id, c) in bytes_to_unicode().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(id));
    }
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .map(|(t, id)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": !t.contains("think")})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let config = json!({
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    });
    std::fs::create_dir_all(dir).map_err(|e| InferenceError::io(dir, e))?;
    for (name, v) in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
    ] {
        let text = serde_json::to_string_pretty(&v).expect("json");
        datasets::atomic::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Makes `dest` a complete tiny checkpoint: the weights and configs of the fixture model in
/// `fixture` (`config.json`, `generation_config.json`, `model.safetensors`) plus this byte
/// tokenizer. Tests and benchmarks of the serving path start from it.
pub fn write_tiny_checkpoint(fixture: &Path, dest: &Path) -> Result<(), InferenceError> {
    std::fs::create_dir_all(dest).map_err(|e| InferenceError::io(dest, e))?;
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        let src = fixture.join(f);
        std::fs::copy(&src, dest.join(f)).map_err(|e| InferenceError::io(src, e))?;
    }
    write_byte_tokenizer(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_renders_the_template() {
        let dir = tempfile::tempdir().unwrap();
        write_byte_tokenizer(dir.path()).unwrap();
        let tok = datasets::TextTokenizer::from_dir(dir.path()).unwrap();
        let text = "Héllo, wörld! 1+1=2 🙂";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.len(), text.len(), "one id per byte");
        assert_eq!(tok.decode(&ids, true).unwrap(), text);
        assert_eq!(tok.eos_token_ids(), &[EOS_ID]);
        let msgs = [datasets::ChatMessage::user("hi")];
        let rendered = tok.apply_chat_template(&msgs, true).unwrap();
        assert_eq!(
            rendered,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
        );
        let ids = tok.encode_chat(&msgs, true).unwrap();
        assert_eq!(ids[0], 257);
        assert!(ids.contains(&259));
    }
}
