#!/usr/bin/env python3
"""Check that distill's outputs open unchanged in the Python world.

Usage:
    pip install pyarrow pandas            # transformers optional (checkpoint check)
    python3 benches/read_outputs_python.py --parquet-dir runs/quickstart/traces \
        [--parquet-dir runs/quickstart/eval/teacher/records/arith] \
        [--checkpoint runs/quickstart/student/final]

Each --parquet-dir (a trace directory, an eval records directory, …) must read as one dataset
with `pyarrow.dataset` and `pandas.read_parquet`: both skip `_`- and `.`-prefixed files such as
`_manifest.json` and `.distill.lock`, and fail on any other non-Parquet file. Each --checkpoint
must have `dtype` == `torch_dtype` in config.json, equal to the dtype of its safetensors, and,
when transformers is installed, load with that dtype. Exit status 0 means every check passed.
Not run by `cargo test` (it needs Python packages); the Rust tests check the same layout.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

ST_TO_HF = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}


def check_parquet_dir(path: Path) -> list:
    import pandas as pd
    import pyarrow.dataset as ds

    errors = []
    try:
        rows = ds.dataset(str(path), format="parquet").count_rows()
        frame = pd.read_parquet(path)
        if len(frame) != rows:
            errors.append(f"{path}: pandas read {len(frame)} rows, pyarrow {rows}")
        print(f"{path}: {rows} rows, columns {list(frame.columns)}")
    except Exception as e:  # noqa: BLE001 - report any reader failure
        errors.append(f"{path}: {type(e).__name__}: {e}")
    return errors


def safetensors_dtypes(path: Path) -> set:
    out = set()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        out |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return out


def check_checkpoint(path: Path) -> list:
    errors = []
    cfg = json.loads((path / "config.json").read_text())
    stored = {ST_TO_HF.get(d, d) for d in safetensors_dtypes(path)}
    if cfg.get("dtype") != cfg.get("torch_dtype"):
        errors.append(f"{path}: dtype {cfg.get('dtype')!r} != torch_dtype {cfg.get('torch_dtype')!r}")
    if stored != {cfg.get("dtype")}:
        errors.append(f"{path}: config says {cfg.get('dtype')!r}, tensors are {sorted(stored)}")
    try:
        import transformers
    except ImportError:
        print(f"{path}: config/tensor dtypes checked (transformers not installed)")
        return errors
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype="auto")
    got = str(next(model.parameters()).dtype).removeprefix("torch.")
    if got != cfg.get("dtype"):
        errors.append(f"{path}: transformers {transformers.__version__} loaded {got}, config says {cfg.get('dtype')}")
    print(f"{path}: transformers loads {got}")
    return errors


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parquet-dir", type=Path, action="append", default=[])
    p.add_argument("--checkpoint", type=Path, action="append", default=[])
    a = p.parse_args()
    errors = []
    for d in a.parquet_dir:
        errors += check_parquet_dir(d)
    for c in a.checkpoint:
        errors += check_checkpoint(c)
    for e in errors:
        print("FAIL", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
