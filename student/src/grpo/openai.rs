//! `[rollouts] source = "openai"`: rollouts from an OpenAI-compatible server serving the
//! policy (vLLM, SGLang, `distill serve`), and the weight sync that keeps it on-policy.
//!
//! Sampling: one `POST <base_url>/completions` per rollout batch with the rendered prompts as
//! token-id lists, `n = num_generations`, the run's temperature/top_p/top_k,
//! `max_tokens = max_completion_length`, `logprobs: 0` and vLLM's
//! `return_tokens_as_token_ids: true`, so every logprob entry names the exact generated id
//! (`token_id:<id>`); choices come back prompt-major (`index = prompt · n + j`). A server that
//! does not return ids that way is an error, never a re-tokenised guess.
//!
//! Old logprobs: servers report logprobs of the raw model distribution (vLLM's default
//! `raw_logprobs`, `distill serve`), which equal the sampling distribution's only at
//! temperature one. There they are used as the rollouts' old logprobs; at any other
//! temperature they are left out and the trainer recomputes them from the current policy at
//! the sampling temperature — the weights the server sampled with, synced every step.
//!
//! Weight sync: after each optimizer step the policy is written in HF layout (f32, tokenizer
//! included) to `<output.dir>/rollout-policy/` (temp + rename) and the server is told to load
//! it: `reload_endpoint = "sglang"` posts `{"model_path": …}` to SGLang's
//! `/update_weights_from_disk` (also served by `distill serve`) and requires
//! `{"success": true}`. The directory must be readable by the server at the same path.

use std::path::Path;
use std::time::Duration;

use inference::logprobs::parse_token_id;
use inference::wire::{CompletionLogprobs, CompletionResponse, ModelList};
use serde_json::{json, Value};

use super::config::{GrpoConfig, ReloadEndpoint};
use super::native::NativeSampler;
use super::rollout::{Rollout, RolloutBatch};
use crate::error::{Result, StudentError};

/// The rollout client of one run.
pub struct OpenAiSampler {
    problems: NativeSampler,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base_url: String,
    model: String,
    reload_url: Option<String>,
}

fn server_err(url: &str, msg: impl Into<String>, source: Option<reqwest::Error>) -> StudentError {
    StudentError::RolloutServer {
        url: url.to_string(),
        msg: msg.into(),
        source,
    }
}

impl OpenAiSampler {
    /// Prepares the client: problems rendered as for native sampling, the served model name
    /// (from `rollouts.model` or `GET /models`), the reload URL.
    pub fn new(cfg: &GrpoConfig, problems: NativeSampler) -> Result<Self> {
        let r = &cfg.rollouts;
        let base_url = r.base_url.clone().expect("validated").trim_end_matches('/').to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StudentError::io("tokio runtime", e))?;
        let mut builder = reqwest::Client::builder();
        if r.request_timeout_s > 0 {
            builder = builder.timeout(Duration::from_secs(r.request_timeout_s));
        }
        let client = builder
            .build()
            .map_err(|e| server_err(&base_url, "cannot build the HTTP client", Some(e)))?;
        let model = match &r.model {
            Some(m) => m.clone(),
            None => {
                let url = format!("{base_url}/models");
                let list: ModelList = rt.block_on(get_json(&client, &url))?;
                list.data
                    .first()
                    .map(|m| m.id.clone())
                    .ok_or_else(|| server_err(&url, "serves no model", None))?
            }
        };
        let reload_url = match r.reload_endpoint {
            ReloadEndpoint::None => None,
            ReloadEndpoint::Sglang => Some(r.reload_url.clone().unwrap_or_else(|| {
                let root = base_url.strip_suffix("/v1").unwrap_or(&base_url);
                format!("{root}/update_weights_from_disk")
            })),
        };
        tracing::info!(%base_url, %model, reload = ?reload_url, "openai rollout source");
        Ok(Self {
            problems,
            rt,
            client,
            base_url,
            model,
            reload_url,
        })
    }

    /// Batches in one pass over the problems.
    pub fn batches_per_epoch(&self) -> u64 {
        self.problems.batches_per_epoch()
    }

    /// Samples rollout batch `index` from the server and rewards it.
    pub fn sample(&self, index: u64, cfg: &GrpoConfig) -> Result<RolloutBatch> {
        let g = &cfg.grpo;
        let picked = self.problems.pick(index, cfg);
        let prompts: Vec<&[u32]> = picked.iter().map(|&i| self.problems.prompt(i)).collect();
        let mut body = json!({
            "model": self.model,
            "prompt": prompts,
            "n": g.num_generations,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "max_tokens": g.max_completion_length,
            "logprobs": 0,
            "return_tokens_as_token_ids": true,
            "seed": super::native::sample_seed(cfg.train.seed, index, 0) & (i64::MAX as u64),
        });
        if g.top_k > 0 {
            body["top_k"] = json!(g.top_k);
        }
        let url = format!("{}/completions", self.base_url);
        let resp: CompletionResponse = self.rt.block_on(post_json(&self.client, &url, &body))?;
        let want = picked.len() * g.num_generations;
        let mut choices = resp.choices;
        choices.sort_by_key(|c| c.index);
        if choices.len() != want || choices.iter().enumerate().any(|(i, c)| c.index as usize != i) {
            return Err(server_err(&url, format!("expected choices 0..{want}, got {} choices", choices.len()), None));
        }
        let use_old = (g.temperature - 1.0).abs() < 1e-12;
        let mut rollouts = Vec::with_capacity(want);
        for c in choices {
            let pi = picked[c.index as usize / g.num_generations];
            let (ids, logprobs) = choice_tokens(&url, c.index, c.logprobs)?;
            let text = c.text.unwrap_or_default();
            let truncated = c.finish_reason.as_deref() == Some("length");
            let (reward, acc, fmt) = self.problems.reward(pi, &text, ids.len(), cfg);
            rollouts.push(Rollout {
                group: Value::String(self.problems.problem(pi).id.clone()),
                prompt_ids: self.problems.prompt(pi).to_vec(),
                completion_ids: ids,
                reward,
                old_logprobs: use_old.then_some(logprobs),
                ref_logprobs: None,
                truncated,
                accuracy: Some(acc),
                format: Some(fmt),
            });
        }
        Ok(RolloutBatch::from_rollouts(rollouts))
    }

    /// Tells the server to load the policy saved in `dir` (no-op for `reload_endpoint =
    /// "none"`).
    pub fn reload(&self, dir: &Path) -> Result<()> {
        let Some(url) = &self.reload_url else {
            return Ok(());
        };
        let dir = std::fs::canonicalize(dir).map_err(|e| StudentError::io(dir, e))?;
        let body = json!({ "model_path": dir });
        let reply: Value = self.rt.block_on(post_json(&self.client, url, &body))?;
        if reply.get("success").and_then(Value::as_bool) != Some(true) {
            return Err(server_err(url, format!("reload of {} failed: {reply}", dir.display()), None));
        }
        tracing::info!(dir = %dir.display(), "rollout server reloaded the policy");
        Ok(())
    }
}

/// The generated ids and their logprobs of one choice, from `token_id:<id>` logprob tokens.
fn choice_tokens(url: &str, index: u32, logprobs: Option<Value>) -> Result<(Vec<u32>, Vec<f64>)> {
    let bad = |msg: String| server_err(url, format!("choice {index}: {msg}"), None);
    let lp: CompletionLogprobs = logprobs
        .ok_or_else(|| bad("no logprobs in the reply".into()))
        .and_then(|v| serde_json::from_value(v).map_err(|e| bad(format!("unreadable logprobs: {e}"))))?;
    if lp.tokens.len() != lp.token_logprobs.len() {
        return Err(bad(format!("{} tokens but {} token_logprobs", lp.tokens.len(), lp.token_logprobs.len())));
    }
    let mut ids = Vec::with_capacity(lp.tokens.len());
    let mut lps = Vec::with_capacity(lp.tokens.len());
    for (t, l) in lp.tokens.iter().zip(&lp.token_logprobs) {
        let id = parse_token_id(t).ok_or_else(|| {
            bad(format!("token `{t}` is not `token_id:<id>` (the server must support return_tokens_as_token_ids)"))
        })?;
        ids.push(id);
        lps.push(l.ok_or_else(|| bad(format!("no logprob for token {id}")))? as f64);
    }
    Ok((ids, lps))
}

async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> Result<T> {
    let r = client.get(url).send().await.map_err(|e| server_err(url, "request failed", Some(e)))?;
    read_reply(url, r).await
}

async fn post_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str, body: &Value) -> Result<T> {
    let r = client.post(url).json(body).send().await.map_err(|e| server_err(url, "request failed", Some(e)))?;
    read_reply(url, r).await
}

async fn read_reply<T: serde::de::DeserializeOwned>(url: &str, r: reqwest::Response) -> Result<T> {
    let status = r.status();
    let text = r.text().await.map_err(|e| server_err(url, "reading the reply failed", Some(e)))?;
    if !status.is_success() {
        let msg = inference::wire::ErrorBody::message_of(&text);
        return Err(server_err(url, format!("HTTP {status}: {msg}"), None));
    }
    serde_json::from_str(&text).map_err(|e| server_err(url, format!("unreadable reply: {e}"), None))
}
