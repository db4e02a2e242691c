#!/usr/bin/env python3
"""SmolLM2 in other GGUF quantizations, written by llama.cpp's own quantizer (llama-cpp-python),
for `diva bench llm --llm FILE --against llama.cpp` on the same file as the peer.

Writes $DIVA_HOME/models/smollm2-variants/smollm2-{q8_0,q4_k_m}.gguf from the shipped Q4_1 file
(allow_requantize: the source is already 4-bit, so these measure speed, not quality). SmolLM2's
576-wide rows are not whole blocks of 256, so llama.cpp's Q4_K_M falls back to Q5_0 for most
tensors: the file is Q5_0 ×166, Q4_K ×16, Q8_0 ×15, Q6_K ×14 (plus the F32 norms).

Usage: make_quant_variants.py [--src PATH] [--out DIR]
"""
import argparse
import ctypes
import os
import sys

import llama_cpp


def main():
    home = os.environ.get("DIVA_HOME", os.path.expanduser("~/.cache/diva"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(home, "models/smollm2-135m-instruct/model.gguf"))
    ap.add_argument("--out", default=os.path.join(home, "models/smollm2-variants"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, ftype in [("q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0),
                        ("q4_k_m", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)]:
        out = os.path.join(args.out, f"smollm2-{name}.gguf")
        if os.path.exists(out):
            print(f"{out}: exists", file=sys.stderr)
            continue
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = ftype
        p.allow_requantize = True
        p.nthread = 1
        tmp = out + ".tmp"
        if llama_cpp.llama_model_quantize(args.src.encode(), tmp.encode(), ctypes.byref(p)) != 0:
            sys.exit(f"llama.cpp could not quantize {args.src} to {name}")
        os.replace(tmp, out)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
