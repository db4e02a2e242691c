#!/usr/bin/env python3
"""Tiny random HF Whisper model + reference activations (tests/fixtures/hf-whisper-random/).

Writes into OUT (default: tests/fixtures/hf-whisper-random):
  model/            save_pretrained(..., safe_serialization=True), one model.safetensors
  model-sharded/    the same weights, max_shard_size small enough for >= 2 shards
                    + model.safetensors.index.json
  expected.safetensors
    mel            f16 [1,80,3000]  seeded N(0,1), rounded to f16. All outputs below are
                                    computed from this f16 mel cast back to f32.
    encoder_out    f32 [1,1500,64]  model.model.encoder(mel).last_hidden_state
    decoder_ids    i64 [1,6]
    decoder_hidden f32 [1,6,64]     decoder last_hidden_state (after the final layer norm)
    logits         f32 [1,6,120]    WhisperForConditionalGeneration(mel, decoder_ids).logits

Eval mode (no dropout), eager attention, CPU, f32.

Usage: make_hf_whisper_fixture.py [--out DIR]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import save_file  # noqa: E402  (safetensors.numpy.save_file + sorted header)
from transformers import WhisperConfig, WhisperForConditionalGeneration

SEED_MODEL = 0
SEED_MEL = 1234
DECODER_IDS = [117, 5, 42, 99, 0, 118]  # start token, some ids, eos


def build_config() -> WhisperConfig:
    cfg = WhisperConfig(
        vocab_size=120,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=117,
        bos_token_id=117,
        eos_token_id=118,
        pad_token_id=119,
        # defaults reference ids of the real 51865 vocab; keep everything inside vocab 120
        suppress_tokens=[],
        begin_suppress_tokens=[118],
        forced_decoder_ids=None,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        tie_word_embeddings=True,
    )
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "hf-whisper-random")
    ap.add_argument("--out", default=os.path.normpath(default_out))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    cfg = build_config()
    torch.manual_seed(SEED_MODEL)
    model = WhisperForConditionalGeneration(cfg)
    model.config._attn_implementation = "eager"
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    for sub in ("model", "model-sharded"):
        shutil.rmtree(os.path.join(args.out, sub), ignore_errors=True)
    model.save_pretrained(os.path.join(args.out, "model"), safe_serialization=True)
    model.save_pretrained(os.path.join(args.out, "model-sharded"), safe_serialization=True, max_shard_size="400KB")
    shards = sorted(f for f in os.listdir(os.path.join(args.out, "model-sharded")) if f.endswith(".safetensors"))
    if len(shards) < 2 or not os.path.exists(os.path.join(args.out, "model-sharded", "model.safetensors.index.json")):
        print(f"expected >= 2 shards + index, got {shards}", file=sys.stderr)
        return 1

    rng = np.random.default_rng(SEED_MEL)
    mel16 = rng.standard_normal((1, 80, 3000)).astype(np.float16)
    mel = torch.from_numpy(mel16.astype(np.float32))
    ids = torch.tensor([DECODER_IDS], dtype=torch.int64)

    # reload from disk so the outputs are those of the saved weights
    reloaded = WhisperForConditionalGeneration.from_pretrained(
        os.path.join(args.out, "model"), attn_implementation="eager", dtype=torch.float32
    )
    reloaded.eval()
    with torch.no_grad():
        enc = reloaded.model.encoder(mel).last_hidden_state
        dec = reloaded.model.decoder(input_ids=ids, encoder_hidden_states=enc).last_hidden_state
        out = reloaded(input_features=mel, decoder_input_ids=ids)
        logits = out.logits
        # cross-check: the sharded copy gives identical logits
        sharded = WhisperForConditionalGeneration.from_pretrained(
            os.path.join(args.out, "model-sharded"), attn_implementation="eager", dtype=torch.float32
        )
        sharded.eval()
        logits_sh = sharded(input_features=mel, decoder_input_ids=ids).logits
    assert torch.equal(logits, logits_sh), "sharded model differs"
    assert torch.allclose(reloaded.proj_out(dec), logits, atol=1e-6)

    meta = {
        "generator": "tools/reference/make_hf_whisper_fixture.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed_model": str(SEED_MODEL),
        "seed_mel": str(SEED_MEL),
        "mel": "numpy.random.default_rng(seed_mel).standard_normal((1,80,3000)) rounded to f16; outputs computed from it cast to f32",
        "attn_implementation": "eager",
        "config": json.dumps(cfg.to_diff_dict(), sort_keys=True),
    }
    tensors = {
        "mel": mel16,
        "encoder_out": enc.numpy().astype(np.float32),
        "decoder_ids": ids.numpy().astype(np.int64),
        "decoder_hidden": dec.numpy().astype(np.float32),
        "logits": logits.numpy().astype(np.float32),
    }
    save_file(tensors, os.path.join(args.out, "expected.safetensors"), metadata=meta)
    for k, v in tensors.items():
        print(k, v.dtype, list(v.shape))
    print("shards:", shards)
    return 0


if __name__ == "__main__":
    sys.exit(main())
