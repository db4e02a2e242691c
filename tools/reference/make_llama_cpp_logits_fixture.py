#!/usr/bin/env python3
"""llama.cpp's logits for the SmolLM2 parity prompts (tests/fixtures/llm/smollm2_llama_cpp_logits.safetensors).

The quantized path's reference: llama.cpp runs the GGUF as stored (Q4_1 projections, the Q8_0
tied head) with 8-bit activation blocks, the arithmetic diva's `WeightMode::Quantized` does, so
diva's quantized logits are held to these (and its f32 path to transformers', in
smollm2_logits.safetensors).

Engine: llama-cpp-python (llama.cpp), n_ctx 512, n_batch 512, n_threads 1, logits_all=True, CPU.
Tensors (i = a, b, c; the ids are the transformers fixture's ids_{i}, read from it):
  last_logits_{i}  f32 [49152]  logits at the last prompt position after eval(ids)
  greedy_a         i64 [20]     20 greedy steps after prompt a (argmax of the logits, EOS not
                                stopping), each step one eval of the new token
Metadata: versions.

Usage: make_llama_cpp_logits_fixture.py --gguf PATH [--ids tests/fixtures/llm/smollm2_logits.safetensors] [--out FILE]
"""
import argparse
import json
import os
import sys

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors.numpy import load_file  # noqa: E402
from st_util import save_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ids", default="tests/fixtures/llm/smollm2_logits.safetensors")
    ap.add_argument("--out", default="tests/fixtures/llm/smollm2_llama_cpp_logits.safetensors")
    args = ap.parse_args()
    fx = load_file(args.ids)
    llm = llama_cpp.Llama(model_path=args.gguf, n_ctx=512, n_batch=512, n_threads=1,
                          n_threads_batch=1, logits_all=True, verbose=False)
    out = {}
    for p in "abc":
        ids = [int(t) for t in fx[f"ids_{p}"]]
        llm.reset()
        llm.eval(ids)
        out[f"last_logits_{p}"] = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        if p == "a":
            seq, greedy = list(ids), []
            for _ in range(20):
                nxt = int(np.argmax(llm.scores[len(seq) - 1]))
                greedy.append(nxt)
                llm.eval([nxt])
                seq.append(nxt)
            out["greedy_a"] = np.array(greedy, dtype=np.int64)
    meta = {"llama_cpp_python": llama_cpp.__version__, "n_threads": "1",
            "gguf": os.path.basename(args.gguf)}
    save_file(out, args.out, metadata={k: json.dumps(v) if not isinstance(v, str) else v
                                       for k, v in meta.items()})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
