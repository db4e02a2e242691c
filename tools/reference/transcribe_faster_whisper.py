#!/usr/bin/env python3
"""Reference transcripts with faster-whisper (greedy, no timestamps, no VAD).

For every line {"id","audio","text"} of --manifest:
  WhisperModel(--model, device="cpu", compute_type="float32").transcribe(audio, **DECODE_OPTIONS)
  hyp = "".join(segment.text for segment in segments).strip()
Writes --out as JSONL {"id","text","hyp"} sorted by id, and a sidecar <out minus .jsonl>.meta.json
with the versions and the exact decode options (explicit + faster-whisper defaults in effect).

Usage: transcribe_faster_whisper.py --model DIR --manifest M.jsonl --out F.jsonl [--threads N]
"""
import argparse
import inspect
import json
import os
import sys
import time

import ctranslate2
import faster_whisper
from faster_whisper import WhisperModel

DECODE_OPTIONS = dict(
    language="en",
    beam_size=1,
    best_of=1,
    temperature=0.0,
    without_timestamps=True,
    condition_on_previous_text=False,
    vad_filter=False,
)


def jsonable(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    rows = [json.loads(line) for line in open(args.manifest, encoding="utf-8") if line.strip()]
    rows.sort(key=lambda r: r["id"])
    model = WhisperModel(args.model, device="cpu", compute_type="float32", cpu_threads=args.threads, num_workers=1)

    t0 = time.time()
    out_rows = []
    empty = []
    for i, r in enumerate(rows):
        segments, _info = model.transcribe(r["audio"], **DECODE_OPTIONS)
        hyp = "".join(s.text for s in segments).strip()
        if not hyp:
            empty.append(r["id"])
        out_rows.append({"id": r["id"], "text": r["text"], "hyp": hyp})
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(rows)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    elapsed = time.time() - t0

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in out_rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    sig = inspect.signature(WhisperModel.transcribe)
    defaults = {
        k: jsonable(p.default)
        for k, p in sig.parameters.items()
        if k not in ("self", "audio") and p.default is not inspect.Parameter.empty
    }
    effective = {**defaults, **DECODE_OPTIONS}
    base = args.out[: -len(".jsonl")] if args.out.endswith(".jsonl") else args.out
    meta = {
        "generator": "tools/reference/transcribe_faster_whisper.py",
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "model": os.path.basename(os.path.normpath(args.model)),
        "model_init": {"device": "cpu", "compute_type": "float32", "cpu_threads": args.threads, "num_workers": 1},
        "transcribe_explicit_options": DECODE_OPTIONS,
        "transcribe_effective_options": effective,
        "hyp": '"".join(segment.text for segment in segments).strip()',
        "audio_decoding": "faster_whisper.decode_audio (PyAV), resampled to 16 kHz mono by PyAV",
        "manifest": os.path.basename(args.manifest),
        "clips": len(out_rows),
        "empty_hyps": empty,
    }
    with open(base + ".meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{len(out_rows)} clips, {len(empty)} empty hyps, {elapsed:.0f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
