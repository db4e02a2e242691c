#!/usr/bin/env python3
"""SmolLM2 tokenizer parity fixtures (tests/fixtures/llm/smollm2_{tokenizer,decode}_cases.json).

The tokenizer is the one transformers builds from the GGUF metadata:
    AutoTokenizer.from_pretrained(dir, gguf_file="model.gguf")

smollm2_tokenizer_cases.json
  source, transformers, tokenizers, gguf_sha256
  gguf_tokenizer_meta     every scalar `tokenizer.ggml.*` key of the GGUF (arrays: lengths only,
                          under gguf_tokenizer_array_lens)
  special_tokens          {"bos": [str, id], "eos": ..., "unk": ..., "pad": ...} as transformers reports
  added_tokens            [[content, id, special], ...] sorted by id
  backend                 pre_tokenizer / decoder / post_processor JSON of the fast tokenizer
  cases_differing_with_smollm_pre   cases whose ids change with SmolLM2's own pre-tokenizer
                          (Digits(individual_digits=True) + ByteLevel, = llama.cpp's `smollm`), which
                          transformers' GGUF loader does not use; 0 because the vocabulary has no
                          multi-digit token
  cases                   [{"text", "ids", "ids_special"}]
     ids                  tok(text, add_special_tokens=False).input_ids
     ids_special          tok(text, add_special_tokens=True).input_ids
     ids_llamacpp         (only with --llama-cpp) llama_cpp.Llama(vocab_only=True).tokenize(
                          text.encode(), add_bos=False, special=True)

smollm2_decode_cases.json
  cases: [{"name", "ids", "text", "text_skip_special", "prefixes", "prefixes_skip_special"}]
     text                 tok.decode(ids, skip_special_tokens=False)
     text_skip_special    tok.decode(ids, skip_special_tokens=True)
     prefixes[k]          tok.decode(ids[:k]) for k = 0..len(ids) (k=0 is ""); an incomplete UTF-8
                          sequence at the end decodes to U+FFFD, as the byte-level decoder does.

Usage: make_llm_tokenizer_fixture.py --gguf PATH [--out DIR] [--llama-cpp]
"""
import argparse
import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import pre_tokenizers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3

TEXTS = [
    # plain English / questions
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "How are you doing today? I hope you're well.",
    "Can you summarise this paragraph in one sentence, please?",
    # leading / trailing spaces and whitespace runs
    " Hello",
    "Hello ",
    "  Hello  ",
    "a  b",
    "a   b",
    "a    b",
    "a     b",
    "a\tb",
    "\t\tindented",
    "line one\nline two",
    "para one\n\npara two",
    "three\n\n\nnewlines",
    "\n",
    "\n\n\n",
    "trailing newline\n",
    " \n \n",
    "mixed \t \n whitespace",
    "carriage\r\nreturn",
    # digits
    "7",
    "42",
    "1234567",
    "12345678901234567890",
    "3.14159",
    "0.5 and -2.75",
    "2024-11-27",
    "12/31/1999 23:59:59",
    "The year 1984 had 366 days? No, 366 is wrong.",
    "$1,000,000.00",
    "100%",
    "x1y22z333",
    # punctuation
    "!!!",
    "?!?!",
    "...",
    "Wait... what?!",
    "--- *** ___ ===",
    "(a) [b] {c} <d>",
    "\"quoted\" and 'single'",
    "semi;colon:colon,comma",
    # contractions
    "don't",
    "I'll",
    "we're",
    "they've",
    "she'd",
    "I'm",
    "it's",
    "DON'T SHOUT",
    "rock 'n' roll",
    # unicode
    "café naïve",
    "Straße",
    "Ångström résumé",
    "你好世界",
    "こんにちは、世界！",
    "カタカナとひらがな",
    "안녕하세요",
    "مرحبا بالعالم",
    "Привет, мир!",
    "Γειά σου Κόσμε",
    "नमस्ते",
    "😀",
    "I love 🍕 and 🍣!",
    "👨‍👩‍👧",
    "👍🏽",
    "🇫🇷",
    "e\u0301",
    "a\u0308o\u0308u\u0308",
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth",
    # code
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "fn main() {\n\tprintln!(\"hi\");\n}",
    "<html><body class=\"x\">hi</body></html>",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "SELECT * FROM users WHERE id = 42;",
    # URLs / emails
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    "http://example.com/path?query=1&x=y#frag",
    "mail me at someone@example.org",
    # special tokens inside text
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|endoftext|>more",
    "<|im_start|><|im_end|>",
    "< |im_start| >",
    "<repo_name>x<file_sep>",
    # edge cases
    "",
    " ",
    "  ",
    "a",
    LONG_WORD,
    "ALLCAPS WORDS HERE",
    "camelCaseIdentifier snake_case_identifier",
]


def gguf_meta(path):
    import gguf

    reader = gguf.GGUFReader(path)
    scalars, arrays = {}, {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            arrays[key] = len(field.data)
        else:
            v = field.contents()
            if hasattr(v, "item"):
                v = v.item()
            scalars[key] = v
    chat_template = reader.fields["tokenizer.chat_template"].contents()
    return dict(sorted(scalars.items())), dict(sorted(arrays.items())), chat_template


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", default="tests/fixtures/llm")
    ap.add_argument("--llama-cpp", action="store_true", help="also record llama.cpp's tokenisation")
    args = ap.parse_args()

    gguf_path = os.path.abspath(os.path.expanduser(args.gguf))
    d, name = os.path.split(gguf_path)
    with open(gguf_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()

    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    backend = json.loads(tok.backend_tokenizer.to_str())

    ref = tokenizers.Tokenizer.from_str(tok.backend_tokenizer.to_str())
    ref.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )

    llm = None
    if args.llama_cpp:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)

    scalars, arrays, _ = gguf_meta(gguf_path)

    cases = []
    n_pre_diff = 0
    for text in TEXTS:
        c = {
            "text": text,
            "ids": tok(text, add_special_tokens=False).input_ids,
            "ids_special": tok(text, add_special_tokens=True).input_ids,
        }
        n_pre_diff += ref.encode(text, add_special_tokens=False).ids != c["ids"]
        if llm is not None:
            c["ids_llamacpp"] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        # every id sequence must decode back to the text (byte-level BPE is lossless)
        assert tok.decode(c["ids"], skip_special_tokens=False) == text, text
        cases.append(c)

    def st(attr):
        t = getattr(tok, attr + "_token")
        return [str(t), tok.convert_tokens_to_ids(str(t))] if t is not None else None

    vocab_added = tok.backend_tokenizer.get_added_tokens_decoder()
    added = [[t.content, int(i), bool(t.special)] for i, t in sorted(vocab_added.items())]

    out = {
        "source": f"transformers AutoTokenizer.from_pretrained(dir, gguf_file) on {name} "
        "(SmolLM2-135M-Instruct.Q4_1.gguf)",
        "gguf_sha256": sha,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "tokenizer_class": type(tok).__name__,
        "add_bos_token": getattr(tok, "add_bos_token", None),
        "add_eos_token": getattr(tok, "add_eos_token", None),
        "clean_up_tokenization_spaces": getattr(tok, "clean_up_tokenization_spaces", None),
        "vocab_size": len(tok),
        "special_tokens": {k: st(k) for k in ("bos", "eos", "unk", "pad")},
        "added_tokens": added,
        "backend": {
            "normalizer": backend.get("normalizer"),
            "pre_tokenizer": backend.get("pre_tokenizer"),
            "decoder": backend.get("decoder"),
            "post_processor": backend.get("post_processor"),
            "model": {k: v for k, v in backend["model"].items() if k not in ("vocab", "merges")},
        },
        "smollm_pre_note": "transformers' GGUF loader does not know the 'smollm' pre-type and uses plain "
        "GPT-2 ByteLevel; SmolLM2's tokenizer.json and llama.cpp's 'smollm' pre-type split digits "
        "individually first (Digits(individual_digits=True) + ByteLevel). The vocabulary has only the "
        "10 single-digit tokens and no merge involving a digit, so both give the same ids: "
        "cases_differing_with_smollm_pre counts the cases that differ (expected 0).",
        "cases_differing_with_smollm_pre": n_pre_diff,
        "gguf_tokenizer_meta": scalars,
        "gguf_tokenizer_array_lens": arrays,
        "cases": cases,
    }
    if llm is not None:
        import llama_cpp

        out["llama_cpp_python"] = llama_cpp.__version__
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "smollm2_tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # ---- decode / streaming detokenisation cases
    def ids_of(text, special=True):
        return tok(text, add_special_tokens=False).input_ids

    seqs = [
        ("ascii", ids_of("Hello, world! How are you?")),
        ("cjk", ids_of("你好世界")),
        ("japanese", ids_of("こんにちは、世界！")),
        ("emoji_zwj", ids_of("👨‍👩‍👧")),
        ("emoji_mixed", ids_of("I love 🍕 and 🍣!")),
        ("flag_skin", ids_of("🇫🇷 👍🏽")),
        ("accents", ids_of("café naïve Straße")),
        ("korean_arabic", ids_of("안녕하세요 مرحبا")),
        ("chatml_specials", ids_of("<|im_start|>assistant\nThe capital is Paris.<|im_end|>\n")),
        ("spaces_newlines", ids_of("  a\n\n\tb   c ")),
        ("raw_ids", [1, 520, 9531, 198, 2, 0, 28, 29, 30]),
    ]
    dcases = []
    for nm, ids in seqs:
        dcases.append(
            {
                "name": nm,
                "ids": ids,
                "tokens": tok.convert_ids_to_tokens(ids),
                "text": tok.decode(ids, skip_special_tokens=False),
                "text_skip_special": tok.decode(ids, skip_special_tokens=True),
                "prefixes": [tok.decode(ids[:k], skip_special_tokens=False) for k in range(len(ids) + 1)],
                "prefixes_skip_special": [tok.decode(ids[:k], skip_special_tokens=True) for k in range(len(ids) + 1)],
            }
        )
    dout = {
        "source": out["source"],
        "transformers": transformers.__version__,
        "decode_call": "tok.decode(ids, skip_special_tokens=...) with default clean_up_tokenization_spaces "
        f"({out['clean_up_tokenization_spaces']})",
        "cases": dcases,
    }
    with open(os.path.join(args.out, "smollm2_decode_cases.json"), "w", encoding="utf-8") as f:
        json.dump(dout, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases ({n_pre_diff} differ with the smollm digit pre-tokenizer), {len(dcases)} decode cases")


if __name__ == "__main__":
    main()
