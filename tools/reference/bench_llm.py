#!/usr/bin/env python3
"""Peer benchmark for SmolLM2 (or any Llama-architecture GGUF) on CPU.

Engines:
  transformers   AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32) (the GGUF
                 dequantized to f32), default attention implementation (sdpa), eval, torch.set_num_threads(N)
  llama_cpp      llama-cpp-python on the same GGUF as stored (e.g. Q4_1), n_threads=N, n_batch=max(512, n_ctx);
                 skipped (reported with "error") when llama_cpp cannot be imported

Workload: a prompt of exactly --prompt-tokens ids (a fixed English text tokenized and repeated/cut),
then --gen-tokens greedy steps with a KV cache (EOS ignored). Timings:
  prompt_tok_s   prompt_tokens / (time of the prefill forward pass that yields the first new token)
  decode_tok_s   (gen_tokens - 1) / (time of the remaining gen_tokens - 1 single-token steps)
median over --repeat runs after --warmup runs.

Usage: bench_llm.py --gguf PATH [--json] [--threads N] [--prompt-tokens 128] [--gen-tokens 64]
                    [--repeat 3] [--warmup 1] [--engine transformers --engine llama_cpp]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TEXT = (
    "The history of speech recognition goes back to the 1950s, when researchers at Bell Labs built a "
    "system that could recognise spoken digits from a single speaker. Over the following decades, hidden "
    "Markov models, then neural networks, made it possible to transcribe continuous speech from many "
    "speakers in noisy rooms. Today a voice assistant listens, transcribes, and passes the words to a "
    "language model that writes a helpful answer. "
)


def prompt_ids(tok, n):
    base = tok(TEXT, add_special_tokens=False).input_ids
    ids = []
    while len(ids) < n:
        ids += base
    return ids[:n]


def bench_transformers(path, ids, gen, threads, repeat, warmup):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, DynamicCache

    torch.set_num_threads(threads)
    d, name = os.path.split(path)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    x = torch.tensor([ids])

    def run():
        with torch.inference_mode():
            cache = DynamicCache(config=model.config)
            t0 = time.perf_counter()
            out = model(input_ids=x, cache=cache, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t1 = time.perf_counter()
            toks = [int(nxt)]
            for _ in range(gen - 1):
                out = model(input_ids=nxt, cache=cache, use_cache=True)  # cache is updated in place
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                toks.append(int(nxt))
            t2 = time.perf_counter()
        return t1 - t0, t2 - t1, toks

    for _ in range(warmup):
        run()
    res = [run() for _ in range(repeat)]
    pp = statistics.median(r[0] for r in res)
    dec = statistics.median(r[1] for r in res)
    return {
        "engine": "transformers",
        "version": transformers.__version__,
        "torch": torch.__version__,
        "dtype": "float32 (dequantized from GGUF)",
        "attn_implementation": model.config._attn_implementation,
        "threads": threads,
        "load_s": round(load_s, 3),
        "prompt_tokens": len(ids),
        "gen_tokens": gen,
        "prompt_s": round(pp, 4),
        "decode_s": round(dec, 4),
        "prompt_tok_s": round(len(ids) / pp, 2),
        "decode_tok_s": round((gen - 1) / dec, 2),
        "first_tokens": res[0][2][:8],
    }


def bench_llama_cpp(path, ids, gen, threads, repeat, warmup):
    try:
        import llama_cpp
    except Exception as e:  # noqa: BLE001
        return {"engine": "llama_cpp", "error": f"llama_cpp not importable: {e!r}"}

    t0 = time.perf_counter()
    # n_batch ≥ n_ctx: llama-cpp-python keeps `scores` rows for n_batch tokens only (a 512-token
    # prompt indexed past them), and llama.cpp caps n_batch at n_ctx anyway.
    n_ctx = len(ids) + gen + 8
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                          n_batch=max(512, n_ctx), logits_all=False, verbose=False)
    load_s = time.perf_counter() - t0

    import numpy as np

    # With logits_all=False llama-cpp-python no longer copies logits into `scores` (it stays
    # zero, so its argmax is token 0); llama.cpp's own buffer holds the last token's logits.
    n_vocab = llm.n_vocab()

    def last_argmax():
        return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())

    def run():
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        nxt = last_argmax()
        t1 = time.perf_counter()
        toks = [nxt]
        for _ in range(gen - 1):
            llm.eval([nxt])
            nxt = last_argmax()
            toks.append(nxt)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, toks

    for _ in range(warmup):
        run()
    res = [run() for _ in range(repeat)]
    pp = statistics.median(r[0] for r in res)
    dec = statistics.median(r[1] for r in res)
    return {
        "engine": "llama_cpp",
        "version": llama_cpp.__version__,
        "dtype": "as stored in the GGUF",
        "threads": threads,
        "load_s": round(load_s, 3),
        "prompt_tokens": len(ids),
        "gen_tokens": gen,
        "prompt_s": round(pp, 4),
        "decode_s": round(dec, 4),
        "prompt_tok_s": round(len(ids) / pp, 2),
        "decode_tok_s": round((gen - 1) / dec, 2),
        "first_tokens": res[0][2][:8],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--json", action="store_true", help="print one JSON array (else one line per engine)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--engine", action="append", choices=["transformers", "llama_cpp"])
    args = ap.parse_args()

    path = os.path.abspath(os.path.expanduser(args.gguf))
    d, name = os.path.split(path)
    engines = args.engine or ["transformers", "llama_cpp"]
    if "transformers" in engines:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        ids = prompt_ids(tok, args.prompt_tokens)
    else:
        # llama.cpp alone: its own tokenizer on the GGUF's vocabulary (speed
        # depends on the prompt's length, not its ids), so transformers and
        # torch need not be installed.
        import llama_cpp

        vocab = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        base = vocab.tokenize(TEXT.encode(), add_bos=False, special=False)
        ids = (base * (args.prompt_tokens // max(len(base), 1) + 1))[: args.prompt_tokens]
    results = []
    for e in engines:
        fn = bench_transformers if e == "transformers" else bench_llama_cpp
        r = fn(path, ids, args.gen_tokens, args.threads, args.repeat, args.warmup)
        r["gguf"] = name
        r["machine"] = f"{platform.machine()} {os.cpu_count()} cpus"
        results.append(r)
        if not args.json:
            print(json.dumps(r), flush=True)
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()


if __name__ == "__main__":
    main()
