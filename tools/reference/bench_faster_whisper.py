#!/usr/bin/env python3
"""Time faster-whisper's log-mel front end and the CTranslate2 Whisper encoder on 30 s of audio.

  audio    --audio FILE decoded with faster_whisper.decode_audio (16 kHz mono f32) and tiled to
           exactly 480000 samples (30 s); default: tests/fixtures/audio/real/asterisk_vm-newuser_8k.wav
  mel_ms   model.feature_extractor(audio)  (faster_whisper.FeatureExtractor, numpy STFT), then
           features[:, :3000] -> [1,80,3000] f32 (not timed)
  encoder_ms  model.model.encode(StorageView [1,80,3000], to_cpu=True) (ctranslate2.models.Whisper)
Each is timed --repeat times after --warmup untimed runs; the median is reported.
WhisperModel(DIR, device="cpu", compute_type=CT, cpu_threads=--threads (default: all cores)).

Output with --json: one JSON object per compute type, one per line, e.g.
  {"mel_ms": 25.1, "encoder_ms": 310.2, "threads": 2, "compute_type": "float32", ...}

Usage: bench_faster_whisper.py --model DIR [--audio FILE] [--repeat N] [--warmup N]
                               [--threads N] [--compute-type float32 [--compute-type int8]] [--json]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import ctranslate2
import faster_whisper
import numpy as np
from faster_whisper import WhisperModel, decode_audio

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
N_SAMPLES = 480000


def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", default=os.path.join(REPO, "tests", "fixtures", "audio", "real", "asterisk_vm-newuser_8k.wav"))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compute-type", action="append", dest="compute_types")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    compute_types = args.compute_types or ["float32"]

    audio = decode_audio(args.audio, sampling_rate=16000).astype(np.float32)
    reps = int(np.ceil(N_SAMPLES / max(len(audio), 1)))
    audio = np.tile(audio, reps)[:N_SAMPLES]
    assert audio.shape == (N_SAMPLES,)

    for ct in compute_types:
        model = WhisperModel(args.model, device="cpu", compute_type=ct, cpu_threads=args.threads, num_workers=1)
        fe = model.feature_extractor
        mel_ms, mel_min = timed(lambda: fe(audio), args.repeat, args.warmup)
        feats = fe(audio)[:, :3000]
        feats = np.ascontiguousarray(feats[None].astype(np.float32))
        assert feats.shape == (1, fe.n_mels if hasattr(fe, "n_mels") else 80, 3000), feats.shape
        sv = ctranslate2.StorageView.from_array(feats)
        enc_ms, enc_min = timed(lambda: model.model.encode(sv, to_cpu=True), args.repeat, args.warmup)
        res = {
            "mel_ms": round(mel_ms, 2),
            "encoder_ms": round(enc_ms, 2),
            "threads": args.threads,
            "compute_type": ct,
            "mel_ms_min": round(mel_min, 2),
            "encoder_ms_min": round(enc_min, 2),
            "repeat": args.repeat,
            "warmup": args.warmup,
            "audio_samples": N_SAMPLES,
            "model": os.path.basename(os.path.normpath(args.model)),
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
            "cpu": platform.processor() or platform.machine(),
        }
        if args.json:
            print(json.dumps(res), flush=True)
        else:
            print(f"{ct}: mel {mel_ms:.1f} ms, encoder {enc_ms:.1f} ms (median of {args.repeat}, {args.threads} threads)")
        del model
    return 0


if __name__ == "__main__":
    sys.exit(main())
