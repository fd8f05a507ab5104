#!/usr/bin/env python3
"""Agreement of distill's grader with Math-Verify on the same (gold, pred) pairs.

Math-Verify (`pip install 'math-verify[antlr4_13_2]==0.8.0'`) is the oracle: every pair is
graded with its default settings — `verify(parse(gold), parse(pred))`, default extraction
configs, `float_rounding=6`, `strict=True` — and distill's verdicts come from the
`grade_pairs` example of the grader crate (built with
`cargo build --release -p grader --example grade_pairs`).

Input rows are JSON lines {"gold", "pred", "response"?, "expected"?}. The gold is given to
Math-Verify inside `\\boxed{…}` unless it already carries math delimiters or a box (a bare
dataset answer such as `\\frac{1}{2}` is LaTeX, which is how `distill bench grade` and open-r1
read it); `--gold-as-is` passes it unchanged (Math-Verify's own regression cases). The pred is
given as written when `response` is true (a full response, or the text after `</think>` —
Math-Verify does not know the R1 `<think>` policy, so an unclosed `<think>` is labelled
"incorrect" here, as distill's policy says), otherwise it is a bare answer and wrapped like the
gold.

Subcommands:
  label    write the rows back with "expected" set to Math-Verify's verdict ("correct"/"incorrect")
  compare  print agreement of distill with Math-Verify (and with "expected" when rows carry it),
           listing the disagreements
"""
import argparse
import json
import subprocess
import sys
import time


def wrap(s: str) -> str:
    unescaped_dollar = any(c == "$" and (i == 0 or s[i - 1] != "\\") for i, c in enumerate(s))
    if unescaped_dollar or "\\boxed" in s or "\\(" in s or "\\[" in s:
        return s
    return "\\boxed{" + s + "}"


def mv_verdicts(rows, gold_as_is: bool):
    from math_verify import parse, verify

    out = []
    start = time.perf_counter()
    for r in rows:
        pred = r["pred"]
        if r.get("response", True):
            after = pred.rsplit("</think>", 1)
            if len(after) == 2:
                pred = after[1]
            elif "<think>" in pred:
                out.append(False)
                continue
        else:
            pred = wrap(pred)
        gold = r["gold"] if gold_as_is else wrap(r["gold"])
        try:
            ok = bool(verify(parse(gold), parse(pred)))
        except Exception:  # noqa: BLE001 — a crash in the oracle is "not equal"
            ok = False
        out.append(ok)
    return out, time.perf_counter() - start


def our_verdicts(rows, grader_bin: str, gold_as_is: bool):
    payload = "".join(
        json.dumps({"gold": r["gold"], "pred": r["pred"], "response": r.get("response", True)})
        + "\n"
        for r in rows
    )
    start = time.perf_counter()
    res = subprocess.run(
        [grader_bin], input=payload, capture_output=True, text=True, check=True
    )
    secs = time.perf_counter() - start
    lines = [json.loads(l) for l in res.stdout.splitlines() if l.strip()]
    assert len(lines) == len(rows), "grader printed a different number of verdicts"
    return [l["verdict"] == "correct" for l in lines], lines, secs


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip() and not l.startswith("//")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["label", "compare"])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", help="label: where the labelled rows go (default: in place)")
    ap.add_argument("--grader-bin", default="target/release/examples/grade_pairs")
    ap.add_argument("--gold-as-is", action="store_true")
    ap.add_argument("--show", type=int, default=40, help="disagreements listed")
    args = ap.parse_args()
    rows = read_rows(args.cases)
    mv, mv_secs = mv_verdicts(rows, args.gold_as_is)
    if args.command == "label":
        with open(args.out or args.cases, "w", encoding="utf-8") as f:
            for r, ok in zip(rows, mv):
                r["expected"] = "correct" if ok else "incorrect"
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(json.dumps({"rows": len(rows), "correct": sum(mv)}))
        return 0
    ours, lines, our_secs = our_verdicts(rows, args.grader_bin, args.gold_as_is)
    agree = [a == b for a, b in zip(ours, mv)]
    shown = 0
    for r, a, m, l in zip(rows, ours, mv, lines):
        if a != m and shown < args.show:
            shown += 1
            print(f"ours={a} mv={m} kind={r.get('kind', r.get('test', ''))} gold={r['gold']!r} "
                  f"pred={r['pred'][-160:]!r} extracted={l.get('extracted')!r}")
    summary = {
        "rows": len(rows),
        "agree_with_math_verify": sum(agree),
        "agreement": round(sum(agree) / max(len(rows), 1), 4),
        "math_verify_seconds": round(mv_secs, 2),
        "ours_seconds_incl_process": round(our_secs, 3),
    }
    if all("expected" in r for r in rows):
        exp = [r["expected"] in (1, True, "correct") for r in rows]
        summary["ours_vs_expected"] = round(sum(a == e for a, e in zip(ours, exp)) / len(rows), 4)
        summary["math_verify_vs_expected"] = round(
            sum(m == e for m, e in zip(mv, exp)) / len(rows), 4
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
