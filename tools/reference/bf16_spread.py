#!/usr/bin/env python3
"""How far bf16 rounding alone moves the DiVA parity fixture's outputs, in PyTorch.

The yardstick for `diva bench parity --dtype bf16` (and its device check): the fixture's pipeline
(tests/fixtures/diva: Whisper encoder -> connector -> projection -> Llama over prefix + virtual
tokens + suffix -> last-position logits) run by transformers with every weight in bf16, once with
eager attention and once with sdpa. Prints the relative L2 of each output against the fixture's f32
outputs, and between the two bf16 runs: two correct bf16 implementations that differ only in their
attention kernel. diva's bf16 result on any device is expected within that spread, not within the
bf16-vs-f32 distance of one particular implementation.

Measured 2026-11-27 (torch 2.15.0, transformers 5.24.0, CPU):
  bf16 eager vs f32: encoder 4.15e-03, virtual tokens 6.65e-03, hidden 8.98e-03, logits 7.95e-03
  bf16 sdpa  vs f32: encoder 4.15e-03, virtual tokens 6.78e-03, hidden 9.59e-03, logits 1.11e-02
  eager vs sdpa (both bf16): 4.72e-04, 5.75e-03, 8.38e-03, 9.63e-03

Usage: $V tools/reference/bf16_spread.py [--fixtures tests/fixtures]
Writes nothing.
"""
import argparse
import copy
import json
import os

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import LlamaForCausalLM, WhisperForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NAMES = ["encoder", "virtual_tokens", "student_hidden", "logits"]
EXPECTED = ["encoder_out", "virtual_tokens", "student_hidden", "student_last_logits"]


def rel(a, b):
    a, b = a.double(), b.double().reshape(a.shape)
    return ((a - b).norm() / b.norm()).item()


def run(fx, ckpt, cfg_ids, dt, attn):
    whisper = WhisperForConditionalGeneration.from_pretrained(
        os.path.join(fx, "hf-whisper-random/model"), attn_implementation=attn, dtype=dt).eval()
    llama = LlamaForCausalLM.from_pretrained(
        os.path.join(fx, "llm/llama_tiny/model"), attn_implementation=attn, dtype=dt).eval()
    connector = copy.deepcopy(whisper.model.decoder)
    connector.load_state_dict({k[len("connector."):]: torch.from_numpy(v)
                               for k, v in ckpt.items() if k.startswith("connector.")})
    connector = connector.to(dt)
    queries = torch.from_numpy(ckpt["query_tokens"]).to(dt)
    # checkpoint layout: projection.weight is [d_whisper, d_llm] (input x output)
    proj_w = torch.from_numpy(ckpt["projection.weight"]).to(dt)
    proj_b = torch.from_numpy(ckpt["projection.bias"]).to(dt)
    mel = torch.from_numpy(cfg_ids["mel"].astype(np.float32)).to(dt)
    enc = whisper.model.encoder(mel).last_hidden_state
    out = connector(inputs_embeds=queries[None], encoder_hidden_states=enc, use_cache=False).last_hidden_state
    virt = out @ proj_w + proj_b
    emb = llama.model.embed_tokens
    student = torch.cat([emb(torch.tensor([cfg_ids["prefix"]])), virt, emb(torch.tensor([cfg_ids["suffix"]]))], 1)
    hidden = llama.model(inputs_embeds=student).last_hidden_state
    logits = llama.lm_head(hidden[:, -1])
    return [enc, virt, hidden, logits]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "tests/fixtures"))
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    fx = args.fixtures
    expected = load_file(os.path.join(fx, "diva/expected.safetensors"))
    ckpt = load_file(os.path.join(fx, "diva/checkpoint/model.safetensors"))

    cfg = json.load(open(os.path.join(fx, "diva/checkpoint/config.json")))
    inputs = {"mel": expected["mel"], "prefix": cfg["prompt_prefix_ids"], "suffix": cfg["prompt_suffix_ids"]}
    runs = {}
    for attn in ["eager", "sdpa"]:
        runs[attn] = run(fx, ckpt, inputs, torch.bfloat16, attn)
        against = [rel(t, torch.from_numpy(expected[k])) for t, k in zip(runs[attn], EXPECTED)]
        print(f"bf16 {attn:5s} vs f32: " + ", ".join(f"{n} {r:.2e}" for n, r in zip(NAMES, against)))
    spread = [rel(a, b) for a, b in zip(runs["eager"], runs["sdpa"])]
    print("eager vs sdpa (both bf16): " + ", ".join(f"{n} {r:.2e}" for n, r in zip(NAMES, spread)))


if __name__ == "__main__":
    main()
