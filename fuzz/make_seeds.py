#!/usr/bin/env python3
"""Seed inputs for the fuzz targets: small real files (heads of the fixtures
under tests/fixtures) and tiny synthetic ones, written to fuzz/work/seeds/<target>/.

Plain Python 3, no packages. The model files in ~/.cache/diva are never copied:
a GGUF, a CTranslate2 model.bin and a safetensors file are synthesised here in
their real layouts, with a handful of tiny tensors.

    python3 fuzz/make_seeds.py   # then fuzz/run-all seeds from there
"""

import base64
import json
import math
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = ROOT / "fuzz" / "work" / "seeds"
SEP = b"\n#####\n"  # harness/core_targets.rs FILE_SEPARATOR
BOUNDARY = "diva-fuzz-boundary"  # harness/serve_targets.rs BOUNDARY


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# --- audio -----------------------------------------------------------------


def wav(samples, rate=16000, channels=1, bits=16, fmt=1):
    """A RIFF/WAVE file of integer PCM (or float when fmt == 3)."""
    if fmt == 3:
        data = b"".join(struct.pack("<f", s) for s in samples)
    elif bits == 8:
        data = bytes(int(128 + 127 * s) & 0xFF for s in samples)
    else:
        scale = 2 ** (bits - 1) - 1
        data = b"".join(int(s * scale).to_bytes(bits // 8, "little", signed=True) for s in samples)
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sine(n, f=440.0, rate=16000, amp=0.5):
    return [amp * math.sin(2 * math.pi * f * i / rate) for i in range(n)]


def audio_seeds():
    formats = FIX / "audio" / "formats"
    # byte 0: extension hint (low 3 bits) and second resampling rate (next 3 bits).
    hints = {"wav": 1, "flac": 2, "mp3": 3, "ogg": 4}
    for f in sorted(formats.iterdir()):
        ext = f.suffix[1:]
        if ext not in hints:
            continue
        raw = f.read_bytes()
        # Heads only: enough for the headers and a few packets.
        head = raw[: 6000 if ext in ("ogg", "flac") else 3000]
        put("audio", f"{f.stem}_{ext}", bytes([hints[ext] | (1 << 3)]) + head)
        put("audio", f"{f.stem}_{ext}_nohint", bytes([0]) + head)
    put("audio", "tiny_s16", bytes([1]) + wav(sine(400)))
    put("audio", "tiny_u8_8k", bytes([1 | (3 << 3)]) + wav(sine(300, rate=8000), rate=8000, bits=8))
    put("audio", "tiny_f32_48k", bytes([0 | (2 << 3)]) + wav(sine(600, rate=48000), rate=48000, bits=32, fmt=3))
    put("audio", "tiny_stereo_s24", bytes([1]) + wav(sine(400) * 2, channels=2, bits=24))
    put("audio", "silent", bytes([1]) + wav([0.0] * 200))


# --- GGUF ------------------------------------------------------------------

GGUF_T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6,
          "bool": 7, "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}


def g_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def g_val(kind, v):
    if kind == "str":
        return g_str(v)
    if kind == "u32":
        return struct.pack("<I", v)
    if kind == "i32":
        return struct.pack("<i", v)
    if kind == "f32":
        return struct.pack("<f", v)
    if kind == "bool":
        return bytes([1 if v else 0])
    if kind == "u64":
        return struct.pack("<Q", v)
    raise ValueError(kind)


def g_arr(kind, values):
    return struct.pack("<IQ", GGUF_T[kind], len(values)) + b"".join(g_val(kind, v) for v in values)


def gguf(metadata, tensors, version=3):
    """metadata: [(key, kind, value)] (kind "arr:<elem>" for arrays);
    tensors: [(name, dims (ggml order), ggml type, raw bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += g_str(key)
        if kind.startswith("arr:"):
            out += struct.pack("<I", GGUF_T["arr"]) + g_arr(kind[4:], value)
        else:
            out += struct.pack("<I", GGUF_T[kind]) + g_val(kind, value)
    offset = 0
    blobs = []
    for name, dims, ty, raw in tensors:
        out += g_str(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        pad = (-len(raw)) % 32
        blobs.append(raw + bytes(pad))
        offset += len(raw) + pad
    out += bytes((-len(out)) % 32)
    return out + b"".join(blobs)


def gguf_seeds():
    tokens = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ["Ġ", "Ġh", "he", "ll", "lo", "hello", "Ġw", "or", "ld"]
    merges = ["Ġ h", "h e", "l l", "l o", "he llo", "Ġ w", "o r", "l d"]
    chat = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    md = [
        ("general.architecture", "str", "llama"),
        ("general.alignment", "u32", 32),
        ("llama.context_length", "u32", 128),
        ("llama.embedding_length", "u32", 32),
        ("llama.attention.head_count", "u32", 2),
        ("llama.rope.freq_base", "f32", 10000.0),
        ("tokenizer.ggml.model", "str", "gpt2"),
        ("tokenizer.ggml.pre", "str", "smollm"),
        ("tokenizer.ggml.tokens", "arr:str", tokens),
        ("tokenizer.ggml.token_type", "arr:i32", [3, 3, 3, 3] + [1] * (len(tokens) - 4)),
        ("tokenizer.ggml.merges", "arr:str", merges),
        ("tokenizer.ggml.bos_token_id", "u32", 0),
        ("tokenizer.ggml.eos_token_id", "u32", 3),
        ("tokenizer.ggml.add_bos_token", "bool", True),
        ("tokenizer.chat_template", "str", chat),
    ]
    f32 = b"".join(struct.pack("<f", i / 10) for i in range(64))
    q8_0 = (struct.pack("<e", 0.5) + bytes(range(32))) * 2  # 2 blocks of 32
    q4_0 = (struct.pack("<e", 0.25) + bytes(range(16))) * 2
    f16 = b"".join(struct.pack("<e", i / 8) for i in range(32))
    tensors = [
        ("token_embd.weight", [32, 2], 0, f32[: 32 * 2 * 4]),
        ("blk.0.attn_q.weight", [32, 2], 8, q8_0),
        ("blk.0.attn_k.weight", [32, 2], 2, q4_0),
        ("output_norm.weight", [32], 1, f16),
    ]
    put("gguf", "tiny_llama_v3", gguf(md, tensors))
    put("gguf", "tiny_llama_v2", gguf(md[:6], tensors[:2], version=2))
    spm = [
        ("general.architecture", "str", "llama"),
        ("tokenizer.ggml.model", "str", "llama"),
        ("tokenizer.ggml.tokens", "arr:str", ["<unk>", "<s>", "</s>", "▁", "▁a", "a", "b", "<0x0A>"]),
        ("tokenizer.ggml.scores", "arr:f32", [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0]),
        ("tokenizer.ggml.token_type", "arr:i32", [2, 3, 3, 1, 1, 1, 1, 6]),
        ("tokenizer.ggml.bos_token_id", "u32", 1),
        ("tokenizer.ggml.eos_token_id", "u32", 2),
        ("tokenizer.ggml.unknown_token_id", "u32", 0),
    ]
    put("gguf", "tiny_spm", gguf(spm, []))
    real = Path.home() / ".cache" / "diva" / "models" / "smollm2-variants" / "smollm2-q8_0.gguf"
    if real.is_file():
        with real.open("rb") as f:
            put("gguf", "smollm2_head", f.read(4096))  # the first 4 KB only


# --- CTranslate2 -----------------------------------------------------------


def c_str(s):
    b = s.encode() + b"\0"
    return struct.pack("<H", len(b)) + b


def ct2(variables, aliases=(), version=6, spec="WhisperSpec"):
    out = struct.pack("<I", version)
    if version >= 2:
        out += c_str(spec) + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    size = {0: 4, 1: 1, 2: 2, 3: 4, 4: 2, 5: 2}
    for name, dims, code in variables:
        n = 1
        for d in dims:
            n *= d
        out += c_str(name) + bytes([len(dims)]) + b"".join(struct.pack("<I", d) for d in dims)
        if version >= 4:
            out += bytes([code])
        data = bytes((i * 7) & 0x7F for i in range(n * size[code]))
        out += struct.pack("<I", len(data)) + data
    if version >= 3:
        out += struct.pack("<I", len(aliases))
        for a, t in aliases:
            out += c_str(a) + c_str(t)
    return out


def ct2_seeds():
    v = [
        ("encoder/conv1/weight", [4, 2, 3], 0),
        ("encoder/conv1/bias", [4], 4),
        ("decoder/embeddings/weight", [8, 4], 1),
        ("decoder/embeddings/weight_scale", [8], 0),
        ("decoder/layer_0/ffn/linear_0/weight", [2, 2], 5),
        ("misc/i16", [3], 2),
        ("misc/i32", [2], 3),
    ]
    put("ct2", "tiny_whisper_v6", ct2(v, aliases=[("decoder/projection/weight", "decoder/embeddings/weight")]))
    put("ct2", "tiny_v3", ct2(v[:2], version=3, aliases=[("a", "encoder/conv1/bias")]))
    put("ct2", "tiny_v1", ct2([("w", [2, 2], 0)], version=1))
    for name in ("whisper-tiny.en", "whisper-base"):
        real = Path.home() / ".cache" / "diva" / "models" / name / "model.bin"
        if real.is_file():
            with real.open("rb") as f:
                put("ct2", f"{name}_head", f.read(2048))


# --- safetensors -----------------------------------------------------------


def st(tensors, meta=None):
    header = {}
    data = b""
    size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "I32": 4, "F64": 8, "U32": 4}
    for name, dtype, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        raw = bytes((i * 13) & 0x3F for i in range(n * size[dtype]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    put("safetensors", "tiny", st([("query_tokens", "F32", [2, 4]), ("projection.weight", "F16", [4, 3]),
                                   ("projection.bias", "BF16", [3])], meta={"format": "pt"}))
    put("safetensors", "ints", st([("a", "I64", [2]), ("b", "U8", [3, 1]), ("c", "I32", []), ("d", "F64", [1]),
                                   ("e", "U32", [0, 5])]))
    put("safetensors", "empty", st([]))
    real = FIX / "diva" / "checkpoint" / "model.safetensors"
    if real.is_file():
        put("safetensors", "checkpoint_head", real.read_bytes()[:4096])


# --- text ------------------------------------------------------------------


def json_config_seeds():
    for p in [FIX / "llm" / "llama_tiny" / "model" / "config.json",
              FIX / "llm" / "qwen2_tiny" / "model" / "config.json",
              FIX / "diva" / "checkpoint" / "config.json",
              FIX / "hf-whisper-random" / "model" / "config.json"]:
        if p.is_file():
            put("json_config", p.parent.parent.name + "_" + p.parent.name, p.read_bytes())
    for p in (FIX / "hf-whisper-random" / "model-sharded").glob("*.json"):
        put("json_config", "index_" + p.stem, p.read_bytes())
    put("json_config", "rope_llama3", json.dumps({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 100,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}))
    put("json_config", "nested", "[" * 200 + "]" * 200)


def tiny_tokenizer_json():
    vocab = {"<s>": 0, "</s>": 1, "<|im_start|>": 2, "<|im_end|>": 3}
    for c in "abcdefghijklmnopqrstuvwxyzĠ":
        vocab[c] = len(vocab)
    for t in ["Ġh", "he", "ll", "lo", "hello", "Ġw"]:
        vocab[t] = len(vocab)
    return json.dumps({
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t, i in list(vocab.items())[:4]],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": ["Ġ h", "h e", "l l", "l o", "he llo", "Ġ w"]},
    })


def hf_tokenizer_seeds():
    tj = tiny_tokenizer_json().encode()
    tmpl = (FIX / "templates" / "smollm2.jinja").read_text()
    cfg = json.dumps({"bos_token": "<s>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": True,
                      "chat_template": tmpl})
    gen = json.dumps({"eos_token_id": [1, 3]})
    put("hf_tokenizer", "full", tj + SEP + cfg.encode() + SEP + gen.encode())
    put("hf_tokenizer", "jinja_file", tj + SEP + json.dumps({"eos_token": "</s>"}).encode() + SEP + b"{}" + SEP
        + tmpl.encode())
    put("hf_tokenizer", "named_templates", tj + SEP + json.dumps(
        {"eos_token": "</s>", "chat_template": [{"name": "default", "template": "{{ messages[0].content }}"},
                                                {"name": "tool_use", "template": "x"}]}).encode())
    put("hf_tokenizer", "gen_eos_only", tj + SEP + b"{}" + SEP + b'{"eos_token_id": 1}')


def tiktoken_seeds():
    real = Path.home() / ".cache" / "diva" / "models" / "qwen2.5-tokenizer" / "qwen.tiktoken"
    if real.is_file():
        with real.open("rb") as f:
            put("tiktoken", "qwen_head", b"".join(f.readline() for _ in range(300)))
    lines = []
    toks = [bytes([b]) for b in range(256)] + [b"he", b"ll", b"hell", b"hello", b" w", b"or", b"ld"]
    for r, t in enumerate(toks):
        lines.append(base64.b64encode(t) + b" " + str(r).encode())
    put("tiktoken", "bytes_and_merges", b"\n".join(lines) + b"\n")


def chat_template_seeds():
    for p in sorted((FIX / "templates").glob("*.jinja")):
        put("chat_template", p.stem, p.read_bytes())
    put("chat_template", "loops", "{% for i in range(10) %}{% for j in range(10) %}{{ i * j }}{% endfor %}{% endfor %}")
    put("chat_template", "namespace", "{% set ns = namespace(s='a') %}{% for m in messages %}"
        "{% set ns.s = ns.s ~ m.content %}{% endfor %}{{ ns.s | length }}{{ raise_exception('no') if false }}")
    put("chat_template", "macro", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}"
        "{{ f(5) }}{{ messages | tojson }}{{ strftime_now('%Y-%m-%d') }}")


def manifest_seeds():
    p = FIX / "asterisk" / "faster_whisper_tiny_en.jsonl"
    if p.is_file():
        put("manifest", "asterisk_head", b"".join(p.read_bytes().splitlines(keepends=True)[:5]))
    put("manifest", "mixed", '{"id": "a", "audio": "a.wav", "text": "hello"}\n\n'
        '{"audio": "/abs/b.flac", "text": "x", "extra": 1}\nnot json\n{"id": "c", "audio": "", "text": "t"}\n'
        '{"id": 1, "audio": "c.wav"}\n')


def train_config_seeds():
    for p in sorted((ROOT / "configs").glob("*.toml")):
        put("train_config", p.stem, p.read_bytes())
    put("train_config", "bad", "steps = 0\nlr = -1.0\n[table]\nx = 1\n")


# --- server ----------------------------------------------------------------


def serve_seeds():
    clip = wav(sine(800), rate=8000)
    b64 = base64.b64encode(clip).decode()
    put("serve_chat", "text", json.dumps({
        "model": "diva", "messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Hi"}],
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "seed": 1, "stop": ["\n"], "stream": True,
        "stream_options": {"include_usage": True}}))
    put("serve_chat", "input_audio", json.dumps({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is said?"},
                                                  {"type": "input_audio",
                                                   "input_audio": {"data": b64, "format": "wav"}}]}]}))
    put("serve_chat", "data_url", json.dumps({
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                     {"role": "user", "content": [{"type": "audio_url",
                                                   "audio_url": {"url": "data:audio/wav;base64," + b64}}]}],
        "n": 1, "max_completion_tokens": 4, "stop": "x"}))
    put("serve_chat", "refused", json.dumps({
        "messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": [{"type": "image_url"}]}],
        "n": 2, "temperature": 3}))

    def form(fields):
        out = b""
        for name, filename, body in fields:
            out += f"--{BOUNDARY}\r\n".encode()
            disp = f'Content-Disposition: form-data; name="{name}"'
            if filename:
                disp += f'; filename="{filename}"\r\nContent-Type: audio/wav'
            out += disp.encode() + b"\r\n\r\n" + body + b"\r\n"
        return out + f"--{BOUNDARY}--\r\n".encode()

    put("serve_multipart", "wav", form([("model", None, b"whisper-1"), ("file", "clip.wav", clip),
                                        ("response_format", None, b"verbose_json"), ("language", None, b"en")]))
    put("serve_multipart", "no_ext", form([("file", "clip", clip), ("response_format", None, b"srt")]))
    put("serve_multipart", "no_file", form([("response_format", None, b"text")]))


if __name__ == "__main__":
    audio_seeds()
    gguf_seeds()
    ct2_seeds()
    safetensors_seeds()
    json_config_seeds()
    hf_tokenizer_seeds()
    tiktoken_seeds()
    chat_template_seeds()
    manifest_seeds()
    train_config_seeds()
    serve_seeds()
    for d in sorted(OUT.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
