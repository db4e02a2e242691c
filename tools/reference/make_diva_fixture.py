#!/usr/bin/env python3
"""Write tests/fixtures/diva/: a tiny DiVA model (official layout) and its PyTorch reference outputs.

Pieces (CPU, eval mode, eager attention, torch.manual_seed(0)):
  whisper   tests/fixtures/hf-whisper-random/model   (WhisperForConditionalGeneration, d 64, 2+2 layers)
  llm       tests/fixtures/llm/llama_tiny/model       (LlamaForCausalLM, hidden 64, vocab 128, no tokenizer)
  query_tokens  [16,64] = 0.02 * N(0,1)                (seeded, first draw after manual_seed(0))
  projection    nn.Linear(64, 64), torch default init  (second draw)
  connector     copy.deepcopy(whisper.model.decoder), then every parameter += 0.01 * N(0,1)
                (third draw, in named_parameters() order) so that the connector differs from the
                reference Whisper decoder, as a trained one would; a loader that takes the decoder
                from the Whisper model instead of the checkpoint fails the fixture.

Forward (the HF modeling_diva WhisperConnector.forward):
  enc  = whisper.model.encoder(mel).last_hidden_state                                  [B,1500,64]
  virt = projection(connector(inputs_embeds=query_tokens[None].expand(B), encoder_hidden_states=enc)
                    .last_hidden_state)                                                [B,16,64]
  HF's WhisperDecoder.forward adds embed_positions.weight[0..N-1] to inputs_embeds itself (and no
  embed_scale on that path), so the first decoder layer sees query_tokens + embed_positions[:N]; the
  checkpoint stores the raw query_tokens (positions NOT folded in). Causal self-attention, cross-
  attention over enc, final layer_norm.

Prompt (llama_tiny has no tokenizer, so fixed ids): prefix [1,5,6,7], suffix [8,9,10].
  student = cat(E(prefix), virt, E(suffix))          length 4+16+3 = 23
  teacher = cat(E(prefix), E(transcript), E(suffix))
  h = llama.model(inputs_embeds=..., attention_mask=...).last_hidden_state (after the final norm)

Losses (unsquared L2, summed):
  distill = ||h_student[-1] - h_teacher[last non-pad]||_2
  align   = mean_{i<T} ||virt[N-T+i] - E(transcript[i])||_2,   T = len(transcript)
  total   = distill + align
Batch (B=2): ex0 = (mel, transcript [20..24]), ex1 = (mel2, transcript [30,31,32]). Student inputs all
have length 23 (no padding). Teacher inputs right-padded with the LLM pad id 0 to the longest (12),
attention_mask 1 on real tokens and 0 on pads, position ids 0..L-1 (HF default); the teacher
hidden state used for ex b is at index sum(attention_mask[b]) - 1. Batch loss = mean over examples
of (distill_b + align_b), each align_b over its own T_b.

Gradients: everything converted to float64 (Llama's internal f32 casts removed, see patch_llama_true_f64) (encoder input = the f16 mel cast to f64), d total / d
query_tokens, connector.layers.0.self_attn.q_proj.weight, projection.weight (the last one in the
checkpoint layout [d_w, d_llm], i.e. transposed vs torch).

Usage: $V tools/reference/make_diva_fixture.py [--out tests/fixtures/diva]
(reads hf-whisper-random/ and llm/llama_tiny/ next to --out, i.e. from the same fixture tree)
"""
import argparse
import copy
import json
import os
import sys

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from st_util import save_file  # noqa: E402

import transformers  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from transformers import LlamaForCausalLM, WhisperForConditionalGeneration  # noqa: E402

N_QUERY = 16
PREFIX = [1, 5, 6, 7]
SUFFIX = [8, 9, 10]
TRANSCRIPT = [20, 21, 22, 23, 24]
TRANSCRIPT2 = [30, 31, 32]
PAD_ID = 0  # llama_tiny config pad_token_id
SEED = 0
SEED_MEL2 = 4321
CONNECTOR_NOISE = 0.01

# inputs, relative to the fixture tree (the parent of --out); also the config.json reference_* paths
WHISPER_REL = "hf-whisper-random/model"
WHISPER_EXPECTED_REL = "hf-whisper-random/expected.safetensors"
LLAMA_REL = "llm/llama_tiny/model"


def connector_forward(connector, projection, query_tokens, enc):
    b = enc.shape[0]
    q = query_tokens[None, :, :].expand(b, -1, -1)
    out = connector(inputs_embeds=q, encoder_hidden_states=enc, use_cache=False).last_hidden_state
    return projection(out)


def losses(llama, virt, transcripts):
    """Per-example distill/align losses for a batch; returns dict of tensors."""
    emb = llama.model.embed_tokens
    dev = virt.device
    b, n, _ = virt.shape
    pre = emb(torch.tensor(PREFIX, device=dev))
    suf = emb(torch.tensor(SUFFIX, device=dev))
    student = torch.cat([pre[None].expand(b, -1, -1), virt, suf[None].expand(b, -1, -1)], dim=1)
    h_s = llama.model(inputs_embeds=student, attention_mask=torch.ones(student.shape[:2], dtype=torch.long)).last_hidden_state

    lens = [len(PREFIX) + len(t) + len(SUFFIX) for t in transcripts]
    lmax = max(lens)
    ids = torch.full((b, lmax), PAD_ID, dtype=torch.long)
    mask = torch.zeros((b, lmax), dtype=torch.long)
    for i, t in enumerate(transcripts):
        row = PREFIX + list(t) + SUFFIX
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    teacher = emb(ids)
    h_t = llama.model(inputs_embeds=teacher, attention_mask=mask).last_hidden_state
    last = mask.sum(dim=1) - 1

    distill, align = [], []
    for i, t in enumerate(transcripts):
        distill.append(torch.linalg.vector_norm(h_s[i, -1] - h_t[i, last[i]]))
        T = len(t)
        e = emb(torch.tensor(t))
        align.append(torch.linalg.vector_norm(virt[i, n - T:] - e, dim=-1).mean())
    distill = torch.stack(distill)
    align = torch.stack(align)
    logits_last = llama.lm_head(h_s[:, -1])
    return dict(h_s=h_s, h_t=h_t, ids=ids, mask=mask, distill=distill, align=align,
                total=distill + align, logits_last=logits_last)


def patch_llama_true_f64():
    """HF Llama computes RMSNorm and the attention softmax in float32 and RoPE cos/sin in float32
    even when the model is .double(); that makes a "float64" gradient only f32-accurate (central
    differences disagree at 1e-2 relative). For the f64 gradient fixture only, replace those three
    with dtype-preserving versions (same formulas; inv_freq keeps HF's f32-computed values, widened)."""
    from transformers.models.llama import modeling_llama as ml

    def rms_forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))

    def rope_forward(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * self.inv_freq.to(device=x.device, dtype=torch.float64)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        k = ml.repeat_kv(key, module.num_key_value_groups)
        v = ml.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = nn.functional.softmax(w, dim=-1)
        return torch.matmul(w, v).transpose(1, 2).contiguous(), w

    ml.LlamaRMSNorm.forward = rms_forward
    ml.LlamaRotaryEmbedding.forward = rope_forward
    ml.eager_attention_forward = eager


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/diva"),
                    help="output dir; its parent must hold hf-whisper-random/ and llm/llama_tiny/")
    args = ap.parse_args()
    fx = os.path.dirname(os.path.abspath(args.out))
    WHISPER_DIR = os.path.join(fx, WHISPER_REL)
    WHISPER_EXPECTED = os.path.join(fx, WHISPER_EXPECTED_REL)
    LLAMA_DIR = os.path.join(fx, LLAMA_REL)
    torch.set_grad_enabled(False)

    whisper = WhisperForConditionalGeneration.from_pretrained(WHISPER_DIR, attn_implementation="eager", dtype=torch.float32).eval()
    llama = LlamaForCausalLM.from_pretrained(LLAMA_DIR, attn_implementation="eager", dtype=torch.float32).eval()
    d_w = whisper.config.d_model
    d_llm = llama.config.hidden_size

    torch.manual_seed(SEED)
    query_tokens = nn.Parameter(torch.randn(N_QUERY, d_w) * 0.02)
    projection = nn.Linear(d_w, d_llm)
    connector = copy.deepcopy(whisper.model.decoder).eval()
    for _, p in connector.named_parameters():
        p.add_(torch.randn_like(p) * CONNECTOR_NOISE)
    connector.config._attn_implementation = "eager"

    mel16 = load_file(WHISPER_EXPECTED)["mel"]  # f16 [1,80,3000]
    mel2_16 = np.random.default_rng(SEED_MEL2).standard_normal((1, 80, 3000)).astype(np.float16)
    mel = torch.from_numpy(mel16.astype(np.float32))
    mel2 = torch.from_numpy(mel2_16.astype(np.float32))

    # ---- single example, f32
    enc = whisper.model.encoder(mel).last_hidden_state
    virt = connector_forward(connector, projection, query_tokens, enc)
    # the positional convention, checked: HF adds embed_positions[:N] to inputs_embeds exactly once
    seen = {}
    def grab(m, a, kw):
        seen["x"] = (a[0] if a else kw["hidden_states"]).clone()

    h = connector.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    connector(inputs_embeds=query_tokens[None], encoder_hidden_states=enc, use_cache=False)
    h.remove()
    pos_ok = torch.equal(seen["x"][0], query_tokens + connector.embed_positions.weight[:N_QUERY])
    assert pos_ok, "WhisperDecoder did not add embed_positions[:N] to inputs_embeds"
    r = losses(llama, virt, [TRANSCRIPT])

    # ---- batch of 2, f32
    enc_b = whisper.model.encoder(torch.cat([mel, mel2])).last_hidden_state
    virt_b = connector_forward(connector, projection, query_tokens, enc_b)
    rb = losses(llama, virt_b, [TRANSCRIPT, TRANSCRIPT2])
    assert torch.allclose(virt_b[0], virt[0], atol=1e-5)
    assert torch.allclose(rb["distill"][0], r["distill"][0], atol=1e-5)

    # ---- checkpoint in the official layout
    ckpt_dir = os.path.join(args.out, "checkpoint")
    os.makedirs(ckpt_dir, exist_ok=True)
    sd = {"query_tokens": query_tokens.detach().numpy().copy(),
          "projection.weight": projection.weight.detach().T.contiguous().numpy().copy(),
          "projection.bias": projection.bias.detach().numpy().copy()}
    for k, v in connector.state_dict().items():
        sd["connector." + k] = v.detach().contiguous().numpy().copy()
    save_file(sd, os.path.join(ckpt_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["DiVAModel"],
        "model_type": "diva",
        "reference_encoder": os.path.relpath(WHISPER_DIR, ckpt_dir),
        "reference_decoder": os.path.relpath(LLAMA_DIR, ckpt_dir),
        "num_query_tokens": N_QUERY,
        "d_whisper": d_w,
        "d_llm": d_llm,
        "prompt_prefix_ids": PREFIX,
        "prompt_suffix_ids": SUFFIX,
        "note": "reference_* are paths relative to this directory. num_query_tokens/d_*/prompt_*_ids are "
                "fixture extras (the official config.json has only reference_encoder/reference_decoder; "
                "official prompts come from the chat template, but llama_tiny has no tokenizer).",
    }
    with open(os.path.join(ckpt_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")

    # ---- expected (f32)
    def f(t):
        return t.detach().contiguous().numpy().astype(np.float32).copy()

    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "seed": str(SEED),
        "init": "manual_seed(0); query_tokens = 0.02*randn(16,64); projection = nn.Linear(64,64) default init; "
                "connector = deepcopy(whisper.model.decoder) then each param (named_parameters order) += 0.01*randn_like",
        "mel": "= hf-whisper-random/expected.safetensors mel (f16, N(0,1) seed 1234); outputs from it cast to f32",
        "mel2": "numpy default_rng(4321).standard_normal((1,80,3000)) rounded to f16 (batch example 1)",
        "positional_convention": "connector(inputs_embeds=query_tokens): HF WhisperDecoder adds embed_positions.weight[0..N-1] "
                                 "internally (once, no embed_scale); checkpoint query_tokens are raw (positions not folded in)",
        "prefix_ids": json.dumps(PREFIX),
        "suffix_ids": json.dumps(SUFFIX),
        "transcript_ids": json.dumps(TRANSCRIPT),
        "transcript2_ids": json.dumps(TRANSCRIPT2),
        "student_layout": "cat(E(prefix), virtual_tokens, E(suffix)), length 23, attention all ones",
        "teacher_layout": "cat(E(prefix), E(transcript), E(suffix)); batch right-padded with id 0, attention_mask 0 on pads, "
                          "position ids 0..L-1; teacher state taken at index sum(mask)-1",
        "losses": "distill = ||h_s[-1] - h_t[last non-pad]||2; align = mean over i<T of ||virt[N-T+i] - E(t_i)||2; total = distill + align; "
                  "batch_total_loss = mean_b(distill_b + align_b); scalars stored as shape [1]",
        "hidden": "llama.model(...).last_hidden_state, after the final RMSNorm",
        "attn_implementation": "eager",
    }
    exp = {
        "mel": mel16,
        "mel2": mel2_16,
        "encoder_out": f(enc),
        "virtual_tokens": f(virt),
        "student_hidden": f(r["h_s"]),
        "teacher_hidden": f(r["h_t"]),
        "teacher_ids": r["ids"].numpy().astype(np.int64),
        "student_last_logits": f(r["logits_last"]),
        "distill_loss": f(r["distill"]),
        "align_loss": f(r["align"]),
        "total_loss": f(r["total"]),
        "batch_virtual_tokens": f(virt_b),
        "batch_student_hidden": f(rb["h_s"]),
        "batch_teacher_hidden": f(rb["h_t"]),
        "batch_teacher_ids": rb["ids"].numpy().astype(np.int64),
        "batch_teacher_mask": rb["mask"].numpy().astype(np.int64),
        "batch_distill_loss": f(rb["distill"]),
        "batch_align_loss": f(rb["align"]),
        "batch_total_loss": f(rb["total"].mean().reshape(1)),
    }
    save_file(exp, os.path.join(args.out, "expected.safetensors"), metadata=meta)

    # ---- gradients in float64 (true f64: see patch_llama_true_f64)
    patch_llama_true_f64()
    whisper.double()
    llama.double()
    connector.double()
    projection.double()
    q64 = nn.Parameter(query_tokens.detach().double())
    with torch.enable_grad():
        enc64 = whisper.model.encoder(torch.from_numpy(mel16.astype(np.float64))).last_hidden_state.detach()
        virt64 = connector_forward(connector, projection, q64, enc64)
        r64 = losses(llama, virt64, [TRANSCRIPT])
        qw = connector.layers[0].self_attn.q_proj.weight
        g_q, g_qw, g_pw = torch.autograd.grad(r64["total"][0], [q64, qw, projection.weight])
    grads = {
        "query_tokens": g_q.numpy().copy(),
        "connector.layers.0.self_attn.q_proj.weight": g_qw.numpy().copy(),
        "projection.weight": g_pw.T.contiguous().numpy().copy(),
        "total_loss": r64["total"].detach().numpy().copy(),
        "distill_loss": r64["distill"].detach().numpy().copy(),
        "align_loss": r64["align"].detach().numpy().copy(),
    }
    gmeta = {
        "dtype": "float64 throughout (f16 mel -> f64, all weights .double()); Llama RMSNorm, attention softmax and RoPE cos/sin "
                 "patched to stay in f64 (HF casts them to f32), RoPE inv_freq = HF's f32 values widened; Whisper has no such casts",
        "loss": "total_loss of the single example (distill + align), shape [1]",
        "layouts": "query_tokens [16,64]; connector q_proj.weight torch [out,in]; projection.weight in the checkpoint layout "
                   "[d_w, d_llm] (transpose of the torch Linear weight gradient)",
    }
    save_file(grads, os.path.join(args.out, "grad.safetensors"), metadata=gmeta)

    # ---- strict round trip of the written checkpoint (same check as for diva-written ones)
    import check_diva_checkpoint
    rc = check_diva_checkpoint.main([ckpt_dir, "--expected", os.path.join(args.out, "expected.safetensors"), "--atol", "0"])
    assert rc == 0, "checkpoint round trip failed"

    print("distill %.6f align %.6f total %.6f" % (r["distill"][0], r["align"][0], r["total"][0]))
    print("batch distill", rb["distill"].tolist(), "align", rb["align"].tolist(), "mean", float(rb["total"].mean()))
    print("f64 total %.12f" % float(r64["total"][0]))
    print("positions added once by WhisperDecoder:", pos_ok)


if __name__ == "__main__":
    main()
