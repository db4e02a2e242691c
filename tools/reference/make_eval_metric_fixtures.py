"""Reference values for diva-eval's metrics (issue 19), written to tests/fixtures/eval/.

- translation.json: corpus and sentence BLEU and chrF / chrF++ from sacrebleu (its defaults:
  BLEU 13a, exp smoothing, effective order for sentence_bleu only; chrF char order 6, word
  order 0 or 2, beta 2) on ~260 deterministic sentence pairs in English, German, French,
  Spanish (13a), Chinese (zh) and Japanese (char, and ja-mecab for information), two systems
  each, plus a multi-reference set and an edge-case set; the tokenized lines and per-sentence
  BLEU statistics are stored too.
- classify.json: label extraction (an independent regex implementation of diva's rule: the
  first label of the set mentioned in the reply, case and punctuation insensitive, whole
  words, the longest label first at one position, none = wrong) on tricky replies, and
  sklearn's f1_score(average="weighted") and accuracy_score on the extracted labels.
- qa.json: SQuAD v1.1 exact match and token F1 (the official script's functions, copied
  below) with the max over accepted answers, and qa-metrics' PEDANT (its own class and code,
  fast_eval=True, fast_model=False, the defaults) decisions and per-reference scores on ~300
  (question, accepted answers, reply) triples built from data/spoken-qa/questions.jsonl.
- pedant_pruned.safetensors: the PEDANT model given by --pedant-dir in diva's format
  (see crates/diva-eval/src/pedant.rs), its vocabulary cut to the words that occur in qa.json,
  which gives the same features for those texts (tf-idf rows are over present words only).
- bootstrap.json: a NumPy paired bootstrap (10,000 resamples, np.random.default_rng(seed))
  for accuracy, token F1, weighted F1, corpus BLEU and chrF between two systems: observed
  scores, bootstrap means and standard deviations, 2.5/97.5 percentiles (np.percentile,
  linear) and the quantile bands that bound Monte Carlo error (see `band` below), the
  two-sided p-value of the centred test and sacrebleu's paired-bootstrap p-value formula
  (plus sacrebleu's own _paired_bs_test p-value for BLEU).

PEDANT's pickles: qa-metrics 0.2.42 downloads them from github.com/zli12321/pedant_models
(files without the .pkl suffix, HEAD). Give a directory holding lr_classifier.pkl,
tf-idf_vectorizer.pkl, rule_classifier.pkl and type_classifier.pkl from one commit, e.g.
    for f in lr_classifier tf-idf_vectorizer rule_classifier type_classifier; do
      git -C pedant_models show 12b835a:$f > pedant/$f.pkl; done
--export-pedant FILE also writes the whole model (about 8 MB) for `diva eval`.

The pickles need scikit-learn 1.3.2 (they reference sklearn's old `Log` loss class), which
needs numpy < 2, so this script runs in its own venv (tools/reference/requirements-eval.txt):
    python3.11 -m venv ~/.cache/diva/venv-ref-eval
    ~/.cache/diva/venv-ref-eval/bin/pip install -r tools/reference/requirements-eval.txt
    ~/.cache/diva/venv-ref-eval/bin/python tools/reference/make_eval_metric_fixtures.py \\
        --out tests/fixtures/eval --pedant-dir PEDANT_PICKLES
"""
import argparse
import collections
import json
import os
import random
import re
import string
import sys
import warnings

import numpy as np

warnings.simplefilter("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import joblib  # noqa: E402
import regex  # noqa: E402
import sacrebleu  # noqa: E402
import sklearn  # noqa: E402
from sacrebleu.metrics import BLEU, CHRF  # noqa: E402
from sacrebleu.significance import _paired_bs_test  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

B = 10_000
# Monte Carlo bound: sigmas of the binomial rank error allowed when comparing two
# independent bootstraps (see `band`).
K_SIGMA = 4.0


# --------------------------------------------------------------------------- sentences

EN_FIXED = [
    "The meeting was moved to 3:30 p.m. on Friday, March 14.",
    "Prices rose by 2.5% in the third quarter, the highest rise since 2019.",
    'She said: "We\'re not ready yet, but we will be."',
    "A state-of-the-art model now costs $1,200 (about 1,100 euros).",
    "The well-known author J. R. R. Tolkien published The Hobbit in 1937.",
    "Turn left at the second light, then drive 500 meters north.",
    "It's 10-15 minutes from here by bus, or 5 by taxi.",
    "Don't forget: the deadline is 11:59 PM, not midnight!",
    "Is this the train to Berlin? No, that one leaves from platform 9.",
    "The company's revenue grew from $3.2 billion to $4.1 billion.",
    "Hello, world.",
    "Yes.",
    "Thank you very much for your help & patience.",
    "The temperature dropped to -5 degrees overnight.",
    "Our U.S. office opens at 9 a.m.; the U.K. office at 8.",
    "He scored 3 goals in the first half - a personal record.",
    "Read chapters 1-3 before next week's class.",
    "The file is called report_final_v2.pdf, not report.pdf.",
    "Why would anyone do that?!",
    "Please e-mail me at the address on the website.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "The recipe needs 2 cups of flour, 1/2 cup of sugar and 3 eggs.",
    "That's what I call a well-deserved break...",
    "Ladies and gentlemen, the show will begin in five minutes.",
    "The price is 1.000,50 in some countries and 1,000.50 in others.",
    "Mr. Smith (the new manager) starts on Monday.",
    "Can you hear me now? I can't hear you at all.",
    "The ratio was 3:1 in favour of the proposal.",
    "The children played outside until it got dark.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Our team - small but dedicated - finished the project on time.",
    "You can't always get what you want.",
    "The quick brown fox jumps over the lazy dog.",
    "We need to talk about the budget for next year.",
    "A 24-hour pharmacy is just around the corner.",
    "The museum is closed on Mondays and public holidays.",
    "I'll call you back in about an hour, OK?",
    "The results, however, were not statistically significant.",
    "Version 2.0 fixes 37 bugs and adds dark mode.",
    "Her grandmother was born in Lisbon in 1931.",
]
EN_SUBJ = ["The new government", "My older brother", "The small startup", "Our neighbours",
           "The research team", "A local farmer", "The city council", "Most students",
           "The orchestra", "Her best friend", "The airline", "This old bakery"]
EN_VERB = ["announced", "rejected", "celebrated", "postponed", "discussed", "finished",
           "criticised", "approved", "described", "planned"]
EN_OBJ = ["a plan to cut taxes", "the proposal for a new bridge", "its tenth anniversary",
          "the summer festival", "the results of the survey", "a long-awaited report",
          "the decision to close the school", "a trip to the mountains",
          "the price increase", "an ambitious five-year strategy"]
EN_TAIL = ["on Tuesday.", "last week.", "after months of debate.", "in a short statement.",
           "earlier than expected.", "despite the bad weather.", "for the second time this year.",
           "at 6:45 this morning.", "with a 52% majority.", "- again."]

DE = [
    "Das Treffen wurde auf Freitag, den 14. März, verschoben.",
    "Die Preise stiegen im dritten Quartal um 2,5 %.",
    "„Wir sind noch nicht bereit“, sagte sie.",
    "Der Zug nach München fährt um 15:30 Uhr von Gleis 9 ab.",
    "Können Sie mir bitte helfen? Ich habe mich verlaufen.",
    "Die Kinder spielten draußen, bis es dunkel wurde.",
    "Wasser kocht auf Meereshöhe bei 100 Grad Celsius.",
    "Das Museum ist montags und an Feiertagen geschlossen.",
    "Unsere Großmutter wurde 1931 in Lissabon geboren.",
    "Vielen Dank für Ihre Hilfe und Geduld!",
    "Die Ergebnisse waren jedoch nicht signifikant.",
    "Ein 24-Stunden-Apotheke ist gleich um die Ecke.",
    "Er schoss in der ersten Halbzeit drei Tore.",
    "Bitte lesen Sie die Kapitel 1-3 bis nächste Woche.",
]
FR = [
    "La réunion a été déplacée au vendredi 14 mars à 15 h 30.",
    "Les prix ont augmenté de 2,5 % au troisième trimestre.",
    "« Nous ne sommes pas encore prêts », a-t-elle dit.",
    "L'enfant n'a pas voulu manger ses légumes.",
    "Où est la gare ? Je crois que je suis perdu.",
    "Le musée est fermé le lundi et les jours fériés.",
    "L'eau bout à 100 degrés Celsius au niveau de la mer.",
    "Merci beaucoup pour votre aide et votre patience !",
    "Les résultats n'étaient cependant pas significatifs.",
    "Aujourd'hui, il fait -5 degrés à Montréal.",
    "C'est un modèle de pointe qui coûte 1 200 euros.",
    "Qu'est-ce que tu veux faire ce week-end ?",
    "Les enfants ont joué dehors jusqu'à la nuit.",
    "Sa grand-mère est née à Lisbonne en 1931.",
]
ES = [
    "La reunión se trasladó al viernes 14 de marzo.",
    "Los precios subieron un 2,5 % en el tercer trimestre.",
    "«Todavía no estamos listos», dijo ella.",
    "¿Dónde está la estación? Creo que estoy perdido.",
    "¡Muchas gracias por tu ayuda y paciencia!",
    "El museo cierra los lunes y los días festivos.",
    "El agua hierve a 100 grados Celsius al nivel del mar.",
    "Los resultados, sin embargo, no fueron significativos.",
    "Su abuela nació en Lisboa en 1931.",
    "Los niños jugaron fuera hasta que oscureció.",
    "El tren a Madrid sale a las 15:30 del andén 9.",
    "Es un modelo de última generación que cuesta 1.200 euros.",
]
ZH = [
    "今天的会议改到下午三点半。",
    "价格在第三季度上涨了2.5%，是2019年以来的最高涨幅。",
    "她说：“我们还没准备好，但很快就会好。”",
    "这款GPU的售价约为1,200美元（约合€1,100）。",
    "《三体》是刘慈欣写的科幻小说——非常受欢迎。",
    "请在第二个红绿灯左转，然后向北开500米。",
    "从这里坐公交车大约10-15分钟。",
    "别忘了：截止时间是晚上11:59，不是午夜！",
    "这是去北京的火车吗？不是，那趟在9号站台。",
    "公司的收入从32亿美元增长到41亿美元。",
    "你好，世界。",
    "是的。",
    "非常感谢你的帮助和耐心。",
    "气温在夜里降到了零下5度。",
    "他在上半场进了3个球，创造了个人纪录。",
    "下周上课前请读完第1-3章。",
    "1969年，阿姆斯特朗成为第一个登上月球的人。",
    "这个菜谱需要两杯面粉、半杯糖和三个鸡蛋……",
    "孩子们在外面玩到天黑。",
    "在海平面上，水在100摄氏度时沸腾。",
    "博物馆周一和节假日闭馆。",
    "我大约一个小时后给你回电话，好吗？",
    "然而，结果在统计上并不显著。",
    "2.0版修复了37个错误，并增加了深色模式。",
    "她的祖母1931年出生于里斯本。",
    "研究团队在周二公布了调查结果。",
    "市议会以52%的多数批准了新桥的提案。",
    "这家小面包店庆祝了它的十周年。",
    "航空公司推迟了夏季航班的计划。",
    "我们需要讨论明年的预算。",
    "The Hobbit的中文名是《霍比特人》。",
    "他的邮箱是 li.ming@example.com 。",
    "温度：25°C；湿度：60%。",
    "“人工智能”这个词出现于1956年。",
    "我们的团队——虽然很小——按时完成了项目。",
    "你能听到我吗？我完全听不到你。",
    "比例是3:1，支持这项提议。",
    "新政府宣布了一项减税计划。",
    "大多数学生在上周完成了考试。",
    "这家初创公司的估值超过10亿元。",
    "ＧＤＰ增长了６．５％。",
    "北京、上海和广州是中国最大的城市。",
    "他喜欢喝咖啡☕，不喜欢喝茶。",
    "第一章：开始。第二章：结束。",
]
JA = [
    "明日の会議は午後3時半に変更されました。",
    "価格は第3四半期に2.5%上昇し、2019年以来の最高となった。",
    "「まだ準備ができていない」と彼女は言った。",
    "このGPUの価格は約1,200ドルです。",
    "二つ目の信号を左に曲がって、北へ500メートル進んでください。",
    "ここからバスで10〜15分ほどです。",
    "締め切りは午後11時59分です。忘れないでください！",
    "これはベルリン行きの電車ですか？いいえ、9番線です。",
    "こんにちは、世界。",
    "はい。",
    "ご協力とご辛抱に心から感謝いたします。",
    "夜の間に気温が零下5度まで下がった。",
    "彼は前半に3ゴールを決め、自己最高記録を作った。",
    "1969年、アームストロングは月面を歩いた最初の人になった。",
    "子供たちは暗くなるまで外で遊んだ。",
    "水は海面では100度で沸騰する。",
    "博物館は月曜日と祝日が休館です。",
    "一時間ほどで折り返し電話しますね。",
    "しかし、その結果は統計的に有意ではなかった。",
    "バージョン2.0では37件のバグが修正された。",
    "彼女の祖母は1931年にリスボンで生まれた。",
    "研究チームは火曜日に調査結果を発表した。",
    "市議会は52%の賛成で新しい橋の計画を承認した。",
    "この小さなパン屋は創業10周年を祝った。",
    "来年の予算について話し合う必要があります。",
    "東京、大阪、名古屋は日本の大都市です。",
    "私はコーヒーが好きですが、紅茶はあまり飲みません。",
    "彼のメールアドレスは taro@example.jp です。",
    "気温：25°C、湿度：60％。",
    "ＡＩ（人工知能）の研究は1956年に始まった。",
    "私たちのチームは小さいが、期限までにプロジェクトを終えた。",
    "もしもし、聞こえますか？全然聞こえません。",
    "新しい政府は減税計画を発表した。",
    "ほとんどの学生は先週試験を終えた。",
    "桜の花は春に咲きます……とても綺麗です。",
    "日本語の文章には、ひらがな・カタカナ・漢字が使われる。",
    "その本は『吾輩は猫である』です。",
    "駅まで歩いて5分、タクシーなら2分です。",
]
EN_SYN = {"moved": "changed", "rose": "increased", "highest": "largest", "costs": "is",
          "published": "wrote", "drive": "go", "minutes": "mins", "forget": "miss",
          "grew": "increased", "played": "stayed", "closed": "shut", "begin": "start",
          "announced": "said", "rejected": "refused", "plan": "proposal", "new": "recent",
          "small": "little", "week": "weekend", "report": "document", "results": "outcome"}


def perturb_words(rng, s, rate):
    """A plausible system output: words dropped, repeated, swapped, substituted, recased,
    punctuation lost, numbers reformatted (rate = chance per operation)."""
    w = s.split()
    out = []
    i = 0
    while i < len(w):
        t = w[i]
        r = rng.random()
        if r < rate * 0.25 and len(w) > 3:
            i += 1  # dropped
            continue
        if r < rate * 0.40 and i + 1 < len(w):
            out += [w[i + 1], t]  # swapped
            i += 2
            continue
        core = t.strip(string.punctuation)
        if r < rate * 0.60 and core.lower() in EN_SYN:
            t = t.replace(core, EN_SYN[core.lower()])
        elif r < rate * 0.70:
            t = t.lower() if t[:1].isupper() else t.capitalize()
        elif r < rate * 0.80:
            t = t.strip(".,!?;:")
            if not t:
                i += 1
                continue
        elif r < rate * 0.85:
            out.append(t)  # repeated
        out.append(t)
        i += 1
    h = " ".join(out)
    if rng.random() < rate * 0.3:
        h = h.replace("-", " ") if "-" in h else h.replace(",", "")
    if rng.random() < rate * 0.2:
        h = h.replace("%", " percent").replace("$", "USD ")
    return h


def perturb_chars(rng, s, rate, pool):
    """The same for unsegmented scripts: characters dropped, substituted, swapped,
    punctuation changed between full and half width."""
    width = {"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "（": "(", "）": ")",
             "、": ","}
    out = []
    cs = list(s)
    i = 0
    while i < len(cs):
        c = cs[i]
        r = rng.random()
        if r < rate * 0.3:
            i += 1
            continue
        if r < rate * 0.45 and i + 1 < len(cs):
            out += [cs[i + 1], c]
            i += 2
            continue
        if r < rate * 0.75:
            c = rng.choice(pool)
        elif r < rate * 0.9 and c in width:
            c = width[c]
        out.append(c)
        i += 1
    return "".join(out)


def build_sentences(rng):
    en = list(EN_FIXED)
    while len(en) < 125:
        en.append(f"{rng.choice(EN_SUBJ)} {rng.choice(EN_VERB)} {rng.choice(EN_OBJ)} "
                  f"{rng.choice(EN_TAIL)}")
    sets = []

    def sys_pair(refs, kind, rate_a, rate_b, pool=None):
        a, b = [], []
        for r in refs:
            if kind == "words":
                a.append(perturb_words(rng, r, rate_a))
                b.append(perturb_words(rng, r, rate_b))
            else:
                a.append(perturb_chars(rng, r, rate_a, pool))
                b.append(perturb_chars(rng, r, rate_b, pool))
        return a, b

    a, b = sys_pair(en, "words", 0.25, 0.45)
    # A few outputs that are special for BLEU: empty, identical, one token.
    a[11], b[11] = "", "Yes"
    a[10] = en[10]
    b[20] = en[20].upper()
    sets.append(dict(name="en", lang="en", tokenize="13a", refs=[[r] for r in en], a=a, b=b))
    latin = DE + FR + ES
    a, b = sys_pair(latin, "words", 0.3, 0.5)
    sets.append(dict(name="de-fr-es", lang="de", tokenize="13a", refs=[[r] for r in latin],
                     a=a, b=b))
    zh_pool = list("的是在了不和有大这主中人上为们地个用工时要动国产以我到他会作来分生对于学下级就年")
    a, b = sys_pair(ZH, "chars", 0.15, 0.3, zh_pool)
    sets.append(dict(name="zh", lang="zh", tokenize="zh", refs=[[r] for r in ZH], a=a, b=b))
    ja_pool = list("のにはをたがでてとしれさあるいうかもなこ日本人年大一中")
    a, b = sys_pair(JA, "chars", 0.15, 0.3, ja_pool)
    sets.append(dict(name="ja", lang="ja", tokenize="char", refs=[[r] for r in JA], a=a, b=b))

    # Two references per item (the second a paraphrase-like variant), one item with a
    # single reference (sacrebleu's None for a missing one).
    multi = en[40:60]
    refs = [[r, perturb_words(rng, r, 0.3)] for r in multi]
    refs[3] = [multi[3]]
    a, b = sys_pair(multi, "words", 0.3, 0.5)
    sets.append(dict(name="multi-ref", lang="en", tokenize="13a", refs=refs, a=a, b=b))

    # Edge cases for the tokenizers and the statistics.
    edge_refs = [
        "A <skipped> word and &quot;quoted&quot; &amp; &lt;tagged&gt; text.",
        "A broken line-\nand a second\nline.",
        "Tabs\tand\u00a0non-breaking\u2003spaces, and\x1cfile\x1fseparators.",
        "...",
        "x",
        "3.14 and 3,14 and 3 . 14 and a.b,c",
        "(Parenthesised) [bracketed] {braced} <angled> `ticked` ~tilde~ ^caret^ |pipe|",
        "2020-2021 vs 2020 - 2021 vs A-B",
        "“Smart quotes” — an em dash… and ‘single’ ones",
        "Ünïcödé äccents: café, naïve, Zürich.",
        "Mixed 中文 and English, 日本語も。",
        "trailing spaces   ",
    ]
    edge_a = [
        "A word and \"quoted\" & <tagged> text.",
        "A broken line and a second line.",
        "Tabs and non-breaking spaces, and file separators.",
        ". . .",
        "x",
        "3.14 and 3, 14 and 3.14 and a.b, c",
        "(Parenthesised) [bracketed] {braced} angled `ticked` tilde caret |pipe|",
        "2020-2021 vs 2020-2021 vs A - B",
        "\"Smart quotes\" - an em dash... and 'single' ones",
        "Unicode accents: cafe, naive, Zurich.",
        "Mixed 中文 and English, 日本語も.",
        "trailing spaces",
    ]
    edge_b = ["", " ", "\n", "...", "y", "3.14", "()", "-", "“”", "é", "中", "   trailing"]
    sets.append(dict(name="edge", lang="en", tokenize="13a", refs=[[r] for r in edge_refs],
                     a=edge_a, b=edge_b))
    # The zh tokenizer on the same edge lines (its character ranges, sacrebleu's as written).
    sets.append(dict(name="edge-zh", lang="zh", tokenize="zh", refs=[[r] for r in edge_refs],
                     a=edge_a, b=edge_b))
    return sets


def bleu_metric(tokenize, effective_order=False):
    return BLEU(tokenize=tokenize, effective_order=effective_order)


def translation_fixture(sets):
    out = []
    chrf = CHRF()
    chrfpp = CHRF(word_order=2)
    for s in sets:
        nref = max(len(r) for r in s["refs"])
        # sacrebleu's layout: one stream per reference position, None where missing.
        streams = [[r[k] if k < len(r) else None for r in s["refs"]] for k in range(nref)]
        rec = dict(name=s["name"], lang=s["lang"], tokenize=s["tokenize"], refs=s["refs"],
                   hyps_a=s["a"], hyps_b=s["b"])
        bleu = bleu_metric(s["tokenize"])
        tok = bleu.tokenizer
        rec["tokenized_refs"] = [[tok(x.rstrip()) for x in r] for r in s["refs"]]
        rec["tokenized_a"] = [tok(x.rstrip()) for x in s["a"]]
        for side in ("a", "b"):
            hyps = s[side]
            cb = sacrebleu.corpus_bleu(hyps, streams, tokenize=s["tokenize"])
            rec[f"corpus_bleu_{side}"] = dict(score=cb.score, counts=cb.counts,
                                              totals=cb.totals, sys_len=cb.sys_len,
                                              ref_len=cb.ref_len, bp=cb.bp)
            rec[f"corpus_chrf_{side}"] = chrf.corpus_score(hyps, streams).score
            rec[f"corpus_chrfpp_{side}"] = chrfpp.corpus_score(hyps, streams).score
            rec[f"bleu_stats_{side}"] = [[int(v) for v in st] for st in
                                         bleu._extract_corpus_statistics(hyps, streams)]
            rec[f"sentence_bleu_{side}"] = [
                sacrebleu.sentence_bleu(h, r, tokenize=s["tokenize"]).score
                for h, r in zip(hyps, s["refs"])]
            rec[f"sentence_chrf_{side}"] = [sacrebleu.sentence_chrf(h, r).score
                                            for h, r in zip(hyps, s["refs"])]
            rec[f"sentence_chrfpp_{side}"] = [
                sacrebleu.sentence_chrf(h, r, word_order=2).score
                for h, r in zip(hyps, s["refs"])]
        if s["lang"] == "ja":
            # For information only: diva has no MeCab, so ja is scored with `char`.
            rec["ja_mecab_corpus_bleu_a"] = sacrebleu.corpus_bleu(
                s["a"], streams, tokenize="ja-mecab").score
            rec["ja_mecab_corpus_bleu_b"] = sacrebleu.corpus_bleu(
                s["b"], streams, tokenize="ja-mecab").score
        out.append(rec)
    return out


# --------------------------------------------------------------------------- classification

def ref_words(text):
    # diva's word: a maximal run of letters, digits and marks, lower-cased.
    return regex.findall(r"[\p{L}\p{N}\p{M}]+", text.lower())


def ref_extract(labels, reply):
    """An independent implementation of the rule (regex search over the normalised reply)."""
    norm_reply = " " + " ".join(ref_words(reply)) + " "
    best = None
    for i, lab in enumerate(labels):
        words = ref_words(lab)
        m = re.search(" " + re.escape(" ".join(words)) + " ", norm_reply)
        if m is None:
            continue
        key = (m.start(), -len(words))
        if best is None or key < best[0]:
            best = (key, i)
    return None if best is None else best[1]


def classify_fixture(rng):
    tasks = []
    specs = [
        ("meld-emotion", ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"],
         [0.45, 0.17, 0.07, 0.11, 0.12, 0.03, 0.05], "weighted_f1"),
        ("iemocap-4", ["neutral", "happy", "sad", "angry"], [0.4, 0.25, 0.2, 0.15],
         "weighted_f1"),
        ("mustard-sarcasm", ["sarcastic", "not sarcastic"], [0.5, 0.5], "accuracy"),
        ("humor", ["humorous", "not humorous"], [0.4, 0.6], "accuracy"),
    ]
    templates = [
        "{l}", "{L}", "{l}.", "The emotion is {l}.", "I'd say {U}!", "Answer: {l}",
        "**{l}**", "It sounds {l} to me.", "{l}, clearly", "Label - {l}",
        "Probably {l} (but maybe {o})", "\"{l}\"", "I think the speaker is {l}...",
        "{l}; {o} is less likely.",
    ]
    tricky = [
        "unknown", "I can't tell.", "", "None of these.", "N/A", "neutral-ish?",
        "joyful", "unhappy", "angrily", "Sadness? No: anger.", "not sure - maybe {o} or {l}",
        "It is not {l}, it is {o}.", "{o}{l}", "{l}{l}", "The label is {O} and not {L}.",
        "Not sarcastic at all.", "sarcastic? Not sarcastic.", "NOT-SARCASTIC", "non-sarcastic",
        "It's sarcastic!", "Not humorous.", "humor", "Humorous!", "nothumorous",
        "fear/disgust", "Disgust, fear", "Surprise!!!", "happy-go-lucky", "SAD :(",
        "anger management", "in fear of", "a sad, angry man",
    ]
    for name, labels, prior, metric in specs:
        items = []
        for k in range(120 if len(labels) > 2 else 80):
            gold = rng.choices(range(len(labels)), weights=prior)[0]
            # Replies: mostly right, some confusions, some tricky ones.
            r = rng.random()
            shown = gold if r < 0.6 else rng.randrange(len(labels))
            other = rng.choice([i for i in range(len(labels)) if i != shown])
            if rng.random() < 0.25:
                t = rng.choice(tricky)
            else:
                t = rng.choice(templates)
            reply = t.format(l=labels[shown], L=labels[shown].capitalize(),
                             U=labels[shown].upper(), o=labels[other], O=labels[other].upper())
            items.append(dict(reply=reply, gold=labels[gold]))
        preds = [ref_extract(labels, it["reply"]) for it in items]
        y_true = [it["gold"] for it in items]
        y_pred = [labels[p] if p is not None else "<none>" for p in preds]
        for it, p in zip(items, preds):
            it["expected"] = None if p is None else labels[p]
        tasks.append(dict(
            name=name, labels=labels, metric=metric, items=items,
            weighted_f1=f1_score(y_true, y_pred, average="weighted"),
            accuracy=accuracy_score(y_true, y_pred)))
    # Plain label lists (no extraction): sklearn's weighted F1 with a label that is
    # never predicted and one that is only predicted.
    y_true = ["a", "b", "c", "a", "b", "c", "a", "a", "b", "d"]
    y_pred = ["a", "c", "c", "a", "b", "b", "b", "e", "b", "a"]
    plain = dict(y_true=y_true, y_pred=y_pred,
                 weighted_f1=f1_score(y_true, y_pred, average="weighted"),
                 accuracy=accuracy_score(y_true, y_pred))
    return dict(tasks=tasks, plain=plain)


# --------------------------------------------------------------------------- spoken QA

def squad_normalize_answer(s):
    """SQuAD v1.1 evaluate-v1.1.py, verbatim."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_f1(prediction, ground_truth):
    prediction_tokens = squad_normalize_answer(prediction).split()
    ground_truth_tokens = squad_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_em(prediction, ground_truth):
    return squad_normalize_answer(prediction) == squad_normalize_answer(ground_truth)


def qa_items(rng):
    qs = [json.loads(line) for line in open(os.path.join(REPO, "data/spoken-qa/questions.jsonl"),
                                            encoding="utf-8")]
    by_cat = collections.defaultdict(list)
    for q in qs:
        by_cat[q["category"]].append(q)
    right = [
        "{a}", "{A}", "{a}.", "The answer is {a}.", "I believe it's {a}, but I'm not sure.",
        "{U}!!!", "It is {a}", "Hmm... {a}?", "That would be {a}, of course.",
        "Not {w}, it's {a}.", "“{a}”", "{a} — definitely.",
    ]
    wrong = [
        "{w}", "The answer is {w}.", "I think it's {w}.", "{w}, I guess", "Maybe {w}?",
        "I don't know.", "", "...", "Sorry, I can't answer that.", "unknown",
        "That is a great question!", "Could you repeat the question?",
    ]
    near = [
        "{a}s", "{h}", "the {a}", "{a} and {w}", "somewhere near {w}", "{p}", "It is {p}.",
        "I'd say {p}",
    ]
    items = []
    for q in qs:
        ans = q["answers"]
        a = rng.choice(ans)
        pool = [x for x in by_cat[q["category"]] if x["id"] != q["id"]]
        w = rng.choice(rng.choice(pool)["answers"])
        r = rng.random()
        t = rng.choice(right if r < 0.45 else wrong if r < 0.85 else near)
        half = a[: max(1, len(a) // 2)]
        # Part of a several-word answer (the learned scorer decides these).
        longest = max(ans, key=lambda x: len(x.split()))
        part = longest.split()[-1] if len(longest.split()) > 1 else half
        if len(longest.split()) > 1 and rng.random() < 0.3:
            t = rng.choice(near[-3:])
        items.append(dict(id=q["id"], question=q["question"], answers=ans,
                          reply=t.format(a=a, A=a.capitalize(), U=a.upper(), w=w, h=half,
                                         p=part)))
    # Hand-written pairs for PEDANT's containment rule and the normalisation.
    extra = [
        ("What is the capital of Italy?", ["Rome"], "Romeo and Juliet"),
        ("What is the capital of France?", ["Paris"], "Pariss"),
        ("What is the capital of France?", ["Paris"], "Pari"),
        ("What is the capital of Colombia?", ["Bogota"], "It’s Bogotá."),
        ("What is the capital of Colombia?", ["Bogotá"], "bogota"),
        ("Who wrote Hamlet?", ["William Shakespeare", "Shakespeare"], "shakespeare's play"),
        ("What do you call a doctor for animals?", ["a vet", "vet", "veterinarian"], "A VET"),
        ("What do you call a doctor for animals?", ["a vet"], "vet"),
        ("What is 2 plus 3?", ["5", "five"], "5.0"),
        ("What is 2 plus 3?", ["5", "five"], "It's 4 + 1 = V"),
        ("What is the capital city of the United States?", ["Washington D.C."], "washington dc"),
        ("What is the capital city of the United States?", ["Washington D.C."],
         "Washington, D. C."),
        ("What animal is famous for changing its color?", ["the chameleon"], "The Chameleon!"),
        ("Which ocean is the largest?", ["the Pacific Ocean", "Pacific"],
         "The Pacific, by far."),
        ("What is the opposite of up?", ["down"], "downtown"),
        ("What is the past tense of go?", ["went"], "go → went"),
        ("What is the boiling point of water in Celsius?", ["100", "one hundred"],
         "one hundred degrees"),
        ("What is the boiling point of water in Celsius?", ["100"], "1000"),
        ("Who painted the Mona Lisa?", ["Leonardo da Vinci"], "da Vinci"),
        ("Who painted the Mona Lisa?", ["Leonardo da Vinci"], "Leonardo DiCaprio"),
        ("Which planet is known as the red planet?", ["Mars"], "marsupial"),
        ("What is the largest planet?", ["Jupiter"], "Saturn, then Jupiter."),
        ("What is H2O?", ["water"], "Water (H₂O)."),
        ("What is the capital of Germany?", ["Berlin"], "\tBerlin\n"),
        ("What is the capital of Germany?", ["Berlin"], "B-e-r-l-i-n"),
        ("What is the capital of Germany?", ["Berlin"], "Bonn"),
        ("What is the capital of Germany?", ["Berlin"], "the the the"),
        ("What is the capital of Germany?", ["The"], "Munich"),
        ("Name a primary colour.", ["red", "blue", "yellow"], "Blue is one."),
        ("What is the speed of light?", ["299,792 km/s"], "about 300,000 km per second"),
    ]
    for k, (q, ans, reply) in enumerate(extra):
        items.append(dict(id=f"extra-{k:02d}", question=q, answers=ans, reply=reply))
    return items


def load_pedant(pedant_dir):
    from qa_metrics.pedant import PEDANT
    p = PEDANT.__new__(PEDANT)  # skip __init__: it downloads the current model files
    p.fast_eval, p.fast_model = True, False
    p.model = joblib.load(os.path.join(pedant_dir, "lr_classifier.pkl"))
    p.tokenizer = joblib.load(os.path.join(pedant_dir, "tf-idf_vectorizer.pkl"))
    p.rule_model = joblib.load(os.path.join(pedant_dir, "rule_classifier.pkl"))
    p.type_model = joblib.load(os.path.join(pedant_dir, "type_classifier.pkl"))
    return p


def qa_fixture(rng, pedant):
    from qa_metrics.utils.tools import normalize_answer
    items = qa_items(rng)
    for it in items:
        ans, reply, q = it["answers"], it["reply"], it["question"]
        it["exact_match"] = float(max(squad_em(reply, a) for a in ans))
        it["f1"] = float(max(squad_f1(reply, a) for a in ans))
        it["squad_normalized"] = squad_normalize_answer(reply)
        it["pedant_normalized"] = normalize_answer(reply)
        it["pedant"] = bool(pedant.evaluate(ans, reply, q))
        # Decided by the containment rule alone (no classifier involved)?
        nr = normalize_answer(reply)
        it["pedant_by_rule"] = bool(len(reply) > 0 and any(normalize_answer(a) in nr for a in ans))
        it["pedant_scores"] = [float(pedant.get_score(a, reply, q)) for a in ans]
    return items


def pedant_texts(items):
    from qa_metrics.utils.tools import normalize_answer
    texts = []
    for it in items:
        q = normalize_answer(it["question"])
        c = normalize_answer(it["reply"])
        for a in it["answers"]:
            r = normalize_answer(a)
            texts.append(f"[CLS] {q} [SEP] {r} [SEP] {c} [SEP]")
    return texts


def export_pedant(pedant, path, source, keep_words=None):
    """diva's PEDANT format: the tf-idf vocabulary (column order) and idf, and the three
    SGD log-loss classifiers' weights, with the vocabulary optionally cut to keep_words."""
    from st_util import save_file
    vec = pedant.tokenizer
    V = len(vec.vocabulary_)
    inv = sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])
    cols = [i for w, i in inv if keep_words is None or w in keep_words]
    words = [inv[i][0] for i in cols]
    cols = np.array(cols, dtype=np.int64)
    rule, typ, final = pedant.rule_model, pedant.type_model, pedant.model
    assert rule.coef_.shape[1] == V + 3 and typ.coef_.shape[1] == V
    nr, nt = rule.coef_.shape[0], typ.coef_.shape[0]
    assert final.coef_.shape == (1, 3 + nr + nt + V), "final classifier layout"
    assert list(final.classes_) == ["correct", "incorrect"]
    rule_cols = np.concatenate([cols, np.arange(V, V + 3)])
    final_cols = np.concatenate([np.arange(3 + nr + nt), 3 + nr + nt + cols])
    tensors = {
        "vocab": np.frombuffer("\n".join(words).encode("utf-8"), dtype=np.uint8).copy(),
        "idf": vec.idf_[cols].astype(np.float64),
        "rule_coef": np.ascontiguousarray(rule.coef_[:, rule_cols], dtype=np.float64),
        "rule_intercept": rule.intercept_.astype(np.float64),
        "type_coef": np.ascontiguousarray(typ.coef_[:, cols], dtype=np.float64),
        "type_intercept": typ.intercept_.astype(np.float64),
        "final_coef": np.ascontiguousarray(final.coef_[0, final_cols], dtype=np.float64),
        "final_intercept": final.intercept_.astype(np.float64),
    }
    meta = {"format": "diva-pedant-v1", "source": source,
            "vocabulary": "full" if keep_words is None else f"pruned to {len(words)} of {V}",
            "rule_classes": ",".join(str(c) for c in rule.classes_),
            "type_classes": ",".join(str(c) for c in typ.classes_),
            "final_classes": "correct,incorrect", "sklearn": sklearn.__version__}
    save_file(tensors, path, metadata=meta)
    return len(words), V


# --------------------------------------------------------------------------- bootstrap

def percentile(x, q):
    return float(np.percentile(x, 100.0 * q))


def band(x, q):
    """Where an independent bootstrap's q-quantile lies, with K_SIGMA sigmas of Monte
    Carlo error: the empirical q-quantile of B draws sits at rank B*q with a binomial
    standard deviation sqrt(B q (1-q)); two independent runs differ by sqrt(2) times that.
    Mapped back through this run's quantile function (distribution-free)."""
    d = K_SIGMA * np.sqrt(2.0 * q * (1.0 - q) / len(x))
    return [percentile(x, max(0.0, q - d)), percentile(x, min(1.0, q + d))]


def summarise(obs, boot):
    return dict(observed=float(obs), mean=float(boot.mean()), std=float(boot.std()),
                lo=percentile(boot, 0.025), hi=percentile(boot, 0.975),
                lo_band=band(boot, 0.025), hi_band=band(boot, 0.975))


def numpy_paired_bootstrap(stats_a, stats_b, score, seed):
    sa, sb = np.asarray(stats_a, dtype=np.float64), np.asarray(stats_b, dtype=np.float64)
    n = len(sa)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(B, n))
    ba = np.array([score(sa[i].sum(0)) for i in idx])
    bb = np.array([score(sb[i].sum(0)) for i in idx])
    oa, ob = score(sa.sum(0)), score(sb.sum(0))
    d = bb - ba
    dobs = ob - oa
    p_two = (1 + np.sum(np.abs(d - d.mean()) >= abs(dobs))) / (B + 1)
    ad = np.abs(d)
    p_sb = (1 + np.sum(ad - ad.mean() > abs(dobs))) / (B + 1)
    return dict(a=summarise(oa, ba), b=summarise(ob, bb), diff=summarise(dobs, d),
                p_value=float(p_two), p_value_sacrebleu=float(p_sb))


def weighted_f1_from_counts(s, k):
    tp, fp, fn = s[:k], s[k:2 * k], s[2 * k:]
    support = tp + fn
    den = 2 * tp + fp + fn
    f1 = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)
    return float((f1 * support).sum() / support.sum())


def bootstrap_fixture(rng, translation, classify, qa):
    cases = []
    n = 300
    # Accuracy: two correlated systems (B right where A is, plus some).
    p = [rng.random() for _ in range(n)]
    a = [1.0 if u < 0.62 else 0.0 for u in p]
    b = [1.0 if (u < 0.65 or (rng.random() < 0.04)) and rng.random() > 0.04 else 0.0
         for u in p]
    # Token F1: continuous per-item scores.
    fa = [min(1.0, max(0.0, rng.gauss(0.55, 0.3))) for _ in range(n)]
    fb = [min(1.0, max(0.0, x + rng.gauss(0.01, 0.15))) for x in fa]
    for name, xa, xb, seed in [("accuracy", a, b, 19), ("token_f1", fa, fb, 20),
                               ("identical", a, a, 21)]:
        r = numpy_paired_bootstrap([[x, 1.0] for x in xa], [[x, 1.0] for x in xb],
                                   lambda s: s[0] / s[1], seed)
        cases.append(dict(name=name, kind="mean", scores_a=xa, scores_b=xb, **r))

    # Weighted F1 on the emotion task: system A = the extracted labels, system B = a noisier
    # copy; per-item statistics are one-hot tp/fp/fn counts per label.
    task = classify["tasks"][0]
    labels = task["labels"]
    k = len(labels)
    gold = [labels.index(it["gold"]) for it in task["items"]]
    pa = [None if it["expected"] is None else labels.index(it["expected"])
          for it in task["items"]]
    pb = [g if rng.random() < 0.5 else rng.randrange(k) for g in gold]

    def counts(g, pr):
        s = [0.0] * (3 * k)
        if pr == g:
            s[g] += 1
        else:
            s[2 * k + g] += 1
            if pr is not None:
                s[k + pr] += 1
        return s
    sa = [counts(g, x) for g, x in zip(gold, pa)]
    sb = [counts(g, x) for g, x in zip(gold, pb)]
    r = numpy_paired_bootstrap(sa, sb, lambda s: weighted_f1_from_counts(s, k), 22)
    # The counts formula is sklearn's weighted F1 (a missing prediction = a label of support 0).
    y_true = [labels[g] for g in gold]
    for preds, stats in ((pa, sa), (pb, sb)):
        y = [labels[x] if x is not None else "<none>" for x in preds]
        want = f1_score(y_true, y, average="weighted")
        assert abs(weighted_f1_from_counts(np.sum(stats, 0), k) - want) < 1e-12
    cases.append(dict(name="weighted_f1", kind="weighted_f1", labels=labels, gold=gold,
                      pred_a=pa, pred_b=pb, **r))

    # Corpus BLEU and chrF on the English set: resample sentence statistics and recompute
    # the corpus score (sacrebleu's own score-from-statistics functions).
    # System B here is A with 15% of its sentences replaced by the noisier system's, so that
    # the difference is small and the p-value is not at its floor.
    en = translation[0]
    hyps_a = en["hyps_a"]
    hyps_b = [y if rng.random() < 0.15 else x for x, y in zip(hyps_a, en["hyps_b"])]
    refs = [[x[0] for x in en["refs"]]]
    bleu = BLEU()
    sa = bleu._extract_corpus_statistics(hyps_a, refs)
    sb = bleu._extract_corpus_statistics(hyps_b, refs)
    r = numpy_paired_bootstrap(sa, sb, lambda s: bleu._compute_score_from_stats(
        [int(round(v)) for v in s]).score, 23)
    # sacrebleu's own paired bootstrap (its RNG, seed 12345), for its p-value formula.
    bl_stats = bleu._extract_corpus_statistics(hyps_a, refs)
    bl_res = sacrebleu.significance.Result(bleu._aggregate_and_compute(bl_stats).score)
    _, res = _paired_bs_test({"BLEU": (bl_stats, bl_res)}, "b", hyps_b, refs, {"BLEU": bleu},
                             n_samples=B, seed=12345)
    r["sacrebleu_paired_bs_p_value"] = res["BLEU"].p_value
    cases.append(dict(name="bleu", kind="bleu", refs=refs[0], hyps_a=hyps_a, hyps_b=hyps_b, **r))
    chrf = CHRF()
    ca = chrf._extract_corpus_statistics(hyps_a, refs)
    cb = chrf._extract_corpus_statistics(hyps_b, refs)
    r = numpy_paired_bootstrap(ca, cb, lambda s: chrf._compute_score_from_stats(
        [int(round(v)) for v in s]).score, 24)
    cases.append(dict(name="chrf", kind="chrf", refs=refs[0], hyps_a=hyps_a, hyps_b=hyps_b, **r))
    return dict(resamples=B, k_sigma=K_SIGMA, confidence=0.95, cases=cases)


# --------------------------------------------------------------------------- main

def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--pedant-dir", required=True,
                    help="directory with PEDANT's four .pkl files from one pedant_models commit")
    ap.add_argument("--pedant-source", default="zli12321/pedant_models@12b835a",
                    help="where the pickles came from (recorded in the fixtures)")
    ap.add_argument("--export-pedant", help="also write the whole model here (~8 MB)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import MeCab
    import qa_metrics
    versions = dict(sacrebleu=sacrebleu.__version__, sklearn=sklearn.__version__,
                    numpy=np.__version__, qa_metrics="0.2.42", mecab=MeCab.VERSION,
                    python=sys.version.split()[0])
    assert os.path.isdir(os.path.dirname(qa_metrics.__file__))

    rng = random.Random(19)
    translation = translation_fixture(build_sentences(rng))
    write_json(os.path.join(a.out, "translation.json"), dict(versions=versions, sets=translation))

    classify = classify_fixture(random.Random(1919))
    write_json(os.path.join(a.out, "classify.json"), dict(versions=versions, **classify))

    pedant = load_pedant(a.pedant_dir)
    qa = qa_fixture(random.Random(191919), pedant)
    keep = set()
    analyzer = pedant.tokenizer.build_analyzer()
    for t in pedant_texts(qa):
        keep.update(analyzer(t))
        keep.update(analyzer(t.rsplit(" [SEP] ", 2)[0] + " [SEP]"))
    kept, total = export_pedant(pedant, os.path.join(a.out, "pedant_pruned.safetensors"),
                                a.pedant_source, keep_words=keep)
    write_json(os.path.join(a.out, "qa.json"), dict(
        versions=versions, pedant_source=a.pedant_source,
        pedant_vocabulary=dict(kept=kept, total=total), items=qa))
    if a.export_pedant:
        export_pedant(pedant, a.export_pedant, a.pedant_source)

    boot = bootstrap_fixture(random.Random(191), translation, classify, qa)
    write_json(os.path.join(a.out, "bootstrap.json"), dict(versions=versions, **boot))
    by_rule = sum(it["pedant_by_rule"] for it in qa)
    print(f"wrote {a.out}: {sum(len(s['refs']) for s in translation)} sentence pairs, "
          f"{len(qa)} QA pairs ({by_rule} decided by PEDANT's containment rule, "
          f"{sum(it['pedant'] for it in qa)} correct), PEDANT vocabulary {kept}/{total}")


if __name__ == "__main__":
    main()
