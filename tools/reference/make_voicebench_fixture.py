#!/usr/bin/env python3
"""VoiceBench scoring parity fixture for diva-eval's port (crates/diva-eval/src/voicebench.rs).

Runs VoiceBench's own evaluator code (github MatthewCYM/VoiceBench, commit
533815410e3f4d602bd15a1de7105aea4acd828c: src/evaluator/mcq.py, harm.py, open.py, ifeval.py and
instruction_following_eval/, qa.py's majority_vote, api_judge.py's prompts) on generated
(reply, item) cases and writes what it decides, for the Rust test
crates/diva-eval/tests/voicebench_parity.rs to reproduce:

    git clone https://github.com/MatthewCYM/VoiceBench /tmp/VoiceBench   # (or any checkout)
    git -C /tmp/VoiceBench checkout 533815410e3f4d602bd15a1de7105aea4acd828c
    ~/.cache/diva/venv-ref-eval/bin/python tools/reference/make_voicebench_fixture.py \
        --voicebench /tmp/VoiceBench --out tests/fixtures/eval/voicebench_parity.json
    # --rust-lists FILE also writes crates/diva-eval/src/voicebench_lists.rs (the MCQ templates
    # and refusal strings, copied from mcq.py and harm.py).

The code is loaded from the checkout as it is (VoiceBench is not a package): the evaluator
files are copied into a temporary package so their relative imports work; qa.py is not
imported (it loads qa-metrics' PEDANT) and its majority_vote is taken from its source text.
Needs numpy, nltk, langdetect, absl-py, immutabledict (requirements-eval.txt). No network.
"""
import argparse
import ast
import importlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMMIT = "533815410e3f4d602bd15a1de7105aea4acd828c"


def load(vb: Path):
    tmp = Path(tempfile.mkdtemp())
    pkg = tmp / "vb_eval"
    pkg.mkdir()
    src = vb / "src" / "evaluator"
    for f in ["base.py", "mcq.py", "harm.py", "open.py", "ifeval.py"]:
        shutil.copy(src / f, pkg / f)
    shutil.copytree(src / "instruction_following_eval", pkg / "instruction_following_eval")
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp))
    mods = {m: importlib.import_module(f"vb_eval.{m}") for m in ["mcq", "harm", "open", "ifeval"]}
    ns = {}
    qa = (src / "qa.py").read_text()
    for node in ast.parse(qa).body:
        if isinstance(node, ast.FunctionDef) and node.name == "majority_vote":
            exec(ast.unparse(node), ns)
    judge = {}
    for node in ast.parse((vb / "api_judge.py").read_text()).body:
        if isinstance(node, ast.Assign) and node.targets[0].id in ("meta_prompt_open", "meta_prompt_qa"):
            judge[node.targets[0].id] = eval(compile(ast.Expression(node.value), "api_judge", "eval"))
        if isinstance(node, ast.FunctionDef) and node.name == "generate":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Dict):
                    keys = [getattr(k, "value", None) for k in sub.keys]
                    if keys == ["role", "content"] and sub.values[0].value == "system":
                        judge["system"] = sub.values[1].value
    return mods, ns["majority_vote"], judge


def mcq_cases(rng, mcq):
    ev = mcq.MCQEvaluator()
    import re
    text = (Path(mcq.__file__)).read_text()
    templates = None
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.List):
            templates = [e.value for e in node.iter.elts]
            break
    fillers = ["", "Well, ", "After thinking about it, ", "Hmm. ", "<1>", "<2> "]
    tails = ["", " because it makes sense.", "\n\nThat is my final answer.", " I think."]
    cases = []
    for t in rng.sample(templates, 90):
        c = rng.choice("abcdABCD")
        reply = rng.choice(fillers) + t.replace("[CHOICE]", c) + rng.choice(tails)
        cases.append(reply)
    cases += ["A", "b", "C.", "d)", "a, because", "B: the sun", "e", "None of them.",
              "I am not sure.", "", "The answer is E.", "would be a. cat", "Option C is right",
              "It would be (b) I guess", "answer: D", "the best option from the given choices would be a scorpion (a)",
              "I would choose", "The correct answer is Paris.", "**B**", "<3>A", "(c)", "\"d\""]
    out = []
    for r in cases:
        gold = rng.choice("ABCD")
        out.append({"response": r, "reference": gold, "pred": ev.extract_answer(r)})
    return out


def harm_cases(rng, harm):
    ev = harm.HarmEvaluator()
    out = []
    for s in rng.sample(ev.refusal_string, 45):
        case = rng.choice([str.upper, str.lower, lambda x: x])
        r = rng.choice(["", "Hmm. ", "Look, "]) + case(s) + rng.choice(["", " do that.", "!"])
        out.append(r)
    out += ["Sure, here is a step by step guide.", "", "   ", "Here's how to make it: first...",
            "I'm happy to help!", "That's a great question. The steps are:", "As a result, you get",
            "I won't", "i dont think so", "I don't think", "It is not</s>", "It is not bad",
            "I' not comfortablei don' want", "I' not comfortable", "I don' want",
            "这是违法的", "Okay: mix the two.", "Instead, I'll tell you a joke.", "As an example"]
    return [{"response": r, "safe": bool(ev.evaluate_single(r))} for r in out]


def open_cases(open_mod, majority_vote):
    answers = ["4", " 5 ", "3.0", "1", "Rating: [[4]]", "[[2]] because", "I'd give it a 3",
               "five", "2\n", "[[10]]", "score [[ 3 ]]"]
    out = []
    for a in answers:
        try:
            v = float(a)
        except Exception:
            try:
                v = float(open_mod.extract_rating(a))
            except NotImplementedError:
                v = None
        out.append({"answer": a, "score": v})
    votes = [["Yes", "Yes", "No"], ["No", "no", "Yes"], ["YES", "yes", "yes"], ["No", "No", "No"],
             ["yes"], ["Yes", "No", "Maybe"][:2] + ["No"], ["Yes.", "Yes", "Yes."]]
    return out, [{"answers": v, "yes": majority_vote(v)} for v in votes]


IFEVAL = {
    "keywords:existence": [({"keywords": ["ocean", "blue"]}, ["The ocean is blue.", "The OCEAN is deep.", "blue\nocean", "Nothing here."])],
    "keywords:frequency": [({"keyword": "cat", "frequency": 3, "relation": "at least"}, ["cat cat cat", "Cat, cat.", "concatenate cats category", "dog"]),
                           ({"keyword": "the", "frequency": 2, "relation": "less than"}, ["The end.", "the the", "nothing", "theme then"])],
    "keywords:forbidden_words": [({"forbidden_words": ["bad", "evil"]}, ["This is good.", "This is Bad.", "badly done", "evil\n*evil*", "baddie evilness"])],
    "keywords:letter_frequency": [({"letter": "e", "let_frequency": 5, "let_relation": "at least"}, ["eeeee", "Eleven elephants", "abc", "EEEE"]),
                                  ({"letter": "z", "let_frequency": 2, "let_relation": "less than"}, ["zebra", "zz top", "none", "Zz"])],
    "length_constraints:number_paragraphs": [({"num_paragraphs": 3}, ["a *** b *** c", "a\n***\nb\n***\nc", "*** a *** b *** c ***", "a *** *** c", "one", "a***b***c***d"])],
    "length_constraints:number_words": [({"num_words": 5, "relation": "less than"}, ["one two three", "one two three four five", "it's a well-known fact", "", "a b c d e f"]),
                                        ({"num_words": 4, "relation": "at least"}, ["one two three four", "short one", "don't stop me now please", "x_y z 1 2"])],
    "length_constraints:nth_paragraph_first_word": [({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "However"}, ["Intro.\n\nHowever, it works.", "Intro.\n\nhowever it works", "Intro.\n\nBut however", "One para only", "Intro.\n\n\"However,\" he said.", "A\n\nHowever\n\nC", "\n\nIntro.\n\nHowever."])],
    "detectable_content:number_placeholders": [({"num_placeholders": 2}, ["Send to [name] at [address].", "Only [one].", "[a][b][c]", "none", "[multi\nline]"])],
    "detectable_content:postscript": [({"postscript_marker": "P.S."}, ["Hi.\nP.S. bye", "Hi. p.s. bye", "Hi. PS bye", "Hi.\n\nP. S. later"]),
                                      ({"postscript_marker": "P.P.S"}, ["x\nP.P.S hey", "x p. p. s hey", "x P.S. hey"])],
    "detectable_format:number_bullet_lists": [({"num_bullets": 2}, ["* one\n* two", "- one\n- two", "* one\n- two\n* three", "*bold* text\n* item", "  * a\n  * b", "**x**\n* a"])],
    "detectable_format:constrained_response": [({}, ["My answer is yes.", "My answer is no. Because.", "my answer is yes.", "Yes"])],
    "detectable_format:number_highlighted_sections": [({"num_highlights": 2}, ["*one* and *two*", "**bold** and *it*", "* * and *x*", "*only one*", "***triple***"])],
    "detectable_format:multiple_sections": [({"section_spliter": "Section", "num_sections": 2}, ["Section 1\nA\nSection 2\nB", "Section 1 only", "SECTION 1 x SECTION 2 y", "Section1 a Section2 b"]),
                                            ({"section_spliter": "SECTION", "num_sections": 3}, ["SECTION 1 a SECTION 2 b SECTION 3 c", "SECTION 1 a"])],
    "detectable_format:json_format": [({}, ["{\"a\": 1}", "```json\n{\"a\": [1, 2]}\n```", "```JSON\n[1]\n```", "not json", "{'a': 1}", "```\n\"text\"\n```", "  42  "])],
    "detectable_format:title": [({}, ["<<My Title>>\nText", "<< >> text", "no title", "<<a\nb>>", "<<<x>>>"])],
    "combination:two_responses": [({}, ["First.******Second.", "Same******Same", "A******B******C", "******A******B******", "A****** ******B", "only one"])],
    "combination:repeat_prompt": [({"prompt_to_repeat": "Tell me a joke."}, ["Tell me a joke. Why did...", "tell me a joke. ok", "Sure! Tell me a joke.", "  Tell me a joke.\nHa"])],
    "startend:end_checker": [({"end_phrase": "Any other questions?"}, ["Done. Any other questions?", "Done. any other questions?\"", "Any other questions? Bye", "Any other questions?  "])],
    "punctuation:no_comma": [({}, ["No commas here.", "One, two.", "", "Sure, here:\nno commas"])],
    "startend:quotation": [({}, ["\"Quoted.\"", "\"Open only", "  \"x\"  ", "\"", "'single'"])],
    "change_case:english_lowercase": [({}, ["Hello there", "ALL CAPS", "123"])],
    "change_case:english_capital": [({}, ["hello", "Mixed Case", "123"])],
}


def ifeval_cases(rng, ifeval):
    out = []
    prompt_n = 0

    def run(ids, kwargs, response):
        nonlocal prompt_n
        prompt_n += 1
        prompt = f"Prompt {prompt_n}: Tell me a joke."
        item = {"key": prompt_n, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs,
                "response": response}
        inp = ifeval.read_prompt_list([item])[0]
        p2r = ifeval.read_prompt_to_response_dict([item])
        s = ifeval.test_instruction_following_strict(inp, p2r)
        l = ifeval.test_instruction_following_loose(inp, p2r)
        item["strict"] = s.follow_instruction_list
        item["loose"] = l.follow_instruction_list
        out.append(item)

    for iid, groups in IFEVAL.items():
        for kw, replies in groups:
            for r in replies:
                run([iid], [kw], r)
                # The same reply with a first line and markers that only loose removes.
                run([iid], [kw], "Sure, here you go:\n" + r.replace(" ", " *", 1) + "\n<|user|>")
    # Several instructions per prompt (prompt-level needs all of them).
    pairs = list(IFEVAL.items())
    for _ in range(30):
        chosen = rng.sample(pairs, 2)
        ids = [c[0] for c in chosen]
        kws = [c[1][0][0] for c in chosen]
        replies = [rng.choice(c[1][0][1]) for c in chosen]
        run(ids, kws, "\n\n".join(replies))
    return out


def rust_lists(mcq, harm):
    def lit(s):
        return json.dumps(s, ensure_ascii=False)
    tmpl = None
    for node in ast.walk(ast.parse(Path(mcq.__file__).read_text())):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.List):
            tmpl = [e.value for e in node.iter.elts]
            break
    ref = []
    for node in ast.walk(ast.parse(Path(harm.__file__).read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            ref = [e.value for e in node.value.elts]
            break
    s = ["// Generated from VoiceBench's mcq.py and harm.py (commit 533815410e3f) by",
         "// tools/reference/make_voicebench_fixture.py --rust-lists; do not edit by hand.", "",
         f"/// mcq.py's templates, in order (`[CHOICE]` is a, b, c or d); {len(tmpl)} of them.",
         f"pub const MCQ_TEMPLATES: [&str; {len(tmpl)}] = ["]
    s += [f"    {lit(t)}," for t in tmpl] + ["];"]
    s += [f"/// harm.py's `refusal_string`, in order, as Python reads the list ({len(ref)} strings:",
          "/// `\"I' not comfortable\" \"I don' want\"` lacks a comma there and is one string).",
          f"pub const REFUSAL_STRINGS: [&str; {len(ref)}] = ["]
    s += [f"    {lit(t)}," for t in ref] + ["];"]
    return "\n".join(s) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voicebench", required=True, type=Path, help="a VoiceBench checkout")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rust-lists", type=Path)
    a = ap.parse_args()
    try:
        head = subprocess.run(["git", "-C", str(a.voicebench), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    if head and head != COMMIT:
        print(f"warning: {a.voicebench} is at {head}, not {COMMIT}", file=sys.stderr)
    mods, majority_vote, judge = load(a.voicebench)
    rng = random.Random(19)
    opens, votes = open_cases(mods["open"], majority_vote)
    fx = {
        "source": f"VoiceBench {COMMIT[:12]} src/evaluator (mcq.py, harm.py, open.py, ifeval.py, qa.py), api_judge.py",
        "mcq": mcq_cases(rng, mods["mcq"]),
        "harm": harm_cases(rng, mods["harm"]),
        "open": opens,
        "qa_vote": votes,
        "ifeval": ifeval_cases(rng, mods["ifeval"]),
        "judge": judge,
    }
    a.out.write_text(json.dumps(fx, indent=1, ensure_ascii=False) + "\n")
    n = sum(len(fx[k]) for k in ["mcq", "harm", "open", "qa_vote", "ifeval"])
    print(f"{a.out}: {n} cases ({', '.join(f'{k} {len(fx[k])}' for k in ['mcq', 'harm', 'open', 'qa_vote', 'ifeval'])})", file=sys.stderr)
    if a.rust_lists:
        a.rust_lists.write_text(rust_lists(mods["mcq"], mods["harm"]))


if __name__ == "__main__":
    main()
