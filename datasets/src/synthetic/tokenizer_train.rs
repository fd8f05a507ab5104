//! Training a small byte-level BPE tokenizer for the synthetic task with the `tokenizers` crate,
//! saved as a Hugging Face tokenizer directory (`tokenizer.json` + `tokenizer_config.json` with
//! an R1-like chat template) that transformers loads unchanged.
//!
//! Digits are pre-split one per token (an optional leading space stays attached, as in
//! Llama 3 / Qwen), which is what makes carrying arithmetic learnable for a tiny model.

use crate::atomic::write_atomic;
use crate::tokenizer::TextTokenizer;
use crate::DatasetError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, TokenizerBuilder, TokenizerImpl};

/// BOS of the synthetic tokenizer.
pub const BOS: &str = "<|begin_of_text|>";
/// EOS (ends every assistant turn; generation stops on it).
pub const EOS: &str = "<|end_of_text|>";
/// Padding token.
pub const PAD: &str = "<|pad|>";
/// Role markers.
pub const ROLE_TOKENS: [&str; 3] = ["<|system|>", "<|user|>", "<|assistant|>"];
/// Reasoning delimiters: single added tokens but not "special", so that
/// `decode(…, skip_special_tokens = true)` keeps them (as in DeepSeek-R1's tokenizers).
pub const THINK_TOKENS: [&str; 2] = ["<think>", "</think>"];

/// Pre-tokenizer regex: GPT-2/Llama-3 style, but every digit is its own piece.
const SPLIT_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// R1-like chat template: BOS, then `<|user|>…`, `<|assistant|>…<EOS>` turns (reasoning kept,
/// so that rendering a full conversation yields exactly the SFT text); the generation prompt
/// ends with `<|assistant|><think>\n` as DeepSeek-R1's does.
pub const SYNTHETIC_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>' + message['content'] }}{% elif message['role'] == 'user' %}{{ '<|user|>' + message['content'] }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>' + message['content'] + eos_token }}{% else %}{{ raise_exception('unsupported role: ' + message['role']) }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|><think>\\n' }}{% endif %}";

/// Knobs of tokenizer training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerTrainConfig {
    /// Target vocabulary size incl. the 256 byte tokens and special tokens (default 384).
    pub vocab_size: usize,
    /// Minimum pair frequency for a merge (default 2).
    pub min_frequency: u64,
    /// `model_max_length` recorded in tokenizer_config.json (default 2048).
    pub model_max_length: usize,
}

impl Default for TokenizerTrainConfig {
    fn default() -> Self {
        TokenizerTrainConfig {
            vocab_size: 384,
            min_frequency: 2,
            model_max_length: 2048,
        }
    }
}

type Impl = TokenizerImpl<
    BPE,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

fn tok_err(e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Tokenizer(format!("training: {e}"))
}

/// Train a byte-level BPE on `texts` and write `tokenizer.json` + `tokenizer_config.json` into
/// `out_dir` (atomically); returns the loaded tokenizer. Deterministic for the same input.
pub fn train_tokenizer<S: AsRef<str> + Sync>(
    texts: &[S],
    cfg: &TokenizerTrainConfig,
    out_dir: &Path,
) -> Result<TextTokenizer, DatasetError> {
    let specials: Vec<&str> = [BOS, EOS, PAD].into_iter().chain(ROLE_TOKENS).collect();
    let min_vocab = 256 + specials.len() + THINK_TOKENS.len();
    if cfg.vocab_size < min_vocab {
        return Err(DatasetError::Invalid(format!(
            "tokenizer vocab_size = {}: must be at least {min_vocab} (bytes + special tokens)",
            cfg.vocab_size
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(cfg.vocab_size - THINK_TOKENS.len())
        .min_frequency(cfg.min_frequency)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(
            specials
                .iter()
                .map(|s| AddedToken::from(*s, true))
                .collect(),
        )
        .build();
    let split = Split::new(
        SplitPattern::Regex(SPLIT_REGEX.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?;
    let byte_level = ByteLevel::new(false, true, false);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ]);
    let mut tok: Impl = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)))
        .with_post_processor(None)
        .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
        .build()
        .map_err(tok_err)?;
    tok.train(&mut trainer, texts.iter().map(|s| s.as_ref().to_string()))
        .map_err(tok_err)?;
    let think: Vec<AddedToken> = THINK_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, false).normalized(false))
        .collect();
    tok.add_tokens(&think);
    let json_text = tok.to_string(false).map_err(tok_err)?;
    write_atomic(&out_dir.join("tokenizer.json"), json_text.as_bytes())?;

    let mut added = Map::new();
    for t in specials.iter().chain(THINK_TOKENS.iter()) {
        let id = tok
            .token_to_id(t)
            .ok_or_else(|| tok_err(format!("token {t} missing after training")))?;
        added.insert(
            id.to_string(),
            json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": specials.contains(t)}),
        );
    }
    let config = json!({
        "added_tokens_decoder": Value::Object(added),
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": Value::Null,
        "additional_special_tokens": ROLE_TOKENS,
        "chat_template": SYNTHETIC_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg.model_max_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let text = serde_json::to_string_pretty(&config).map_err(tok_err)?;
    write_atomic(&out_dir.join("tokenizer_config.json"), text.as_bytes())?;
    TextTokenizer::from_dir(out_dir)
}
