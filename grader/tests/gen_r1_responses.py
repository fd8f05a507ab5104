#!/usr/bin/env python3
"""Generates realistic R1-style responses over MATH-500 and AIME answers for the grader's
agreement table (`r1_responses.jsonl`).

Each row is {"kind", "gold", "pred", "response": true}: a `<think>…</think>` block followed by
the final answer written the way reasoning models write it — equivalent forms (markdown, unicode,
separators, units, degrees, bases, scientific notation, lists in prose, …) and near-misses (a
wrong digit, a wrong sign, a truncated or empty box, an unclosed `<think>`). Deterministic
(seeded). Labels come from Math-Verify 0.8.0 afterwards:

    python3 grader/tests/gen_r1_responses.py > grader/tests/r1_responses.jsonl
    python3 benches/grade_agreement.py label --cases grader/tests/r1_responses.jsonl

Usage: gen_r1_responses.py [--per-kind N] [--seed S]
"""
import argparse
import json
import os
import random
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SOURCES = ["eval/benchmarks/math500.jsonl", "eval/benchmarks/aime2024.jsonl",
           "eval/benchmarks/aime2025.jsonl"]

THINK = [
    "<think>\nLet me work through this carefully. First I set up the equations, then simplify.\n"
    "Wait, let me double-check the arithmetic. Yes, that seems right.\n</think>\n\n",
    "<think>\nOkay, so the problem asks for a value. Hmm, maybe I should try small cases first.\n"
    "Actually, a cleaner way is to use symmetry. Checking again... consistent.\n</think>\n\n",
    "<think>\nAlright. Compute step by step: expand, collect terms, and solve. Let me verify "
    "with a substitution. Good.\n</think>\n",
]

INT_RE = re.compile(r"^-?\d+$")
DEC_RE = re.compile(r"^-?\d+\.\d+$")
FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def load_answers():
    out = []
    for rel in SOURCES:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    out.append(str(d["answer"]).strip())
    return out


def bump(ans: str, rng: random.Random) -> str:
    """A near-miss: change the last digit (or append +1)."""
    chars = list(ans)
    idx = [i for i, c in enumerate(chars) if c.isdigit()]
    if not idx:
        return ans + "+1"
    i = idx[-1]
    chars[i] = str((int(chars[i]) + rng.randint(1, 8)) % 10)
    return "".join(chars)


def with_commas(n: int, sep: str) -> str:
    s = f"{abs(n):,}".replace(",", sep)
    return ("-" if n < 0 else "") + s


def intv(a):
    return INT_RE.match(a) is not None


def big_int(a):
    return intv(a) and abs(int(a)) >= 1000


def frac_parts(a):
    m = FRAC_RE.match(a)
    if not m:
        return None
    sign, p, q = m.groups()
    return (-1 if sign else 1) * int(p), int(q)


def dec(x: float, places: int) -> str:
    return f"{x:.{places}f}"


# Each kind: (name, applies(answer) -> bool, make(answer, rng) -> text after </think>).
KINDS = [
    ("boxed", lambda a: True, lambda a, r: f"The answer is $\\boxed{{{a}}}$."),
    ("boxed_wrong", lambda a: True, lambda a, r: f"Therefore, the answer is $\\boxed{{{bump(a, r)}}}$."),
    ("display_boxed", lambda a: True, lambda a, r: f"**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]"),
    ("dfrac_left_right", lambda a: ("\\frac" in a or "(" in a) and "\\left" not in a,
     lambda a, r: "So we get $\\boxed{" + a.replace("\\frac", "\\dfrac").replace("(", "\\left(")
     .replace(")", "\\right)") + "}$."),
    ("final_answer_bold", lambda a: intv(a), lambda a, r: f"Final answer: **{a}**"),
    ("final_answer_bold_wrong", lambda a: intv(a), lambda a, r: f"Final answer: **{bump(a, r)}**"),
    ("bold_answer_label", lambda a: intv(a), lambda a, r: f"**Answer:** {a}"),
    ("bold_answer_label_wrong", lambda a: intv(a), lambda a, r: f"**Answer:** {bump(a, r)}"),
    ("answer_is_then_checking", lambda a: intv(a),
     lambda a, r: f"The answer is {a}, then checking numbers 1 through 12 confirms it."),
    ("fullwidth_period", lambda a: intv(a), lambda a, r: f"所以答案是 ${a}$．"),
    ("fullwidth_digits_box", lambda a: intv(a) and not a.startswith("-"),
     lambda a, r: "答案：$\\boxed{" + "".join(chr(ord(c) + 0xFEE0) for c in a) + "}$"),
    ("unicode_minus", lambda a: intv(a), lambda a, r: f"Thus the value is $\\boxed{{−{a.lstrip('-')}}}$."),
    ("thin_space_thousands", big_int, lambda a, r: f"$\\boxed{{{with_commas(int(a), chr(92) + ',')}}}$"),
    ("medium_space_thousands", big_int, lambda a, r: f"$\\boxed{{{with_commas(int(a), chr(92) + ';')}}}$"),
    ("brace_comma_thousands", big_int, lambda a, r: f"$\\boxed{{{with_commas(int(a), '{,}')}}}$"),
    ("comma_thousands", big_int, lambda a, r: f"The total is $\\boxed{{{with_commas(int(a), ',')}}}$."),
    ("space_thousands", big_int, lambda a, r: f"The total is $\\boxed{{{with_commas(int(a), ' ')}}}$."),
    ("percent", lambda a: intv(a), lambda a, r: f"$\\boxed{{{a}\\%}}$"),
    ("percent_word", lambda a: intv(a), lambda a, r: f"The answer is $\\boxed{{{a} \\text{{ percent}}}}$"),
    ("unit_text_suffix", lambda a: intv(a) or frac_parts(a),
     lambda a, r: f"$\\boxed{{{a}\\text{{ {r.choice(['km/h', 'cm', 'meters', 'units', 'dollars', 'sq ft'])}}}}}$"),
    ("unit_mbox_squared", lambda a: intv(a), lambda a, r: f"Area $= \\boxed{{{a} \\mbox{{ cm}}^2}}$"),
    ("unit_plain_word", lambda a: intv(a), lambda a, r: f"\\boxed{{{a} inches}}"),
    ("dollar_sign", lambda a: intv(a), lambda a, r: f"He pays $\\boxed{{\\${a}}}$."),
    ("aime_leading_zeros", lambda a: intv(a) and 0 <= int(a) < 100,
     lambda a, r: f"$\\boxed{{{int(a):03d}}}$"),
    ("aime_decimal", lambda a: intv(a), lambda a, r: f"$\\boxed{{{a}.0}}$"),
    ("aime_decimal_00", lambda a: intv(a), lambda a, r: f"The answer is $\\boxed{{{a}.00}}$"),
    ("scientific_times", lambda a: big_int(a) and a.rstrip("0") != a,
     lambda a, r: "$\\boxed{" + sci(a) + "}$"),
    ("scientific_e", lambda a: big_int(a), lambda a, r: f"$\\boxed{{{float(a):.4e}}}$".replace("e+0", "e").replace("e+", "e")),
    ("complex_spaced_i", lambda a: re.search(r"\d\s*[+-]\s*\d*i$", a) is not None,
     lambda a, r: "$\\boxed{" + re.sub(r"i$", " i", a) + "}$"),
    ("complex_thin_i", lambda a: re.search(r"\d\s*[+-]\s*\d*i$", a) is not None,
     lambda a, r: "$\\boxed{" + re.sub(r"i$", "\\,i", a) + "}$"),
    ("list_prose_and", lambda a: "," in a and "(" not in a and "[" not in a and "\\{" not in a,
     lambda a, r: "The solutions are " + ", and ".join(f"${x.strip()}$" for x in a.split(",")) + "."),
    ("list_boxes", lambda a: "," in a and "(" not in a and "[" not in a and "\\{" not in a,
     lambda a, r: "The solutions are " + ", ".join(f"$\\boxed{{{x.strip()}}}$" for x in a.split(",")) + "."),
    ("list_reordered", lambda a: "," in a and "(" not in a and "[" not in a and "\\{" not in a,
     lambda a, r: "$\\boxed{" + ", ".join(reversed([x.strip() for x in a.split(",")])) + "}$"),
    ("degree_circ", lambda a: intv(a), lambda a, r: f"$\\boxed{{{a}^\\circ}}$"),
    ("degree_braced", lambda a: intv(a), lambda a, r: f"The angle is $\\boxed{{{a}^{{\\circ}}}}$."),
    ("degree_unicode", lambda a: intv(a), lambda a, r: f"**Answer: {a}°**"),
    ("base_subscript", lambda a: intv(a) and not a.startswith("-"),
     lambda a, r: f"$\\boxed{{{a}_{{{r.choice([8, 10, 16])}}}}}$"),
    ("base_subscript_gold", lambda a: "_" in a, lambda a, r: "$\\boxed{" + re.sub(r"_\{?\d+\}?", "", a) + "}$"),
    ("empty_box", lambda a: True, lambda a, r: "So the final answer is $\\boxed{}$."),
    ("truncated_box", lambda a: True, lambda a, r: f"So the final answer is $\\boxed{{{a}"),
    ("unclosed_think", lambda a: True, None),
    ("earlier_box_later_phrase", lambda a: intv(a),
     lambda a, r: f"We first guessed $\\boxed{{{bump(a, r)}}}$, but that was wrong.\nThe final answer is ${a}$."),
    ("two_boxes_last_wins", lambda a: True,
     lambda a, r: f"Initially $\\boxed{{{bump(a, r)}}}$. Correcting the sign error gives $\\boxed{{{a}}}$."),
    ("x_equals", lambda a: intv(a) or frac_parts(a), lambda a, r: f"$\\boxed{{x = {a}}}$"),
    ("frac_as_decimal4", frac_parts, lambda a, r: f"$\\boxed{{{dec(frac_parts(a)[0] / frac_parts(a)[1], 4)}}}$"),
    ("frac_as_decimal7", frac_parts, lambda a, r: f"$\\boxed{{{dec(frac_parts(a)[0] / frac_parts(a)[1], 7)}}}$"),
    ("frac_slash", frac_parts, lambda a, r: f"The answer is ${frac_parts(a)[0]}/{frac_parts(a)[1]}$."),
    ("frac_unreduced", frac_parts,
     lambda a, r: f"$\\boxed{{\\frac{{{2 * frac_parts(a)[0]}}}{{{2 * frac_parts(a)[1]}}}}}$"),
    ("decimal_comma", lambda a: DEC_RE.match(a) is not None, lambda a, r: f"$\\boxed{{{a.replace('.', ',')}}}$"),
    ("decimal_trailing_zero", lambda a: DEC_RE.match(a) is not None, lambda a, r: f"$\\boxed{{{a}0}}$"),
    ("mc_letter", lambda a: re.fullmatch(r"\\text\{\([A-E]\)\}|\([A-E]\)|[A-E]", a) is not None,
     lambda a, r: f"The answer is **({re.sub(r'[^A-E]', '', a)})**."),
    ("words_answer", lambda a: "\\text" in a and not any(c.isdigit() for c in a),
     lambda a, r: "$\\boxed{" + a + "}$"),
    ("inline_math_answer_no_box", lambda a: True, lambda a, r: f"Hence the answer is ${a}$."),
    ("minerva_hope", lambda a: True,
     lambda a, r: f"Final Answer: The final answer is ${a}$. I hope it is correct."),
    ("math_spanning_lines", lambda a: intv(a), lambda a, r: f"The answer is $\n{a}\n$ after simplifying"),
    ("markdown_heading", lambda a: intv(a), lambda a, r: f"### Final Answer\n\n**{a}**"),
    ("approx_suffix", lambda a: frac_parts(a),
     lambda a, r: f"$\\boxed{{{a} \\approx {dec(frac_parts(a)[0] / frac_parts(a)[1], 3)}}}$"),
    ("sqrt_variants", lambda a: "\\sqrt" in a and " " not in a,
     lambda a, r: "$\\boxed{" + a.replace("\\sqrt{", "\\sqrt {").replace("\\frac", "\\tfrac") + "}$"),
    ("pi_variants", lambda a: "\\pi" in a, lambda a, r: "$\\boxed{" + a.replace("\\pi", "\\pi ") + "}$"),
    ("interval_answer", lambda a: re.match(r"^[\[(].*,.*[\])]$", a) is not None and "\\" in a or re.match(r"^[\[(]-?\d+, ?-?\d+[\])]$", a) is not None,
     lambda a, r: "$\\boxed{" + a.replace(",", ", ") + "}$"),
    ("tuple_spaced", lambda a: a.startswith("(") and "," in a, lambda a, r: "$\\boxed{" + a.replace(", ", ",") + "}$"),
    ("long_box", lambda a: intv(a), lambda a, r: "$\\boxed{" + "+".join(["1"] * (700 + r.randint(0, 100))) + "}$"),
    ("answer_then_box_wrong", lambda a: intv(a),
     lambda a, r: f"The answer is {a}. \\boxed{{{'+'.join(['x'] * 800)}}}"),
    ("no_answer_prose", lambda a: True, lambda a, r: "I could not finish the computation in time."),
    ("negated", lambda a: intv(a) and a != "0", lambda a, r: f"$\\boxed{{{-int(a)}}}$"),
]


def sci(a: str) -> str:
    n = int(a)
    exp = len(str(abs(n))) - 1
    mant = abs(n) / 10 ** exp
    m = f"{mant:.6f}".rstrip("0").rstrip(".")
    return ("-" if n < 0 else "") + f"{m} \\times 10^{{{exp}}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-kind", type=int, default=22)
    ap.add_argument("--seed", type=int, default=20251207)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    answers = load_answers()
    for name, applies, make in KINDS:
        pool = [a for a in answers if applies(a)]
        rng.shuffle(pool)
        for a in pool[: args.per_kind]:
            think = rng.choice(THINK)
            if make is None:
                pred = think.split("</think>")[0] + f"So the answer should be \\boxed{{{a}}} but let me"
            else:
                pred = think + make(a, rng)
            row = {"kind": name, "gold": a, "pred": pred, "response": True}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
