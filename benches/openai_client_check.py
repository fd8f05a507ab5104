#!/usr/bin/env python3
"""Check `distill serve` with the real `openai` Python client.

Usage:
    pip install openai
    python3 benches/openai_client_check.py [--distill target/release/distill] [--model DIR]

Without --model, a temporary checkpoint is assembled from the tiny Qwen2 test fixture
(models/tests/fixtures/qwen2) plus a byte-level tokenizer written by `distill`'s test helper
format (see teacher/src/byte_tokenizer.rs), so the check needs no downloads. The server is
started on a free loopback port with an API key, exercised, and stopped. Exit status 0 means
every check passed; each failure is printed.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def byte_tokenizer(dir_: Path) -> None:
    """Same files as teacher::byte_tokenizer::write_byte_tokenizer."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            extra += 1
            chars.append(chr(255 + extra))
    vocab = {c: i for i, c in enumerate(chars)}
    specials = [("<|endoftext|>", 256), ("<|im_start|>", 257), ("<|im_end|>", 258), ("<think>", 259), ("</think>", 260)]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": "think" not in t}
        for t, i in specials
    ]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": []},
    }
    template = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    cfg = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "model_max_length": 4096, "chat_template": template}
    (dir_ / "tokenizer.json").write_text(json.dumps(tok))
    (dir_ / "tokenizer_config.json").write_text(json.dumps(cfg))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distill", default=str(ROOT / "target/release/distill"))
    ap.add_argument("--model", help="checkpoint dir with tokenizer (default: tiny fixture)")
    args = ap.parse_args()
    try:
        import openai
    except ImportError:
        print("the `openai` package is missing: pip install openai", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="distill-openai-check-"))
    if args.model:
        model_dir = Path(args.model)
    else:
        model_dir = tmp / "tiny"
        model_dir.mkdir()
        fixture = ROOT / "models/tests/fixtures/qwen2"
        for f in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(fixture / f, model_dir / f)
        byte_tokenizer(model_dir)
    port = free_port()
    env = dict(os.environ, DISTILL_CHECK_KEY="check-key")
    server = subprocess.Popen(
        [args.distill, "serve", "--model", str(model_dir), "--port", str(port),
         "--api-key-env", "DISTILL_CHECK_KEY", "--served-model-name", "tiny", "--max-seq-len", "512"],
        env=env,
    )
    failures = []

    def check(name, cond, detail=""):
        print(("ok   " if cond else "FAIL ") + name + (f": {detail}" if detail and not cond else ""))
        if not cond:
            failures.append(name)

    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="check-key", max_retries=0)
        for _ in range(300):
            try:
                client.models.list()
                break
            except Exception:
                if server.poll() is not None:
                    print("server exited", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        models = client.models.list()
        check("models.list", [m.id for m in models.data] == ["tiny"], models)

        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What is 1+1?"}],
                                           max_tokens=8, temperature=0)
        check("chat non-stream", r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1, r)
        check("chat finish_reason", r.choices[0].finish_reason in ("stop", "length"), r)

        chunks = list(client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "What is 1+1?"}], max_tokens=8, temperature=0,
            stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check("chat stream == non-stream (greedy)", text == r.choices[0].message.content, (text, r.choices[0].message.content))
        check("stream usage chunk", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1)

        r2 = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                            max_tokens=6, temperature=1.0, seed=3, n=3)
        check("n=3", len(r2.choices) == 3 and [c.index for c in r2.choices] == [0, 1, 2], r2)

        c = client.completions.create(model="tiny", prompt="Once upon", max_tokens=5, temperature=0)
        check("completions", c.choices[0].text is not None and c.usage.prompt_tokens > 0, c)
        c2 = client.completions.create(model="tiny", prompt=[257, 104, 105], max_tokens=3, temperature=0)
        check("completions with token ids", c2.usage.prompt_tokens == 3, c2)

        try:
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=10**7)
            check("oversized max_tokens rejected", False)
        except openai.BadRequestError as e:
            check("oversized max_tokens rejected (400, OpenAI body)", e.status_code == 400 and "max_tokens" in str(e))
        try:
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
            check("wrong key rejected", False)
        except openai.AuthenticationError:
            check("wrong key rejected (401)", True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
