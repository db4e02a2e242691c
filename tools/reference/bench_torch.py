#!/usr/bin/env python3
"""PyTorch side of the diva-vs-torch benchmark: one DiVA training step and DiVA chat (TTFT, decode),
written the way the official code does it (HF transformers modules, random weights from configs).

Model (random weights, torch.manual_seed(0); nothing is downloaded):
  encoder    transformers WhisperEncoder          frozen, requires_grad False, forward under no_grad
  connector  transformers WhisperDecoder           trainable; inputs_embeds = query_tokens broadcast
             over the batch, encoder_hidden_states = encoder output; causal self-attn; final layer_norm
  queries    nn.Parameter [N, d_whisper] = 0.02*randn + connector.embed_positions[:N] (the trainer's
             init; HF's WhisperDecoder adds embed_positions again in its forward, as in the official code)
  projection nn.Linear(d_whisper, d_llm)           trainable
  llm        transformers LlamaForCausalLM         frozen; .model (LlamaModel) for training
  prompt     cat(E(prefix ids), virtual tokens, E(suffix ids))

Shapes:
  tiny   Whisper tiny.en (d 384, 4+4 layers, 6 heads, ffn 1536, 80 mels, vocab 51864, 448 target
         positions) + SmolLM2-135M-Instruct (576, 30 layers, 9 heads / 3 kv, ffn 1536, vocab 49152,
         rope 1e5, rms eps 1e-5, tied embeddings); default N 64. Prompt = SmolLM2's ChatML split:
         prefix '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging
         Face<|im_end|>\\n<|im_start|>user\\n' = 24 ids, suffix '<|im_end|>\\n<|im_start|>assistant\\n'
         = 6 ids (the ids below are what SmolLM2's tokenizer gives; the tokenizer is not loaded here).
  paper  whisper-large-v3 (d 1280, 32+32 layers, 20 heads, ffn 5120, 128 mels, vocab 51866) +
         Llama-3-8B-Instruct (4096, 32 layers, 32 heads / 8 kv, ffn 14336, vocab 128256, rope 5e5);
         N 448; Llama 3 prefix/suffix ids (5 + 5). GPU only (refused on CPU unless --force).
  --prefix-len/--suffix-len override the lengths (ids cut, or extended with arbitrary ids).

train: one optimizer step of the official trainer logic on B synthetic 30 s windows (log-mel [B, mels,
  3000] ~ N(0,1)): encoder (no_grad) -> connector -> projection -> LlamaModel(inputs_embeds) -> final-
  norm hidden state at the last position; loss = mean_b(||h_b - teacher_b||_2 + mean over the last T
  virtual tokens of ||v_i - E(t_i)||_2) with random cached teacher targets (no teacher forward);
  backward; AdamW(lr 5e-5, wd 0.1) on queries + connector + projection. Phases (synchronized on
  CUDA): encoder / connector_fwd / llm_fwd (incl. losses) / backward / optimizer; median over
  --repeat steps after one warm-up step. samples_per_s = B / step; samples_per_s_cached_encoder =
  B / (step - encoder) (diva caches encoder states during training).
  CPU: float32 throughout. CUDA: trainable parameters in f32 (master weights) under
  torch.autocast(--dtype), frozen encoder/LLM stored in --dtype.
ttft/decode: chat on one clip, 5 s and 30 s of audio (both become one 30 s window): WhisperFeature-
  Extractor (numpy, CPU, as the HF processor) -> encoder -> connector -> projection -> LLM prefill of
  prefix+N+suffix with a DynamicCache -> argmax -> .item() (= time to first token); then
  --gen-tokens greedy steps, one token each with the KV cache, argmax -> .item() every step (the
  host-synced loop of the official generate). For chat, all weights are cast to --dtype (the official
  inference runs the whole model in half precision) and run under inference_mode.

Output: a table on stderr and one JSON object (every number + shape/batch/threads/device/dtype/versions)
to --json OUT (or stdout when --json is not given / is '-').

Usage: $V tools/reference/bench_torch.py --shape tiny --batch 2 --num-queries 32 --repeat 2 --json out.json
"""
import argparse
import contextlib
import inspect
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import transformers  # noqa: E402
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, WhisperConfig, WhisperFeatureExtractor  # noqa: E402
from transformers.models.whisper.modeling_whisper import WhisperDecoder, WhisperEncoder  # noqa: E402

# SmolLM2-135M-Instruct tokenizer output for the ChatML split (system prompt of its chat template).
SMOL_PREFIX = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
               19712, 8182, 2, 198, 1, 4093, 198]
SMOL_SUFFIX = [2, 198, 1, 520, 9531, 198]
# Llama 3 (REFERENCE.md)
LLAMA3_PREFIX = [128000, 128006, 882, 128007, 271]
LLAMA3_SUFFIX = [128009, 128006, 78191, 128007, 271]

SHAPES = {
    "tiny": dict(
        whisper=dict(vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4,
                     encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
                     decoder_ffn_dim=1536, max_source_positions=1500, max_target_positions=448),
        llm=dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, intermediate_size=1536, rms_norm_eps=1e-5, tie_word_embeddings=True,
                 max_position_embeddings=8192, head_dim=64, bos_token_id=1, eos_token_id=2, pad_token_id=2),
        rope_theta=100000.0, num_queries=64, prefix=SMOL_PREFIX, suffix=SMOL_SUFFIX,
        names="whisper tiny.en dims + SmolLM2-135M-Instruct dims"),
    "paper": dict(
        whisper=dict(vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32, decoder_layers=32,
                     encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120,
                     decoder_ffn_dim=5120, max_source_positions=1500, max_target_positions=448),
        llm=dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, intermediate_size=14336, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 max_position_embeddings=8192, head_dim=128, bos_token_id=128000, eos_token_id=128009),
        rope_theta=500000.0, num_queries=448, prefix=LLAMA3_PREFIX, suffix=LLAMA3_SUFFIX,
        names="whisper-large-v3 dims + Llama-3-8B-Instruct dims"),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fit_ids(ids, n, vocab, salt):
    """ids cut to n, or extended with arbitrary (deterministic) ids."""
    ids = list(ids[:n])
    i = 0
    while len(ids) < n:
        ids.append(1000 + (salt * 7919 + 31 * i) % (vocab - 2000))
        i += 1
    return ids


def llama_config(spec, attn):
    kw = dict(spec["llm"])
    if "rope_parameters" in inspect.signature(LlamaConfig.__init__).parameters:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": spec["rope_theta"]}
    else:
        kw["rope_theta"] = spec["rope_theta"]
    cfg = LlamaConfig(**kw)
    cfg._attn_implementation = attn
    return cfg


@contextlib.contextmanager
def default_dtype(dt):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def cache_kw(model):
    """transformers renamed past_key_values -> cache; use whichever forward takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Timer:
    def __init__(self, dev):
        self.cuda = dev.type == "cuda"
        self.t = None

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def start(self):
        self.sync()
        self.t = time.perf_counter()

    def lap(self):
        self.sync()
        now = time.perf_counter()
        d, self.t = now - self.t, now
        return d


def med_ms(v):
    return statistics.median(v) * 1e3 if v else float("nan")


def chirp(seconds, f0=300.0):
    t = np.arange(int(seconds * 16000), dtype=np.float64) / 16000.0
    return (0.3 * np.sin(2 * np.pi * (f0 + 200.0 * t) * t)).astype(np.float32)


def build(spec, args, dev, frozen_dt):
    wcfg = WhisperConfig(**spec["whisper"])
    wcfg._attn_implementation = args.attn
    lcfg = llama_config(spec, args.attn)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(dev):
        with default_dtype(frozen_dt):
            encoder = WhisperEncoder(wcfg).eval()
            llm = LlamaForCausalLM(lcfg).eval()
        # trainable parts in f32 (master weights)
        connector = WhisperDecoder(wcfg).train()
        projection = nn.Linear(wcfg.d_model, lcfg.hidden_size)
    for p in list(encoder.parameters()) + list(llm.parameters()):
        p.requires_grad_(False)
    n = args.num_queries
    if n > wcfg.max_target_positions:
        sys.exit(f"--num-queries {n} > max_target_positions {wcfg.max_target_positions}")
    with torch.no_grad():
        q0 = torch.randn(n, wcfg.d_model, device=dev) * 0.02 + connector.embed_positions.weight[:n].float()
    queries = nn.Parameter(q0.contiguous())
    return wcfg, lcfg, encoder, connector, projection, queries, llm, time.perf_counter() - t0


def nparams(*mods):
    return sum(p.numel() for m in mods for p in (m.parameters() if isinstance(m, nn.Module) else [m]))


def connector_fwd(connector, projection, queries, enc):
    b = enc.shape[0]
    q = queries[None].expand(b, -1, -1)
    out = connector(inputs_embeds=q, encoder_hidden_states=enc, use_cache=False).last_hidden_state
    return projection(out)


def bench_train(args, M, dev, autocast):
    wcfg, lcfg, encoder, connector, projection, queries, llm = M
    b, n, T = args.batch, args.num_queries, args.transcript_tokens
    g = torch.Generator(device="cpu").manual_seed(1)
    mel = torch.randn(b, wcfg.num_mel_bins, 3000, generator=g).to(dev)
    teacher = torch.randn(b, lcfg.hidden_size, generator=g).to(dev)  # cached teacher targets (f32)
    trans = torch.tensor([[1000 + i for i in range(T)]] * b, device=dev)
    emb = llm.model.embed_tokens
    pre_ids = torch.tensor(args.prefix_ids, device=dev)
    suf_ids = torch.tensor(args.suffix_ids, device=dev)
    params = [queries] + list(connector.parameters()) + list(projection.parameters())
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.1)
    tm = Timer(dev)
    phases = ["encoder", "connector_fwd", "llm_fwd", "backward", "optimizer"]
    times = {p: [] for p in phases}
    losses = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for rep in range(args.warmup + args.repeat):
        lap = {}
        tm.start()
        with torch.no_grad(), autocast():
            enc = encoder(mel).last_hidden_state
        lap["encoder"] = tm.lap()
        with autocast():
            virt = connector_fwd(connector, projection, queries, enc)
        lap["connector_fwd"] = tm.lap()
        with autocast():
            pre = emb(pre_ids)[None].expand(b, -1, -1)
            suf = emb(suf_ids)[None].expand(b, -1, -1)
            x = torch.cat([pre.to(virt.dtype), virt, suf.to(virt.dtype)], dim=1)
            h = llm.model(inputs_embeds=x, use_cache=False).last_hidden_state[:, -1]
            distill = torch.linalg.vector_norm(h.float() - teacher, dim=-1)
            e = emb(trans).float()
            align = torch.linalg.vector_norm(virt[:, n - T:].float() - e, dim=-1).mean(-1)
            loss = (distill + align).mean()
        lv = loss.item()
        lap["llm_fwd"] = tm.lap()
        loss.backward()
        lap["backward"] = tm.lap()
        opt.step()
        opt.zero_grad(set_to_none=True)
        lap["optimizer"] = tm.lap()
        if rep >= args.warmup:
            for p in phases:
                times[p].append(lap[p])
            losses.append(lv)
    ms = {p: med_ms(times[p]) for p in phases}
    step = sum(ms.values())
    cached = step - ms["encoder"]
    r = {f"{p}_ms": ms[p] for p in phases}
    r.update(step_ms=step, step_cached_encoder_ms=cached,
             samples_per_s=b / (step / 1e3), samples_per_s_cached_encoder=b / (cached / 1e3),
             loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
             llm_sequence=len(args.prefix_ids) + n + len(args.suffix_ids), batch=b, num_queries=n,
             transcript_tokens=T, raw_s={p: times[p] for p in phases})
    if dev.type == "cuda":
        r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del opt
    return r


def bench_chat(args, M, dev, chat_dt, want_decode):
    wcfg, lcfg, encoder, connector, projection, queries, llm = M
    for m in (encoder, connector, projection, llm):
        m.to(chat_dt).eval()
    q = queries.detach().to(chat_dt)
    fe = WhisperFeatureExtractor(feature_size=wcfg.num_mel_bins)
    emb = llm.get_input_embeddings()
    pre_ids = torch.tensor(args.prefix_ids, device=dev)
    suf_ids = torch.tensor(args.suffix_ids, device=dev)
    ckw = cache_kw(llm)
    tm = Timer(dev)
    gen = args.gen_tokens if want_decode else 0
    out = {}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for secs in (5, 30):
        pcm = chirp(secs)
        ph = {k: [] for k in ("mel", "encoder", "connector", "prefill", "ttft", "decode")}
        toks = None
        for rep in range(args.warmup + args.repeat):
            lap = {}
            with torch.inference_mode():
                tm.start()
                feats = fe(pcm, sampling_rate=16000, return_tensors="pt").input_features
                feats = feats.to(dev, chat_dt)
                lap["mel"] = tm.lap()
                enc = encoder(feats).last_hidden_state
                lap["encoder"] = tm.lap()
                virt = connector_fwd(connector, projection, q, enc)
                lap["connector"] = tm.lap()
                x = torch.cat([emb(pre_ids)[None], virt, emb(suf_ids)[None]], dim=1)
                cache = DynamicCache(config=llm.config)
                o = llm(inputs_embeds=x, use_cache=True, **{ckw: cache})
                tok = torch.argmax(o.logits[0, -1]).item()
                lap["prefill"] = tm.lap()
                lap["ttft"] = sum(lap[k] for k in ("mel", "encoder", "connector", "prefill"))
                seq = [tok]
                if gen and secs == 30:
                    cache = o.past_key_values if getattr(o, "past_key_values", None) is not None else cache
                    for _ in range(gen):
                        o = llm(input_ids=torch.tensor([[tok]], device=dev), use_cache=True, **{ckw: cache})
                        if getattr(o, "past_key_values", None) is not None:
                            cache = o.past_key_values
                        tok = torch.argmax(o.logits[0, -1]).item()  # host sync every step
                        seq.append(tok)
                    lap["decode"] = tm.lap()
            if rep >= args.warmup:
                for k, v in lap.items():
                    ph[k].append(v)
                toks = seq
        tag = f"{secs}s"
        for k in ("mel", "encoder", "connector", "prefill"):
            out[f"chat_{k}_ms_{tag}"] = med_ms(ph[k])
        out[f"ttft_ms_{tag}"] = med_ms(ph["ttft"])
        if ph["decode"]:
            d = statistics.median(ph["decode"])
            out["decode_ms"] = d * 1e3
            out["decode_tok_s"] = gen / d
            out["gen_tokens"] = gen
            out["decode_tokens_head"] = toks[:8]
    out["ttft_ms"] = out["ttft_ms_30s"]
    out["chat_llm_sequence"] = len(args.prefix_ids) + args.num_queries + len(args.suffix_ids)
    if dev.type == "cuda":
        out["chat_peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--num-queries", type=int, default=None, help="default: 64 (tiny), 448 (paper)")
    ap.add_argument("--transcript-tokens", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: f32 (cpu), bf16 (cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--what", default="train,ttft,decode")
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--prefix-len", type=int, default=None)
    ap.add_argument("--suffix-len", type=int, default=None)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--json", default=None, help="output file ('-' or absent: stdout)")
    ap.add_argument("--force", action="store_true", help="allow the paper shape on CPU")
    args = ap.parse_args()

    spec = SHAPES[args.shape]
    what = {w.strip() for w in args.what.split(",") if w.strip()}
    bad = what - {"train", "ttft", "decode"}
    if bad:
        sys.exit(f"--what: unknown {sorted(bad)} (train, ttft, decode)")
    if args.device == "cpu" and args.shape == "paper" and not args.force:
        sys.exit("refusing --shape paper on CPU: Llama-3-8B + whisper-large-v3 need ~40 GB in f32 and this is a "
                 "GPU benchmark (use --device cuda, or --force)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False")
    dtype_name = args.dtype or ("f32" if args.device == "cpu" else "bf16")
    dt = DTYPES[dtype_name]
    if args.device == "cpu" and dt != torch.float32:
        log(f"warning: --dtype {dtype_name} on CPU (the CPU reference is float32)")
    if args.num_queries is None:
        args.num_queries = spec["num_queries"]
    if args.transcript_tokens > args.num_queries:
        sys.exit("--transcript-tokens must be <= --num-queries")
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = spec["llm"]["vocab_size"]
    args.prefix_ids = fit_ids(spec["prefix"], args.prefix_len if args.prefix_len is not None else len(spec["prefix"]), vocab, 1)
    args.suffix_ids = fit_ids(spec["suffix"], args.suffix_len if args.suffix_len is not None else len(spec["suffix"]), vocab, 2)
    dev = torch.device(args.device)

    frozen_dt = torch.float32 if dev.type == "cpu" else dt
    if dev.type == "cuda" and dt != torch.float32:
        def autocast():
            return torch.autocast("cuda", dtype=dt)
    elif dev.type == "cpu" and dt != torch.float32:
        def autocast():
            return torch.autocast("cpu", dtype=dt)
    else:
        autocast = contextlib.nullcontext

    log(f"bench_torch: shape {args.shape} ({spec['names']}), device {args.device}, dtype {dtype_name}, "
        f"threads {torch.get_num_threads()}, batch {args.batch}, N {args.num_queries}, "
        f"prefix {len(args.prefix_ids)} + suffix {len(args.suffix_ids)} ids, attn {args.attn}")
    wcfg, lcfg, encoder, connector, projection, queries, llm, build_s = build(spec, args, dev, frozen_dt)
    M = (wcfg, lcfg, encoder, connector, projection, queries, llm)
    report = {
        "engine": "torch", "shape": args.shape, "shape_names": spec["names"], "device": args.device,
        "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or platform.machine(),
        "dtype": dtype_name, "frozen_dtype": str(frozen_dt).replace("torch.", ""),
        "autocast": autocast is not contextlib.nullcontext, "threads": torch.get_num_threads(),
        "batch": args.batch, "num_queries": args.num_queries, "transcript_tokens": args.transcript_tokens,
        "prefix_len": len(args.prefix_ids), "suffix_len": len(args.suffix_ids),
        "llm_sequence": len(args.prefix_ids) + args.num_queries + len(args.suffix_ids),
        "repeat": args.repeat, "warmup": args.warmup, "attn": args.attn,
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "build_s": build_s,
        "params": {"encoder": nparams(encoder), "connector": nparams(connector), "projection": nparams(projection),
                   "queries": queries.numel(), "llm": nparams(llm)},
    }
    if "train" in what:
        report["train"] = bench_train(args, M, dev, autocast)
    if what & {"ttft", "decode"}:
        chat_dt = torch.float32 if dev.type == "cpu" and dt == torch.float32 else dt
        report["chat"] = bench_chat(args, M, dev, chat_dt, "decode" in what)
        report["chat"]["dtype"] = str(chat_dt).replace("torch.", "")

    log("")
    if "train" in report:
        t = report["train"]
        log(f"train step (torch), batch {t['batch']}, N {t['num_queries']}, LLM sequence {t['llm_sequence']}, "
            f"median of {args.repeat}:")
        for p in ("encoder", "connector_fwd", "llm_fwd", "backward", "optimizer", "step"):
            log(f"  {p:<14} {t[p + '_ms']:>10.1f} ms")
        log(f"  samples/s: {t['samples_per_s_cached_encoder']:.2f} with cached encoder states, "
            f"{t['samples_per_s']:.2f} encoding every clip")
        if "peak_mem_gib" in t:
            log(f"  peak CUDA memory {t['peak_mem_gib']:.2f} GiB")
    if "chat" in report:
        c = report["chat"]
        log(f"chat (torch, {c['dtype']}), LLM prompt {c['chat_llm_sequence']}:")
        log(f"  {'clip':<6}{'mel':>9}{'encoder':>10}{'connector':>11}{'prefill':>10}{'TTFT ms':>10}")
        for tag in ("5s", "30s"):
            log(f"  {tag:<6}{c['chat_mel_ms_' + tag]:>9.1f}{c['chat_encoder_ms_' + tag]:>10.1f}"
                f"{c['chat_connector_ms_' + tag]:>11.1f}{c['chat_prefill_ms_' + tag]:>10.1f}{c['ttft_ms_' + tag]:>10.1f}")
        if "decode_tok_s" in c:
            log(f"  decode: {c['gen_tokens']} tokens, {c['decode_tok_s']:.1f} tok/s (host-synced greedy, KV cache)")
    text = json.dumps(report, sort_keys=True)
    if args.json and args.json != "-":
        with open(args.json, "w") as f:
            f.write(text + "\n")
        log(f"wrote {args.json}")
    else:
        print(text)


if __name__ == "__main__":
    main()
