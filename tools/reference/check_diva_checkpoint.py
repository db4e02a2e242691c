#!/usr/bin/env python3
"""Check that a DiVA checkpoint directory loads the way the official HF code loads it.

Usage: $V tools/reference/check_diva_checkpoint.py CKPT_DIR [--expected FILE] [--atol A] [--encoder-config JSON]

CKPT_DIR holds model.safetensors and config.json. The check:
  * config.json has reference_encoder and reference_decoder; each is a path (absolute, or relative
    to CKPT_DIR) to a local HF model directory, or else a hub id (only usable if cached; set
    HF_HUB_OFFLINE=1 to avoid the network);
  * model.safetensors has exactly: query_tokens [N, d_w]; projection.weight [d_w, d_llm] (the
    official layout, transposed vs torch nn.Linear); projection.bias [d_llm]; and connector.<key>
    for every key of a WhisperDecoder built from the reference encoder's config, loaded with a
    strict load_state_dict (no missing, unexpected or mis-shaped key, embed_tokens included);
  * N <= max_target_positions, d_llm == the reference decoder's hidden_size when its config is found;
  * with --expected FILE (a safetensors with `virtual_tokens` [B,N,d_llm] and either `encoder_out`
    [B,1500,d_w] or `mel` [B,n_mels,3000] plus the reference encoder weights): runs
    projection(connector(inputs_embeds=query_tokens, encoder_hidden_states=enc)) in f32 / eager /
    eval mode and compares to `virtual_tokens` (max abs diff <= atol, default 1e-5).
Prints OK (exit 0) or each problem found (exit 1).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperDecoder


def resolve(ref, ckpt_dir):
    p = ref if os.path.isabs(ref) else os.path.join(ckpt_dir, ref)
    return p if os.path.isdir(p) else ref


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt_dir")
    ap.add_argument("--expected")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--encoder-config", help="an HF Whisper config.json to use when reference_encoder "
                    "is a diva short name (tiny.en) or a CTranslate2 directory, e.g. "
                    "tools/reference/configs/whisper-tiny.en.json")
    args = ap.parse_args(argv)
    problems = []

    with open(os.path.join(args.ckpt_dir, "config.json")) as f:
        cfg = json.load(f)
    for k in ("reference_encoder", "reference_decoder"):
        if k not in cfg:
            problems.append(f"config.json: no {k}")
    if problems:
        print("\n".join(problems))
        return 1
    enc_ref = resolve(cfg["reference_encoder"], args.ckpt_dir)
    dec_ref = resolve(cfg["reference_decoder"], args.ckpt_dir)
    wcfg = WhisperConfig.from_json_file(args.encoder_config) if args.encoder_config else WhisperConfig.from_pretrained(enc_ref)
    wcfg._attn_implementation = "eager"
    d_w = wcfg.d_model
    d_llm = None
    try:
        d_llm = AutoConfig.from_pretrained(dec_ref).hidden_size
    except Exception as e:  # noqa: BLE001
        print(f"note: reference_decoder config not found ({type(e).__name__}); d_llm taken from projection.bias")

    sd = load_file(os.path.join(args.ckpt_dir, "model.safetensors"))
    conn = {k[len("connector."):]: v for k, v in sd.items() if k.startswith("connector.")}
    other = sorted(k for k in sd if not k.startswith("connector."))
    expected_other = ["projection.bias", "projection.weight", "query_tokens"]
    for k in expected_other:
        if k not in sd:
            problems.append(f"missing key {k}")
    for k in other:
        if k not in expected_other:
            problems.append(f"unexpected key {k}")
    for k, v in sd.items():
        if not v.is_floating_point():
            problems.append(f"{k}: dtype {v.dtype} is not floating point")
    if problems:
        print("\n".join(problems))
        return 1

    q, pw, pb = sd["query_tokens"], sd["projection.weight"], sd["projection.bias"]
    if d_llm is None:
        d_llm = pb.shape[0] if pb.dim() == 1 else -1
    if q.dim() != 2 or q.shape[1] != d_w:
        problems.append(f"query_tokens shape {list(q.shape)}, want [N, {d_w}]")
    elif q.shape[0] > wcfg.max_target_positions:
        problems.append(f"query_tokens N={q.shape[0]} > max_target_positions {wcfg.max_target_positions}")
    if list(pw.shape) != [d_w, d_llm]:
        problems.append(f"projection.weight shape {list(pw.shape)}, want [d_w, d_llm] = [{d_w}, {d_llm}] (official layout, transposed)")
    if list(pb.shape) != [d_llm]:
        problems.append(f"projection.bias shape {list(pb.shape)}, want [{d_llm}]")

    decoder = WhisperDecoder(wcfg).eval()
    try:
        res = decoder.load_state_dict({k: v.float() for k, v in conn.items()}, strict=True)
        if res.missing_keys or res.unexpected_keys:
            problems.append(f"connector: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    except RuntimeError as e:
        problems.append("connector strict load_state_dict failed:\n" + str(e))
    if problems:
        print("\n".join(problems))
        return 1

    projection = torch.nn.Linear(d_w, d_llm)
    with torch.no_grad():
        projection.weight.copy_(pw.float().T)
        projection.bias.copy_(pb.float())

    if args.expected:
        exp = load_file(args.expected)
        with torch.no_grad():
            if "encoder_out" in exp:
                enc = exp["encoder_out"].float()
            else:
                from transformers import WhisperModel
                wm = WhisperModel.from_pretrained(enc_ref, attn_implementation="eager", dtype=torch.float32).eval()
                enc = wm.encoder(exp["mel"].float()).last_hidden_state
            qt = q.float()[None].expand(enc.shape[0], -1, -1)
            virt = projection(decoder(inputs_embeds=qt, encoder_hidden_states=enc, use_cache=False).last_hidden_state)
        want = exp["virtual_tokens"].float()
        if virt.shape != want.shape:
            problems.append(f"virtual_tokens shape {list(virt.shape)} vs expected {list(want.shape)}")
        else:
            diff = (virt - want).abs().max().item()
            print(f"virtual_tokens max abs diff {diff:.3g}{' (exact)' if diff == 0 else ''}")
            if not diff <= args.atol:
                problems.append(f"virtual_tokens differ: max abs diff {diff:.3g} > atol {args.atol}")

    if problems:
        print("\n".join(problems))
        return 1
    print(f"OK: N={q.shape[0]} d_whisper={d_w} d_llm={d_llm} connector keys={len(conn)} dtype={q.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
