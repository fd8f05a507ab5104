#!/usr/bin/env python3
"""Math-Verify on the pairs written by `distill bench grade` (peer for the grader benchmark).

Reads JSONL lines {"gold", "pred"}, grades the first --limit of them with Math-Verify
(`pip install math-verify`), writes one {"correct": bool} line per pair to --out, and prints a
JSON summary line {"answers", "seconds", "answers_per_s"} last on stdout. The gold is parsed
from `\\boxed{gold}` (so bare LaTeX golds are read as LaTeX), the prediction as a full response
with Math-Verify's default extraction — the way open-r1 scores R1-style outputs.
"""
import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--limit", type=int, default=0, help="grade only the first N pairs (0 = all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        from math_verify import parse, verify
    except ImportError:
        print("math-verify is not installed (pip install math-verify)", file=sys.stderr)
        return 2

    pairs = []
    with open(args.pairs, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                pairs.append((d["gold"], d["pred"]))
                if args.limit and len(pairs) >= args.limit:
                    break

    results = []
    start = time.perf_counter()
    for gold, pred in pairs:
        g = parse("\\boxed{" + gold + "}")
        p = parse(pred)
        results.append(bool(verify(g, p)))
    seconds = time.perf_counter() - start

    with open(args.out, "w", encoding="utf-8") as f:
        for ok in results:
            f.write(json.dumps({"correct": ok}) + "\n")
    rate = len(pairs) / seconds if seconds > 0 else float("nan")
    print(json.dumps({"answers": len(pairs), "seconds": seconds, "answers_per_s": rate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
