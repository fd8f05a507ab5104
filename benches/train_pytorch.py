#!/usr/bin/env python3
"""PyTorch peer of `distill bench train`: forward + backward + AdamW tokens/s of the same
Qwen2 shape (random init, float32, CPU, torch's default thread count or --threads).

Needs torch and transformers:
    python3 -m venv .venv && .venv/bin/pip install torch transformers
    distill bench train --python .venv/bin/python

Prints one JSON line: {"tokens_per_s", "steps", "threads", "torch", "peak_rss_mb"}.
"""
import argparse
import json
import resource
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=1408)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="model.gradient_checkpointing_enable() (non-reentrant), as HF Trainer does")
    a = p.parse_args()
    try:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except ImportError as e:
        sys.exit(f"torch/transformers not installed ({e}); pip install torch transformers")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        max_position_embeddings=max(2048, a.seq),
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    model = Qwen2ForCausalLM(cfg).float().train()
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(a.steps + 1):
        ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if step > 0:  # the first step is warm-up
            times.append(dt)
    tps = a.batch * a.seq * len(times) / sum(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "tokens_per_s": tps,
        "steps": len(times),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_mb": rss_mb,
        "gradient_checkpointing": a.gradient_checkpointing,
    }))


if __name__ == "__main__":
    main()
