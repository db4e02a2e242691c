//! diva-eval's metrics against the reference implementations, on the
//! fixtures written by `tools/reference/make_eval_metric_fixtures.py`
//! (`tests/fixtures/eval/`; no Python needed here): sacrebleu's BLEU, chrF and
//! chrF++ (corpus and sentence, 13a / zh / char tokenizers, CJK included),
//! scikit-learn's weighted F1 and accuracy with label extraction, the SQuAD
//! script's exact match and F1, qa-metrics' PEDANT decisions and scores, and
//! a NumPy paired bootstrap (within Monte Carlo error).

use std::path::PathBuf;

use diva_eval::bleu::{Bleu, Tokenize};
use diva_eval::bootstrap::{paired_bootstrap, BootstrapConfig, Estimate};
use diva_eval::chrf::Chrf;
use diva_eval::classify::{self, LabelSet};
use diva_eval::pedant::{self, PedantModel};
use diva_eval::qa;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/eval")
        .join(name)
}

fn load(name: &str) -> Value {
    let p = fixture(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// Largest |a - b| seen, with where.
#[derive(Default)]
struct MaxDiff(f64, String);

impl MaxDiff {
    fn see(&mut self, got: f64, want: f64, at: impl FnOnce() -> String) {
        let d = (got - want).abs();
        assert!(d.is_finite(), "{}: got {got}, want {want}", at());
        if d > self.0 || self.1.is_empty() {
            *self = MaxDiff(d.max(self.0), at());
        }
    }
}

#[test]
fn bleu_and_chrf_equal_sacrebleu() {
    let fx = load("translation.json");
    let sets = fx["sets"].as_array().unwrap();
    let (mut corpus, mut sentence) = (MaxDiff::default(), MaxDiff::default());
    let (mut pairs, mut cjk) = (0, 0);
    for s in sets {
        let name = s["name"].as_str().unwrap();
        let tok = Tokenize::from_name(s["tokenize"].as_str().unwrap()).unwrap();
        if ["zh", "ja"].contains(&s["lang"].as_str().unwrap()) {
            assert_eq!(
                tok,
                Tokenize::for_target(s["lang"].as_str().unwrap()),
                "{name}"
            );
        }
        let refs: Vec<Vec<&str>> = s["refs"].as_array().unwrap().iter().map(strs).collect();
        pairs += refs.len();
        if matches!(name, "zh" | "ja") {
            cjk += refs.len();
        }
        // Tokenization, exactly.
        for (i, (r, t)) in refs
            .iter()
            .zip(s["tokenized_refs"].as_array().unwrap())
            .enumerate()
        {
            for (x, want) in r.iter().zip(strs(t)) {
                assert_eq!(tok.apply(x), want, "{name} ref {i}: {x:?}");
            }
        }
        for (i, (h, want)) in strs(&s["hyps_a"])
            .iter()
            .zip(strs(&s["tokenized_a"]))
            .enumerate()
        {
            assert_eq!(tok.apply(h), want, "{name} hyp {i}: {h:?}");
        }
        let bleu = Bleu::corpus(tok);
        let sbleu = Bleu::sentence(tok);
        let (chrf, chrfpp) = (Chrf::default(), Chrf::plus_plus());
        for side in ["a", "b"] {
            let hyps = strs(&s[format!("hyps_{side}")]);
            // Per-sentence statistics, exactly.
            let stats = bleu.corpus_stats(&hyps, &refs).unwrap();
            for (i, (st, want)) in stats
                .iter()
                .zip(s[format!("bleu_stats_{side}")].as_array().unwrap())
                .enumerate()
            {
                let want = u64s(want);
                let got: Vec<u64> = st.to_vec().iter().map(|&x| x as u64).collect();
                assert_eq!(
                    got, want,
                    "{name}/{side} item {i}: BLEU statistics of {:?}",
                    hyps[i]
                );
            }
            let cb = bleu.corpus_score(&hyps, &refs).unwrap();
            let want = &s[format!("corpus_bleu_{side}")];
            assert_eq!(cb.counts.to_vec(), u64s(&want["counts"]), "{name}/{side}");
            assert_eq!(cb.totals.to_vec(), u64s(&want["totals"]), "{name}/{side}");
            assert_eq!(
                (cb.sys_len, cb.ref_len),
                (
                    want["sys_len"].as_u64().unwrap(),
                    want["ref_len"].as_u64().unwrap()
                )
            );
            assert!(
                (cb.bp - want["bp"].as_f64().unwrap()).abs() < 1e-12,
                "{name}/{side} bp"
            );
            corpus.see(cb.score, want["score"].as_f64().unwrap(), || {
                format!("{name}/{side} corpus BLEU")
            });
            let c = chrf.corpus_score(&hyps, &refs).unwrap();
            corpus.see(
                c,
                s[format!("corpus_chrf_{side}")].as_f64().unwrap(),
                || format!("{name}/{side} corpus chrF"),
            );
            let c = chrfpp.corpus_score(&hyps, &refs).unwrap();
            corpus.see(
                c,
                s[format!("corpus_chrfpp_{side}")].as_f64().unwrap(),
                || format!("{name}/{side} corpus chrF++"),
            );
            for (metric, want) in [
                ("bleu", "sentence_bleu"),
                ("chrf", "sentence_chrf"),
                ("chrfpp", "sentence_chrfpp"),
            ] {
                for (i, w) in f64s(&s[format!("{want}_{side}")]).into_iter().enumerate() {
                    let got = match metric {
                        "bleu" => sbleu.sentence_score(hyps[i], &refs[i]).unwrap().score,
                        "chrf" => chrf.sentence_score(hyps[i], &refs[i]).unwrap(),
                        _ => chrfpp.sentence_score(hyps[i], &refs[i]).unwrap(),
                    };
                    sentence.see(got, w, || {
                        format!("{name}/{side} item {i} sentence {metric}: {:?}", hyps[i])
                    });
                }
            }
        }
    }
    println!(
        "BLEU/chrF/chrF++ corpus: max |diff| {:.3e} ({})",
        corpus.0, corpus.1
    );
    println!(
        "BLEU/chrF/chrF++ sentence: max |diff| {:.3e} ({})",
        sentence.0, sentence.1
    );
    println!("{pairs} sentence pairs, {cjk} Chinese or Japanese");
    assert!(pairs >= 200 && cjk >= 60, "{pairs} pairs, {cjk} CJK");
    // The acceptance bound is 0.01; the port is exact up to rounding.
    assert!(
        corpus.0 < 1e-9,
        "corpus max diff {} at {}",
        corpus.0,
        corpus.1
    );
    assert!(
        sentence.0 < 1e-9,
        "sentence max diff {} at {}",
        sentence.0,
        sentence.1
    );
}

#[test]
fn weighted_f1_and_accuracy_equal_sklearn() {
    let fx = load("classify.json");
    let mut n_items = 0;
    for t in fx["tasks"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let labels = LabelSet::new(&strs(&t["labels"])).unwrap();
        let (mut gold, mut pred) = (Vec::new(), Vec::new());
        for (i, it) in t["items"].as_array().unwrap().iter().enumerate() {
            let reply = it["reply"].as_str().unwrap();
            let got = labels.extract(reply);
            let want = it["expected"].as_str();
            assert_eq!(
                got.and_then(|g| labels.name(g)),
                want,
                "{name} item {i}: {reply:?}"
            );
            gold.push(labels.index(it["gold"].as_str().unwrap()).unwrap());
            pred.push(got);
        }
        n_items += gold.len();
        let f1 = classify::weighted_f1(&gold, &pred, labels.len()).unwrap();
        let acc = classify::accuracy(&gold, &pred).unwrap();
        let (wf, wa) = (
            t["weighted_f1"].as_f64().unwrap(),
            t["accuracy"].as_f64().unwrap(),
        );
        println!(
            "{name}: weighted F1 {f1:.6} (sklearn {wf:.6}), accuracy {acc:.6} (sklearn {wa:.6})"
        );
        assert!(
            (f1 - wf).abs() < 1e-12,
            "{name}: weighted F1 {f1} vs sklearn {wf}"
        );
        assert!(
            (acc - wa).abs() < 1e-12,
            "{name}: accuracy {acc} vs sklearn {wa}"
        );
    }
    assert!(n_items >= 300, "{n_items}");
    // Plain label lists: a class never predicted, one predicted but never gold.
    let p = &fx["plain"];
    let labels = LabelSet::new(&["a", "b", "c", "d", "e"]).unwrap();
    let gold: Vec<usize> = strs(&p["y_true"])
        .iter()
        .map(|g| labels.index(g).unwrap())
        .collect();
    let pred: Vec<Option<usize>> = strs(&p["y_pred"])
        .iter()
        .map(|g| Some(labels.index(g).unwrap()))
        .collect();
    let f1 = classify::weighted_f1(&gold, &pred, 5).unwrap();
    assert!(
        (f1 - p["weighted_f1"].as_f64().unwrap()).abs() < 1e-12,
        "{f1}"
    );
    assert!(
        (classify::accuracy(&gold, &pred).unwrap() - p["accuracy"].as_f64().unwrap()).abs() < 1e-12
    );
}

#[test]
fn squad_exact_match_and_f1_equal_the_official_script() {
    let fx = load("qa.json");
    let items = fx["items"].as_array().unwrap();
    for it in items {
        let id = it["id"].as_str().unwrap();
        let reply = it["reply"].as_str().unwrap();
        let answers = strs(&it["answers"]);
        assert_eq!(
            qa::normalize_answer(reply),
            it["squad_normalized"].as_str().unwrap(),
            "{id}"
        );
        assert_eq!(
            qa::exact_match(reply, &answers).unwrap(),
            it["exact_match"].as_f64().unwrap(),
            "{id}: {reply:?}"
        );
        let f1 = qa::token_f1(reply, &answers).unwrap();
        assert!(
            (f1 - it["f1"].as_f64().unwrap()).abs() < 1e-12,
            "{id}: {reply:?} F1 {f1}"
        );
    }
    assert!(items.len() >= 200);
}

fn check_pedant(model: &PedantModel, items: &[Value]) -> (usize, usize, f64) {
    let (mut agree, mut by_model) = (0, 0);
    let mut worst = MaxDiff::default();
    for it in items {
        let id = it["id"].as_str().unwrap();
        let (reply, q) = (
            it["reply"].as_str().unwrap(),
            it["question"].as_str().unwrap(),
        );
        let answers = strs(&it["answers"]);
        let want = it["pedant"].as_bool().unwrap();
        let got = model.evaluate(&answers, reply, q);
        assert_eq!(got, want, "{id}: {q:?} {answers:?} {reply:?}");
        agree += usize::from(got == want);
        by_model += usize::from(pedant::containment_rule(&answers, reply).is_none());
        for (a, w) in answers.iter().zip(f64s(&it["pedant_scores"])) {
            worst.see(model.score(a, reply, q), w, || {
                format!("{id} {a:?} {reply:?}")
            });
        }
    }
    assert!(
        worst.0 < 1e-9,
        "PEDANT score max diff {} at {}",
        worst.0,
        worst.1
    );
    (agree, by_model, worst.0)
}

#[test]
fn pedant_decisions_equal_qa_metrics() {
    let fx = load("qa.json");
    let items = fx["items"].as_array().unwrap();
    for it in items {
        let id = it["id"].as_str().unwrap();
        let (reply, answers) = (it["reply"].as_str().unwrap(), strs(&it["answers"]));
        assert_eq!(
            pedant::normalize_answer(reply),
            it["pedant_normalized"].as_str().unwrap(),
            "{id}"
        );
        let rule = pedant::containment_rule(&answers, reply);
        assert_eq!(
            rule == Some(true),
            it["pedant_by_rule"].as_bool().unwrap(),
            "{id}: {reply:?}"
        );
        // Where the rule decides, its decision is PEDANT's.
        if let Some(d) = rule {
            assert_eq!(d, it["pedant"].as_bool().unwrap(), "{id}: {reply:?}");
        }
    }
    let model = PedantModel::load(&fixture("pedant_pruned.safetensors")).unwrap();
    let (agree, by_model, worst) = check_pedant(&model, items);
    let correct_by_model = items
        .iter()
        .filter(|it| !it["pedant_by_rule"].as_bool().unwrap() && it["pedant"].as_bool().unwrap())
        .count();
    println!(
        "PEDANT ({}): {agree}/{} decisions agree, {by_model} made by the learned scorer \
         ({correct_by_model} of them correct), score max |diff| {worst:.3e}",
        model.source(),
        items.len()
    );
    assert!(items.len() >= 200 && by_model >= 100 && correct_by_model >= 5);
    // The whole model, where one has been exported (not committed: ~8 MB).
    if let Ok(p) = std::env::var("DIVA_PEDANT_MODEL") {
        let full = PedantModel::load(std::path::Path::new(&p)).unwrap();
        let (agree, _, worst) = check_pedant(&full, items);
        println!(
            "PEDANT full model {p}: {agree}/{} agree, score max |diff| {worst:.3e}",
            items.len()
        );
    }
}

/// Compare one bootstrap quantity with NumPy's, within Monte Carlo error.
fn check_estimate(
    case: &str,
    what: &str,
    got: &Estimate,
    want: &Value,
    b: f64,
    k: f64,
) -> [f64; 2] {
    let w = |key: &str| want[key].as_f64().unwrap();
    assert!(
        (got.observed - w("observed")).abs() < 1e-9,
        "{case}/{what}: observed {} vs {}",
        got.observed,
        w("observed")
    );
    // Mean: each run's mean has Monte Carlo sd sigma/sqrt(B); two runs differ
    // by sqrt(2) times that. The sd itself: relative error 1/sqrt(2B) each.
    let sigma = w("std");
    let tol_mean = k * (2.0f64).sqrt() * sigma / b.sqrt() + 1e-12;
    assert!(
        (got.mean - w("mean")).abs() <= tol_mean,
        "{case}/{what}: mean {} vs {} (tol {tol_mean})",
        got.mean,
        w("mean")
    );
    let tol_std = k * sigma / b.sqrt() + 1e-12;
    assert!(
        (got.std - sigma).abs() <= tol_std,
        "{case}/{what}: std {} vs {sigma} (tol {tol_std})",
        got.std
    );
    // Interval ends: inside NumPy's quantile band (the fixture's `band`: the
    // q-quantile's binomial rank error, k sigmas, two runs).
    for (end, val, band) in [
        ("lo", got.lo, &want["lo_band"]),
        ("hi", got.hi, &want["hi_band"]),
    ] {
        let band = f64s(band);
        assert!(
            band[0] - 1e-12 <= val && val <= band[1] + 1e-12,
            "{case}/{what}: {end} {val} outside NumPy's Monte Carlo band {band:?} (NumPy {})",
            w(end)
        );
    }
    [(got.lo - w("lo")).abs(), (got.hi - w("hi")).abs()]
}

#[test]
fn paired_bootstrap_matches_numpy_within_monte_carlo_error() {
    let fx = load("bootstrap.json");
    let b_resamples = fx["resamples"].as_u64().unwrap() as usize;
    let k = fx["k_sigma"].as_f64().unwrap();
    assert_eq!(b_resamples, 10_000);
    let b = b_resamples as f64;
    let cfg = BootstrapConfig {
        resamples: b_resamples,
        seed: 2024,
        confidence: fx["confidence"].as_f64().unwrap(),
    };
    let bleu = Bleu::default();
    let chrf = Chrf::default();
    for c in fx["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let kind = c["kind"].as_str().unwrap();
        let r = match kind {
            "mean" => {
                let wrap = |v: &Value| {
                    f64s(v)
                        .into_iter()
                        .map(|x| vec![x, 1.0])
                        .collect::<Vec<_>>()
                };
                paired_bootstrap(
                    &wrap(&c["scores_a"]),
                    &wrap(&c["scores_b"]),
                    |s| s[0] / s[1],
                    cfg,
                )
            }
            "weighted_f1" => {
                let n = c["labels"].as_array().unwrap().len();
                let gold: Vec<usize> = u64s(&c["gold"]).into_iter().map(|g| g as usize).collect();
                let pred = |v: &Value| -> Vec<Vec<f64>> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .zip(&gold)
                        .map(|(p, &g)| classify::item_counts(g, p.as_u64().map(|x| x as usize), n))
                        .collect()
                };
                paired_bootstrap(
                    &pred(&c["pred_a"]),
                    &pred(&c["pred_b"]),
                    classify::weighted_f1_from_counts,
                    cfg,
                )
            }
            "bleu" | "chrf" => {
                // Sentence statistics computed here from the text, so this also
                // checks that the corpus metric is recomputed per resample.
                let refs: Vec<Vec<&str>> = strs(&c["refs"]).into_iter().map(|r| vec![r]).collect();
                let stats = |v: &Value| -> Vec<Vec<f64>> {
                    let h = strs(v);
                    if kind == "bleu" {
                        bleu.corpus_stats(&h, &refs)
                            .unwrap()
                            .iter()
                            .map(|s| s.to_vec())
                            .collect()
                    } else {
                        chrf.corpus_stats(&h, &refs)
                            .unwrap()
                            .into_iter()
                            .map(|s| s.into_iter().map(|x| x as f64).collect())
                            .collect()
                    }
                };
                let (sa, sb) = (stats(&c["hyps_a"]), stats(&c["hyps_b"]));
                if kind == "bleu" {
                    paired_bootstrap(&sa, &sb, |s| bleu.score_flat(s), cfg)
                } else {
                    paired_bootstrap(&sa, &sb, |s| chrf.score_flat(s), cfg)
                }
            }
            other => panic!("unknown case kind {other}"),
        }
        .unwrap();
        let mut worst = [0.0f64; 2];
        for (what, got) in [("a", &r.a), ("b", &r.b), ("diff", &r.diff)] {
            let d = check_estimate(name, what, got, &c[what], b, k);
            worst = [worst[0].max(d[0]), worst[1].max(d[1])];
        }
        // p-values: binomial proportions over B resamples, two runs.
        for (key, got) in [
            ("p_value", r.p_value),
            ("p_value_sacrebleu", r.p_value_sacrebleu),
        ] {
            let want = c[key].as_f64().unwrap();
            let tol = k * (2.0 * want * (1.0 - want) / b).sqrt() + 2.0 / (b + 1.0);
            assert!(
                (got - want).abs() <= tol,
                "{name}: {key} {got} vs NumPy {want} (tol {tol})"
            );
        }
        if let Some(sb) = c["sacrebleu_paired_bs_p_value"].as_f64() {
            let tol = k * (2.0 * sb * (1.0 - sb) / b).sqrt() + 2.0 / (b + 1.0);
            assert!(
                (r.p_value_sacrebleu - sb).abs() <= tol,
                "{name}: sacrebleu's own p {sb} vs {}",
                r.p_value_sacrebleu
            );
        }
        println!(
            "{name}: diff {:+.4} [{:+.4}, {:+.4}] (NumPy [{:+.4}, {:+.4}]), p {:.4} (NumPy {:.4}), \
             sacrebleu-p {:.4} (NumPy {:.4}); max |interval end - NumPy| {:.2e} lo, {:.2e} hi",
            r.diff.observed,
            r.diff.lo,
            r.diff.hi,
            c["diff"]["lo"].as_f64().unwrap(),
            c["diff"]["hi"].as_f64().unwrap(),
            r.p_value,
            c["p_value"].as_f64().unwrap(),
            r.p_value_sacrebleu,
            c["p_value_sacrebleu"].as_f64().unwrap(),
            worst[0],
            worst[1]
        );
    }
}
