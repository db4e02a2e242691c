//! Spoken-QA scoring with SQuAD's official metrics: exact match and token F1
//! after the normalisation of `evaluate-v1.1.py` (lower case, drop ASCII
//! punctuation, drop the articles a/an/the as whole words, collapse
//! whitespace), each the maximum over an item's accepted answers. A port of
//! the script's functions, checked against them on the fixtures of
//! `tools/reference/make_eval_metric_fixtures.py`; the judged score (PEDANTS)
//! is in [`crate::pedant`].
//!
//! As in v1.1, F1 is 0 when either side normalises to nothing (v2.0 gives 1
//! when both do), and an item without accepted answers is an error, as it
//! is for the script (`max()` of nothing).

use std::collections::HashMap;

use crate::pytext;

/// SQuAD v1.1's `normalize_answer`.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower
        .chars()
        .filter(|&c| !pytext::is_ascii_punctuation(c))
        .collect();
    pytext::collapse_spaces(&pytext::remove_articles_re(&no_punc))
}

/// SQuAD's `exact_match_score` against one answer.
pub fn exact_match_one(prediction: &str, answer: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(answer)
}

/// SQuAD's `f1_score` against one answer (bag-of-tokens overlap).
pub fn f1_one(prediction: &str, answer: &str) -> f64 {
    let p = normalize_answer(prediction);
    let g = normalize_answer(answer);
    let pt: Vec<&str> = pytext::split(&p).collect();
    let gt: Vec<&str> = pytext::split(&g).collect();
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for t in &pt {
        counts.entry(t).or_default().0 += 1;
    }
    for t in &gt {
        counts.entry(t).or_default().1 += 1;
    }
    let same: usize = counts.values().map(|&(a, b)| a.min(b)).sum();
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

fn max_over<S: AsRef<str>>(answers: &[S], f: impl Fn(&str) -> f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        !answers.is_empty(),
        "a QA item has no accepted answers: give at least one (SQuAD's max over answers is undefined)"
    );
    Ok(answers
        .iter()
        .map(|a| f(a.as_ref()))
        .fold(f64::NEG_INFINITY, f64::max))
}

/// Exact match (0 or 1), the maximum over the accepted answers.
pub fn exact_match<S: AsRef<str>>(prediction: &str, answers: &[S]) -> anyhow::Result<f64> {
    max_over(answers, |a| {
        f64::from(u8::from(exact_match_one(prediction, a)))
    })
}

/// Token F1, the maximum over the accepted answers.
pub fn token_f1<S: AsRef<str>>(prediction: &str, answers: &[S]) -> anyhow::Result<f64> {
    max_over(answers, |a| f1_one(prediction, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_squads() {
        assert_eq!(normalize_answer("The Eiffel Tower!"), "eiffel tower");
        assert_eq!(
            normalize_answer("  an apple, a pear; THE end."),
            "apple pear end"
        );
        assert_eq!(normalize_answer("Washington, D.C."), "washington dc");
        // Only ASCII punctuation goes; curly quotes stay (as in the script).
        assert_eq!(normalize_answer("“Paris”"), "“paris”");
        // `theater` keeps its `the`; `a-team` loses the hyphen first, then is one word.
        assert_eq!(normalize_answer("theater a-team"), "theater ateam");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn em_and_f1_take_the_best_answer() {
        let ans = ["Leonardo da Vinci", "da Vinci"];
        assert_eq!(exact_match("Da Vinci.", &ans).unwrap(), 1.0);
        assert_eq!(exact_match("Leonardo", &ans).unwrap(), 0.0);
        // "Leonardo" vs "leonardo da vinci": P 1, R 1/3 -> F1 0.5.
        assert!((token_f1("Leonardo", &ans).unwrap() - 0.5).abs() < 1e-12);
        // Repeated tokens count as a bag (Counter), not a set.
        assert!((f1_one("paris paris", "paris") - 2.0 * 0.5 / 1.5).abs() < 1e-12);
        assert_eq!(f1_one("the", "a"), 0.0);
        assert!(token_f1::<&str>("x", &[]).is_err());
        assert!(exact_match::<&str>("x", &[]).is_err());
    }
}
