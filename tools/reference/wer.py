#!/usr/bin/env python3
"""Corpus WER over a JSONL of {"id","text" (reference),"hyp"}.

WER = (total word substitutions + deletions + insertions) / (total reference words),
word-level Levenshtein per line, summed over all lines.

Normalisation (applied to reference and hypothesis alike), exactly:
  1. lower-case (Python str.lower)
  2. replace every character that is not a letter (str.isalpha), a digit (str.isdigit),
     an apostrophe "'" (U+0027 only) or whitespace (str.isspace) with a space
  3. split on whitespace (this also collapses runs of whitespace)
  4. strip leading and trailing apostrophes from each word; drop words that become empty
No number normalisation ("1" and "one" are different words).

Usage: wer.py FILE.jsonl [--show N] [--json]
"""
import argparse
import json
import sys


def normalize(text: str) -> list:
    text = text.lower()
    text = "".join(c if (c.isalpha() or c.isdigit() or c == "'" or c.isspace()) else " " for c in text)
    words = [w.strip("'") for w in text.split()]
    return [w for w in words if w]


def edit_ops(ref: list, hyp: list):
    """Return (substitutions, deletions, insertions) of a minimal word alignment."""
    n, m = len(ref), len(hyp)
    # dp[i][j] = (cost, subs, dels, ins)
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)] + [None] * m
        for j in range(1, m + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = prev[j - 1]
            else:
                s = prev[j - 1]
                d = prev[j]
                a = cur[j - 1]
                best = min(
                    (s[0] + 1, s[1] + 1, s[2], s[3]),
                    (d[0] + 1, d[1], d[2] + 1, d[3]),
                    (a[0] + 1, a[1], a[2], a[3] + 1),
                )
            cur[j] = best
        prev = cur
    _, s, d, a = prev[m]
    return s, d, a


def corpus_wer(rows):
    tot_ref = subs = dels = ins = 0
    per = []
    for r in rows:
        ref, hyp = normalize(r["text"]), normalize(r["hyp"])
        s, d, a = edit_ops(ref, hyp)
        tot_ref += len(ref)
        subs, dels, ins = subs + s, dels + d, ins + a
        per.append((s + d + a, r["id"], " ".join(ref), " ".join(hyp)))
    errors = subs + dels + ins
    return {
        "clips": len(rows),
        "ref_words": tot_ref,
        "errors": errors,
        "substitutions": subs,
        "deletions": dels,
        "insertions": ins,
        "wer": errors / tot_ref if tot_ref else 0.0,
        "clips_with_errors": sum(1 for p in per if p[0]),
        "empty_hyps": sum(1 for r in rows if not normalize(r["hyp"])),
    }, per


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl")
    ap.add_argument("--show", type=int, default=0, help="print the N clips with most errors")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.jsonl, encoding="utf-8") if line.strip()]
    summary, per = corpus_wer(rows)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(
            f"WER {summary['wer'] * 100:.2f}% ({summary['errors']}/{summary['ref_words']} words; "
            f"S={summary['substitutions']} D={summary['deletions']} I={summary['insertions']}) over {summary['clips']} clips, "
            f"{summary['clips_with_errors']} with errors, {summary['empty_hyps']} empty hyps"
        )
    if args.show:
        for e, i, ref, hyp in sorted(per, key=lambda p: (-p[0], p[1]))[: args.show]:
            print(f"{e:3d} {i}\n    REF: {ref}\n    HYP: {hyp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
