#!/usr/bin/env python3
"""Peer of `distill bench generate`: the same Qwen2.5-0.5B-shaped model with random weights,
float32 on CPU, run with Hugging Face transformers / PyTorch on the same machine.

Measures prefill tokens/s for one prompt and greedy decode tokens/s at each batch size, with
a manual KV-cache loop (what `model.generate` does inside, minus its bookkeeping), and the
process's peak RSS. Prints one JSON object as the last stdout line.

Install the peer (CPU wheels, no CUDA download):
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch
    .venv-bench/bin/pip install transformers
    distill bench generate --python .venv-bench/bin/python
"""
import argparse
import json
import resource
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--decode-prompt-len", type=int, default=32)
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    try:
        import torch
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except ImportError as e:
        msg = f"transformers/torch not available ({e}); install with: " \
              "pip install --index-url https://download.pytorch.org/whl/cpu torch && pip install transformers"
        print(msg, file=sys.stderr)
        print(json.dumps({"error": msg}))
        return 3
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=a.layers,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, torch_dtype="float32",
    )
    cfg._attn_implementation = "sdpa"
    model = Qwen2ForCausalLM(cfg).float().eval()
    batches = [int(b) for b in a.batches.split(",") if b]
    g = torch.Generator().manual_seed(a.seed)

    def ids(b, t):
        return torch.randint(0, cfg.vocab_size, (b, t), generator=g)

    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "threads": torch.get_num_threads(), "layers": a.layers}
    with torch.inference_mode():
        model(ids(1, 16), use_cache=True)  # warm-up
        best = float("inf")
        for _ in range(2):
            x = ids(1, a.prompt_len)
            t0 = time.perf_counter()
            o = model(x, use_cache=True, logits_to_keep=1)
            o.logits[:, -1].argmax(-1)
            best = min(best, time.perf_counter() - t0)
        out["prefill_tokens_per_s"] = a.prompt_len / best
        out["decode_tokens_per_s"] = {}
        for b in batches:
            x = ids(b, a.decode_prompt_len)
            o = model(x, use_cache=True, logits_to_keep=1)
            pkv = o.past_key_values
            nxt = o.logits[:, -1].argmax(-1, keepdim=True)
            t0 = time.perf_counter()
            for _ in range(a.decode_tokens):
                o = model(nxt, past_key_values=pkv, use_cache=True)
                pkv = o.past_key_values
                nxt = o.logits[:, -1].argmax(-1, keepdim=True)
            dt = time.perf_counter() - t0
            out["decode_tokens_per_s"][str(b)] = b * a.decode_tokens / dt
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
