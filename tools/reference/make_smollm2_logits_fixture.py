#!/usr/bin/env python3
"""SmolLM2-135M-Instruct logits parity fixture (tests/fixtures/llm/smollm2_logits.safetensors).

Model: AutoModelForCausalLM.from_pretrained(dir, gguf_file="model.gguf", dtype=torch.float32)
(transformers dequantizes the Q4_1 GGUF to f32), eval mode, eager attention, CPU.
Tokenizer: AutoTokenizer.from_pretrained(dir, gguf_file=...) (add_bos_token is False).

Tensors (i = a, b, c):
  ids_{i}          i64 [T]      prompt ids (tok(prompt, add_special_tokens=False))
  hidden_{i}       f32 [T,576]  model.model(ids).last_hidden_state (after the final RMSNorm)
  last_logits_{i}  f32 [49152]  model(ids).logits[0, -1]
  greedy_a         i64 [20]     20 steps of argmax(model(seq).logits[0,-1]) appended to seq (no KV cache),
                                NOT stopping at EOS; model.generate(do_sample=False, max_new_tokens=20)
                                (which stops at EOS <|im_end|>=2) agrees with it up to its length
Metadata: prompts (JSON), greedy text, versions, config values transformers used (JSON).

Usage: make_smollm2_logits_fixture.py --gguf PATH [--out FILE]
"""
import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import save_file  # noqa: E402

PROMPT_B = "The quick brown fox jumps over the lazy dog."
PROMPT_C = (
    "Speech recognition systems convert spoken language into text. Modern systems use neural "
    "networks trained on thousands of hours of audio. A voice assistant then passes the text to a "
    "language model, which writes an answer. Distilled voice assistants skip the transcript and feed "
    "audio features straight into the language model, keeping tone and emphasis."
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", default="tests/fixtures/llm/smollm2_logits.safetensors")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    path = os.path.abspath(os.path.expanduser(args.gguf))
    d, name = os.path.split(path)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cfg = model.config

    prompt_a = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    prompts = {"a": prompt_a, "b": PROMPT_B, "c": PROMPT_C}
    tensors = {}
    with torch.no_grad():
        for k, p in prompts.items():
            ids = torch.tensor([tok(p, add_special_tokens=False).input_ids], dtype=torch.long)
            h = model.model(input_ids=ids).last_hidden_state
            logits = model(input_ids=ids).logits
            # the lm_head applied to the hidden state must give the same logits
            assert torch.allclose(model.lm_head(h), logits, atol=1e-4)
            tensors[f"ids_{k}"] = ids[0].numpy().astype(np.int64)
            tensors[f"hidden_{k}"] = h[0].numpy().astype(np.float32)
            tensors[f"last_logits_{k}"] = logits[0, -1].numpy().astype(np.float32)
        ids_a = torch.from_numpy(tensors["ids_a"])[None]
        gen = model.generate(
            ids_a, attention_mask=torch.ones_like(ids_a), do_sample=False, max_new_tokens=20,
            pad_token_id=tok.pad_token_id,
        )
        gen_list = gen[0, ids_a.shape[1]:].tolist()
        # greedy_a: plain argmax loop over the full sequence (no KV cache), 20 steps, not stopping at EOS
        seq = ids_a
        manual = []
        for _ in range(20):
            nxt = int(model(input_ids=seq).logits[0, -1].argmax())
            manual.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    greedy_list = manual
    # generate() (KV cache) stops at the first EOS; up to there it must agree with the argmax loop
    assert gen_list == manual[: len(gen_list)], (gen_list, manual)
    tensors["greedy_a"] = np.asarray(greedy_list, dtype=np.int64)
    text = tok.decode(greedy_list, skip_special_tokens=False)

    cfg_used = {
        k: getattr(cfg, k, None)
        for k in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
                  "rms_norm_eps", "tie_word_embeddings", "hidden_act", "attention_bias", "mlp_bias",
                  "bos_token_id", "eos_token_id", "pad_token_id")
    }
    cfg_used["rope_parameters"] = getattr(cfg, "rope_parameters", None)
    cfg_used["rope_theta"] = (cfg_used["rope_parameters"] or {}).get("rope_theta", getattr(cfg, "rope_theta", None))
    cfg_used["lm_head_is_embed_tokens"] = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    cfg_used["lm_head_equals_embed_tokens"] = bool(torch.equal(model.lm_head.weight, model.model.embed_tokens.weight))

    meta = {
        "source": f"{name} (SmolLM2-135M-Instruct.Q4_1.gguf) sha256 {sha}, dequantized to f32 by transformers",
        "prompts": json.dumps(prompts, ensure_ascii=False),
        "greedy_a_text": text,
        "greedy_a_generate_text": tok.decode(gen_list, skip_special_tokens=False),
        "greedy_a_generate_len": str(len(gen_list)),
        "config": json.dumps(cfg_used, sort_keys=True),
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "attn_implementation": "eager",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    print("greedy_a:", greedy_list, repr(text))
    print({k: v.shape for k, v in tensors.items()})
    print(json.dumps(cfg_used))


if __name__ == "__main__":
    main()
