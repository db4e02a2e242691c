#!/usr/bin/env python3
"""The cascade a user would otherwise build from the two best C/C++ engines, timed to its first token.

For each --clip (a WAV/FLAC file), one timed run is:
  t0  audio = faster_whisper.decode_audio(clip, 16000)          (PyAV; the file is read and resampled)
      segments, _ = WhisperModel.transcribe(audio, language="en", beam_size=--beam-size,
                        without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
      text = "".join(s.text for s in segments).strip()           (the generator is consumed)
  t1  prompt = the GGUF's own chat template (tokenizer.chat_template, rendered by llama-cpp-python's
               Jinja2ChatFormatter) with one user message `text` and the generation prompt
      llama.load_state(prefix)  -- the KV state after the template's constant prefix, computed once
                                   at load, as diva caches its template prefix
      llama.eval(prompt tokens after the prefix); first = argmax(the last token's logits)
  t2
  ttft_ms = t2 - t0, transcribe_ms = t1 - t0, llm_ms = t2 - t1.
Also encoder_ms: CTranslate2's Whisper encoder alone on the clip's [1, 80, 3000] log-mel
(model.model.encode(StorageView, to_cpu=True)), the same window diva's encoder runs.

Engines: WhisperModel(--whisper DIR, device="cpu", compute_type=--compute-type, cpu_threads=--threads,
num_workers=1); llama_cpp.Llama(--gguf, n_ctx=2048, n_threads=n_threads_batch=--threads,
n_batch=2048, verbose=False) on the GGUF as stored. Each clip: --warmup untimed runs, then --repeat
timed runs; medians.

Output with --json: one JSON object {"engine": "cascade", "clips": [{...}, ...], versions...}.

Usage: bench_cascade.py --whisper DIR --gguf FILE --clip A.wav [--clip B.wav] [--threads N]
                        [--repeat 1] [--warmup 1] [--beam-size 1] [--compute-type float32] [--json]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--whisper", required=True, help="CTranslate2 Whisper directory")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--clip", action="append", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import ctranslate2
    import faster_whisper
    import llama_cpp
    import numpy as np
    from faster_whisper import WhisperModel, decode_audio
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    whisper = WhisperModel(args.whisper, device="cpu", compute_type=args.compute_type,
                           cpu_threads=args.threads, num_workers=1)
    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=2048, n_threads=args.threads,
                          n_threads_batch=args.threads, n_batch=2048, logits_all=False, verbose=False)
    meta = llm.metadata
    template = meta.get("tokenizer.chat_template")
    if not template:
        print(f"{args.gguf}: no tokenizer.chat_template in the GGUF", file=sys.stderr)
        return 2
    tok_text = lambda i: llm._model.token_get_text(i)  # noqa: E731
    formatter = Jinja2ChatFormatter(template=template, eos_token=tok_text(llm.token_eos()),
                                    bos_token=tok_text(llm.token_bos()), add_generation_prompt=True)

    def render(text):
        return formatter(messages=[{"role": "user", "content": text}]).prompt

    def tokenize(s):
        return llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)

    # The template's constant prefix (everything before the user's words), evaluated once.
    marker = "\u2063MARK\u2063"
    rendered = render(marker)
    prefix = tokenize(rendered[: rendered.index(marker)])
    llm.reset()
    llm.eval(prefix)
    prefix_state = llm.save_state()
    n_vocab = llm.n_vocab()

    def run(clip):
        t0 = time.perf_counter()
        audio = decode_audio(clip, sampling_rate=16000)
        segments, _ = whisper.transcribe(audio, language="en", beam_size=args.beam_size,
                                         without_timestamps=True, condition_on_previous_text=False,
                                         vad_filter=False)
        text = "".join(s.text for s in segments).strip()
        t1 = time.perf_counter()
        ids = tokenize(render(text))
        if ids[: len(prefix)] != prefix:
            raise SystemExit("the rendered prompt does not start with the cached prefix's tokens")
        llm.load_state(prefix_state)
        llm.eval(ids[len(prefix):])
        # llama.cpp's buffer of the last token's logits (`scores` stays zero without logits_all).
        first = int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())
        t2 = time.perf_counter()
        return (t2 - t0) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3, text, first, len(ids)

    def encoder_ms(clip):
        audio = decode_audio(clip, sampling_rate=16000)
        audio = np.pad(audio, (0, max(0, 480000 - len(audio))))[:480000]
        feats = whisper.feature_extractor(audio)[:, :3000]
        x = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32))
        t0 = time.perf_counter()
        whisper.model.encode(x, to_cpu=True)
        return (time.perf_counter() - t0) * 1e3

    clips = []
    for clip in args.clip:
        for _ in range(args.warmup):
            run(clip)
            encoder_ms(clip)
        runs = [run(clip) for _ in range(max(1, args.repeat))]
        enc = [encoder_ms(clip) for _ in range(max(1, args.repeat))]
        clips.append({
            "clip": clip,
            "ttft_ms": statistics.median(r[0] for r in runs),
            "transcribe_ms": statistics.median(r[1] for r in runs),
            "llm_ms": statistics.median(r[2] for r in runs),
            "encoder_ms": statistics.median(enc),
            "transcript": runs[0][3],
            "first_token": runs[0][4],
            "prompt_tokens": runs[0][5],
            "cached_prefix_tokens": len(prefix),
        })
    out = {
        "engine": "cascade",
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "llama_cpp": llama_cpp.__version__,
        "compute_type": args.compute_type,
        "beam_size": args.beam_size,
        "threads": args.threads,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "clips": clips,
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
