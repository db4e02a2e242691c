#!/usr/bin/env python3
"""Chat-template rendering fixtures (tests/fixtures/templates/).

Template sources (see tests/fixtures/templates/SOURCES.md):
  smollm2.jinja    written here from the GGUF metadata key `tokenizer.chat_template` (--gguf)
  llama3.jinja     Llama-3.2-3B-Instruct tokenizer_config.json chat_template (uses strftime_now)
  llama3_1.jinja   Llama-3.1-8B-Instruct / Llama-3.3-70B-Instruct (identical; fixed "26 Jul 2024")
  qwen2_5.jinja    Qwen2.5-7B-Instruct (same template across the Qwen2.5-Instruct sizes)
The last three are committed copies (llama.cpp's models/templates/, fetched from the Hub by its
scripts/get_chat_template.py); this script only reads them.

cases.json
  {"transformers", "jinja2", "render_call", "templates": {name: {"calls": [...], "sha256"}},
   "cases": [{"template", "name", "bos_token", "eos_token", "messages", "add_generation_prompt",
              "extra", "tools"?, "rendered" | "error"}],
   "split": [{"template", "placeholder", "bos_token", "eos_token", "extra", "rendered", "prefix",
              "suffix", "pre_system", "post_system"}]}
  rendered = transformers.utils.chat_template_utils.render_jinja_template(
                 conversations=[messages], chat_template=src, tools=tools,
                 add_generation_prompt=..., bos_token=..., eos_token=..., **extra)[0][0]
  (the same call tokenizer.apply_chat_template(tokenize=False) makes; it also passes tools=None and
  documents=None to the template, and the sandboxed environment has trim_blocks, lstrip_blocks,
  loopcontrols, transformers' tojson (json.dumps, ensure_ascii=False, no key sorting),
  raise_exception and strftime_now.) A case with "error" raised jinja2 TemplateError whose
  message contains that string.
  split: DiVA's prompt split: render [{"role":"user","content":PLACEHOLDER}] with
  add_generation_prompt=True, prefix, suffix = rendered.split(PLACEHOLDER); pre_system =
  non_null[0] + "\\n", post_system = "\\n" + non_null[-1] + "\\n" where non_null = the non-blank lines
  of prefix (as the official DiVA model code computes them).

Usage: make_template_fixtures.py --gguf PATH [--out DIR]
"""
import argparse
import hashlib
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jinja2  # noqa: E402
import transformers  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

TOKENS = {
    # bos/eos as each model's tokenizer_config.json / GGUF reports them
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2_5": (None, "<|im_end|>"),  # Qwen2.5's tokenizer_config has "bos_token": null
}

SYS = {"role": "system", "content": "You are a concise assistant."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "The capital of France is Paris."}
U2 = {"role": "user", "content": "And of Germany?"}
UNI = {"role": "user", "content": "  Ünïcödé ✓ 你好 👨‍👩‍👧\nline two\n\n\tindented line   \n"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"}},
            "required": ["city"],
        },
    },
}
TOOL_CALL_MSG = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
}
TOOL_RESULT = {"role": "tool", "content": "{\"temp_c\": 21}"}


def calls(src):
    """Jinja functions / filters / methods the template uses (informational)."""
    found = set()
    for name in ("raise_exception", "strftime_now", "namespace", "tojson", "trim", "length", "mapping",
                 "iterable", "string", "defined", "none", "join", "reject", "equalto", "selectattr",
                 "loop.first", "loop.last", "loop.index0", "bos_token", "eos_token", "add_generation_prompt",
                 "tools", "custom_tools", "date_string", "tools_in_user_message"):
        if re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", src):
            found.add(name)
    found |= {"." + m for m in re.findall(r"\.(strip|lstrip|rstrip|split|startswith|endswith|items|get|upper|lower)\(", src)}
    if re.search(r"\[\s*1\s*:\s*\]", src):
        found.add("slice [1:]")
    return sorted(found)


def render(src, bos, eos, messages, agp, extra, tools=None):
    kw = dict(extra)
    kw["eos_token"] = eos
    if bos is not None:
        kw["bos_token"] = bos
    out, _ = render_jinja_template(
        conversations=[messages], chat_template=src, tools=tools, add_generation_prompt=agp, **kw
    )
    return out[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", default="tests/fixtures/templates")
    args = ap.parse_args()

    import gguf

    reader = gguf.GGUFReader(os.path.expanduser(args.gguf))
    smol = reader.fields["tokenizer.chat_template"].contents()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "smollm2.jinja"), "w", encoding="utf-8", newline="") as f:
        f.write(smol)

    srcs = {}
    for name in ("smollm2", "llama3", "llama3_1", "qwen2_5"):
        with open(os.path.join(args.out, name + ".jinja"), encoding="utf-8", newline="") as f:
            srcs[name] = f.read()

    date = {"date_string": "26 Jul 2024"}
    specs = []
    for name in srcs:
        ex = date if name == "llama3" else {}
        specs += [
            (name, "user_only_gen", [U1], True, ex, None),
            (name, "user_only_nogen", [U1], False, ex, None),
            (name, "system_user_gen", [SYS, U1], True, ex, None),
            (name, "multi_turn_gen", [SYS, U1, A1, U2], True, ex, None),
            (name, "multi_turn_nogen", [U1, A1, U2], False, ex, None),
            (name, "ends_with_assistant_nogen", [U1, A1], False, ex, None),
            (name, "unicode_newlines_gen", [UNI], True, ex, None),
            (name, "empty_user_gen", [{"role": "user", "content": ""}], True, ex, None),
        ]
    # llama3: a different date, and the 3.1 template's fixed default date
    specs.append(("llama3", "date_string_other", [U1], True, {"date_string": "01 Jan 2030"}, None))
    specs.append(("llama3_1", "date_string_passed", [U1], True, {"date_string": "01 Jan 2030"}, None))
    # tool prompts (exercise tojson)
    for name in ("llama3", "llama3_1", "qwen2_5"):
        ex = date if name == "llama3" else {}
        specs.append((name, "tools_user", [SYS, {"role": "user", "content": "Weather in Paris?"}], True, ex,
                      [WEATHER_TOOL]))
        specs.append((name, "tool_call_roundtrip",
                      [{"role": "user", "content": "Weather in Paris?"}, TOOL_CALL_MSG, TOOL_RESULT], True, ex,
                      [WEATHER_TOOL]))
    # error cases (llama3 templates call raise_exception)
    two_calls = dict(TOOL_CALL_MSG, tool_calls=TOOL_CALL_MSG["tool_calls"] * 2)
    for name in ("llama3", "llama3_1"):
        ex = date if name == "llama3" else {}
        specs.append((name, "error_two_tool_calls", [U1, two_calls], True, ex, None))
        specs.append((name, "error_tools_without_user", [SYS], True, ex, [WEATHER_TOOL]))

    cases = []
    for name, cname, msgs, agp, ex, tools in specs:
        bos, eos = TOKENS[name]
        c = {"template": name, "name": cname, "bos_token": bos, "eos_token": eos, "messages": msgs,
             "add_generation_prompt": agp, "extra": ex}
        if tools is not None:
            c["tools"] = tools
        try:
            c["rendered"] = render(srcs[name], bos, eos, msgs, agp, ex, tools)
            assert not cname.startswith("error"), cname
        except jinja2.exceptions.TemplateError as e:
            assert cname.startswith("error"), (cname, e)
            c["error"] = str(e)
        cases.append(c)

    placeholder = "PLACEHOLDER"
    split = []
    for name in srcs:
        bos, eos = TOKENS[name]
        ex = date if name == "llama3" else {}
        r = render(srcs[name], bos, eos, [{"role": "user", "content": placeholder}], True, ex)
        prefix, suffix = r.split(placeholder)
        non_null = [line for line in prefix.split("\n") if line.strip()]
        split.append({"template": name, "placeholder": placeholder, "bos_token": bos, "eos_token": eos,
                      "extra": ex, "rendered": r, "prefix": prefix, "suffix": suffix,
                      "pre_system": non_null[0] + "\n", "post_system": "\n" + non_null[-1] + "\n"})

    out = {
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "render_call": "transformers.utils.chat_template_utils.render_jinja_template(conversations=[messages], "
        "chat_template=src, tools=tools, add_generation_prompt=..., bos_token=..., eos_token=..., **extra)[0][0]"
        " (bos_token omitted when null)",
        "templates": {
            n: {"file": n + ".jinja", "sha256": hashlib.sha256(s.encode("utf-8")).hexdigest(), "calls": calls(s)}
            for n, s in srcs.items()
        },
        "cases": cases,
        "split": split,
    }
    with open(os.path.join(args.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} errors, {len(split)} splits")


if __name__ == "__main__":
    main()
