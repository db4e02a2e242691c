#!/usr/bin/env python3
"""Tiny random Llama and Qwen2 decoders + reference activations (tests/fixtures/llm/{llama,qwen2}_tiny/).

Both: vocab 128, hidden 64, intermediate 160, 2 layers, 4 heads (head_dim 16), 2 KV heads,
max_position_embeddings 256, eager attention, eval mode, CPU.
  llama_tiny: rms_norm_eps 1e-5, rope_theta 5e5, llama3 rope scaling (factor 8, low 1, high 4,
              original_max_position_embeddings 64), tie_word_embeddings=True
  qwen2_tiny: rms_norm_eps 1e-6, rope_theta 1e6, tie_word_embeddings=False (q/k/v biases)
torch.manual_seed(0) before building each model, then every parameter re-drawn from N(0, 0.2^2) in
named_parameters() order (so biases and norm weights are non-trivial; tied lm_head = embed_tokens).

Writes, per model DIR:
  DIR/model/            save_pretrained(safe_serialization=True): config.json, model.safetensors
  DIR/expected.safetensors
    ids             i64 [2,12]     random ids (torch.Generator seed 1)
    attention_mask  i64 [2,12]     row 0 all ones, row 1 right-padded (last 4 positions 0)
    hidden          f32 [2,12,64]  model.model(ids, attention_mask=mask).last_hidden_state (after final norm)
    logits          f32 [2,12,128] model(ids, attention_mask=mask).logits
    ids_single      i64 [1,12]     = ids[0:1]
    hidden_single   f32 [1,12,64]  model.model(ids_single) (no mask)
    logits_single   f32 [1,12,128]
  Padded positions of row 1 are what transformers computes there (their queries still see the real
  keys before them); compare only mask==1 positions if an implementation differs there.
  llama_tiny/grad.safetensors (model converted to f64):
    inputs_embeds       f64 [1,12,64]  embed_tokens(ids_single)
    loss                f64 []         ||model.model(inputs_embeds=x).last_hidden_state[0,-1]||_2
    grad_inputs_embeds  f64 [1,12,64]  d loss / d inputs_embeds

Usage: make_tiny_llm_fixtures.py [--out DIR]   (DIR default tests/fixtures/llm)
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import save_file  # noqa: E402

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
              pad_token_id=0)


def build(kind):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(
            **COMMON, rms_norm_eps=1e-5, rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 64},
            tie_word_embeddings=True, attn_implementation="eager",
        )
        model = LlamaForCausalLM(cfg)
    else:
        cfg = Qwen2Config(**COMMON, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                          attn_implementation="eager")
        model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.normal_(0.0, 0.2)
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/llm")
    args = ap.parse_args()
    torch.set_num_threads(1)

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 128, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    ids[1, 8:] = COMMON["pad_token_id"]

    for kind in ("llama", "qwen2"):
        model = build(kind)
        d = os.path.join(args.out, f"{kind}_tiny")
        if os.path.isdir(os.path.join(d, "model")):
            shutil.rmtree(os.path.join(d, "model"))
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
        # the config.json transformers writes carries its version; keep it, but drop nothing else
        rp = getattr(model.config, "rope_parameters", None)
        with torch.no_grad():
            h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            lg = model(input_ids=ids, attention_mask=mask).logits
            h1 = model.model(input_ids=ids[:1]).last_hidden_state
            lg1 = model(input_ids=ids[:1]).logits
        assert torch.allclose(h1, h[:1], atol=1e-5) and torch.allclose(lg1, lg[:1], atol=1e-4)
        if kind == "qwen2":
            b = model.model.layers[0].self_attn.q_proj.bias
            assert b is not None and b.abs().sum() > 0
        meta = {
            "model_type": model.config.model_type,
            "transformers": transformers.__version__,
            "torch": torch.__version__.split("+")[0],
            "rope_parameters": json.dumps(rp, sort_keys=True),
            "init": "torch.manual_seed(0); every parameter ~ N(0, 0.2^2) in named_parameters() order",
            "ids": "torch.randint(3,128,(2,12),generator=manual_seed(1)); row 1 positions 8..11 set to pad id 0",
        }
        save_file(
            {
                "ids": ids.numpy().astype(np.int64),
                "attention_mask": mask.numpy().astype(np.int64),
                "hidden": h.numpy().astype(np.float32),
                "logits": lg.numpy().astype(np.float32),
                "ids_single": ids[:1].numpy().astype(np.int64),
                "hidden_single": h1.numpy().astype(np.float32),
                "logits_single": lg1.numpy().astype(np.float32),
            },
            os.path.join(d, "expected.safetensors"),
            metadata=meta,
        )
        print(kind, "rope", rp, "hidden", tuple(h.shape), "logits", tuple(lg.shape))

        if kind == "llama":
            m64 = model.double()
            x = m64.model.embed_tokens(ids[:1]).detach().clone().requires_grad_(True)
            out = m64.model(inputs_embeds=x).last_hidden_state
            loss = out[0, -1].norm()
            loss.backward()
            save_file(
                {
                    "inputs_embeds": x.detach().numpy().astype(np.float64),
                    "loss": np.asarray(loss.item(), dtype=np.float64),
                    "grad_inputs_embeds": x.grad.numpy().astype(np.float64),
                },
                os.path.join(d, "grad.safetensors"),
                metadata={
                    "loss": "L2 norm of model.model(inputs_embeds=x).last_hidden_state[0, -1], model in f64",
                    "inputs_embeds": "embed_tokens(ids_single) of expected.safetensors",
                    "transformers": transformers.__version__,
                    "torch": torch.__version__.split("+")[0],
                },
            )
            print("llama grad: loss", loss.item(), "grad norm", x.grad.norm().item())


if __name__ == "__main__":
    main()
