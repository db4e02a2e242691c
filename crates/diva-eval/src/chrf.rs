//! chrF and chrF++ as sacrebleu 2.6 computes them (a hand-written port of its
//! `CHRF` metric; there is no Rust sacrebleu), checked against sacrebleu on
//! the fixtures of `tools/reference/make_eval_metric_fixtures.py`.
//!
//! Defaults as sacrebleu's: character n-grams up to 6 with whitespace removed,
//! no word n-grams (chrF; `word_order = 2` is chrF++), beta 2 (recall weighted
//! four times precision), case-sensitive, and sacrebleu's default "effective
//! order" averaging: precision and recall are averaged over the orders that
//! have both hypothesis and reference n-grams, then combined into one F-beta
//! (not sacrebleu's optional `eps_smoothing`). No tokenization, so the same
//! code serves every language, Chinese and Japanese included.
//!
//! With several references a segment keeps the statistics of the reference
//! with the best segment F-score; the corpus score is computed from the
//! summed statistics (which is also what the paired bootstrap resamples).

use std::collections::HashMap;
use std::hash::Hash;

use crate::pytext;

/// sacrebleu's `CHRF._PUNCTS` (Python's `string.punctuation`).
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// chrF's settings; `Chrf::default()` is sacrebleu's chrF, [`Chrf::plus_plus`] chrF++.
#[derive(Debug, Clone, Copy)]
pub struct Chrf {
    pub char_order: usize,
    pub word_order: usize,
    pub beta: f64,
    pub lowercase: bool,
    /// Keep whitespace in character n-grams (sacrebleu's `whitespace`, off).
    pub whitespace: bool,
}

impl Default for Chrf {
    fn default() -> Self {
        Self {
            char_order: 6,
            word_order: 0,
            beta: 2.0,
            lowercase: false,
            whitespace: false,
        }
    }
}

fn count<K: Hash + Eq>(items: impl Iterator<Item = K>) -> HashMap<K, u64> {
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// One order's n-gram counts (characters or words, as slices).
struct Orders<'a> {
    chars: Vec<HashMap<&'a [char], u64>>,
    words: Vec<HashMap<&'a [String], u64>>,
}

/// [hyp n-grams, ref n-grams, matches] for one order (sacrebleu's `_get_match_statistics`).
fn match_stats<K: Hash + Eq>(hyp: &HashMap<K, u64>, rf: &HashMap<K, u64>) -> [u64; 3] {
    let mut matches = 0;
    let mut hyp_count = 0;
    for (g, &c) in hyp {
        hyp_count += c;
        if let Some(&r) = rf.get(g) {
            matches += c.min(r);
        }
    }
    // Don't count hits if no reference exists for that n-gram order.
    [
        if rf.is_empty() { 0 } else { hyp_count },
        rf.values().sum(),
        matches,
    ]
}

impl Chrf {
    /// chrF++ (word order 2), otherwise the defaults.
    pub fn plus_plus() -> Self {
        Self {
            word_order: 2,
            ..Self::default()
        }
    }

    /// Number of statistics per segment: 3 per character and word order.
    pub fn stats_len(&self) -> usize {
        3 * (self.char_order + self.word_order)
    }

    fn preprocess(&self, s: &str) -> String {
        if self.lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    }

    fn chars_of(&self, s: &str) -> Vec<char> {
        if self.whitespace {
            s.chars().collect()
        } else {
            pytext::split(s).flat_map(str::chars).collect()
        }
    }

    /// sacrebleu's `_remove_punctuation`: one punctuation mark is split off
    /// the end of a word, or else off its start (so `(hi)` gives `(hi`, `)`).
    fn words_of(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        for w in pytext::split(s) {
            let chars: Vec<char> = w.chars().collect();
            if chars.len() == 1 {
                out.push(w.to_string());
            } else if chars.last().copied().is_some_and(is_punct) {
                out.push(chars[..chars.len() - 1].iter().collect());
                out.push(chars[chars.len() - 1].to_string());
            } else if is_punct(chars[0]) {
                out.push(chars[0].to_string());
                out.push(chars[1..].iter().collect());
            } else {
                out.push(w.to_string());
            }
        }
        out
    }

    fn orders<'a>(&self, chars: &'a [char], words: &'a [String]) -> Orders<'a> {
        Orders {
            chars: (1..=self.char_order)
                .map(|n| count(chars.windows(n)))
                .collect(),
            words: (1..=self.word_order)
                .map(|n| count(words.windows(n)))
                .collect(),
        }
    }

    /// sacrebleu's `_compute_f_score` (effective-order averaging).
    pub fn f_score(&self, stats: &[u64]) -> f64 {
        let eps = 1e-16;
        let factor = self.beta * self.beta;
        let (mut avg_prec, mut avg_rec) = (0.0, 0.0);
        let mut effective_order = 0usize;
        for st in stats.chunks_exact(3) {
            let (n_hyp, n_ref, n_match) = (st[0], st[1], st[2]);
            let prec = if n_hyp > 0 {
                n_match as f64 / n_hyp as f64
            } else {
                eps
            };
            let rec = if n_ref > 0 {
                n_match as f64 / n_ref as f64
            } else {
                eps
            };
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if effective_order == 0 {
            return 0.0;
        }
        avg_prec /= effective_order as f64;
        avg_rec /= effective_order as f64;
        if avg_prec + avg_rec != 0.0 {
            100.0 * (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
        } else {
            0.0
        }
    }

    /// The score from summed statistics in [`Chrf::segment_stats`]'s layout.
    pub fn score_flat(&self, v: &[f64]) -> f64 {
        let st: Vec<u64> = v.iter().map(|&x| x.round().max(0.0) as u64).collect();
        self.f_score(&st)
    }

    /// One segment's statistics, `3 * (char_order + word_order)` numbers: per
    /// order (characters first) hypothesis n-grams, reference n-grams, matches;
    /// from the reference with the best F-score.
    pub fn segment_stats(&self, hypothesis: &str, references: &[&str]) -> anyhow::Result<Vec<u64>> {
        anyhow::ensure!(
            !references.is_empty(),
            "chrF: a hypothesis has no reference; give every item at least one"
        );
        let hyp = self.preprocess(hypothesis);
        let hyp_chars = self.chars_of(&hyp);
        let hyp_words = if self.word_order > 0 {
            Self::words_of(&hyp)
        } else {
            Vec::new()
        };
        let h = self.orders(&hyp_chars, &hyp_words);
        let mut best: Option<(f64, Vec<u64>)> = None;
        for r in references {
            let rf = self.preprocess(r);
            let ref_chars = self.chars_of(&rf);
            let ref_words = if self.word_order > 0 {
                Self::words_of(&rf)
            } else {
                Vec::new()
            };
            let o = self.orders(&ref_chars, &ref_words);
            let mut stats = Vec::with_capacity(self.stats_len());
            for (hc, rc) in h.chars.iter().zip(&o.chars) {
                stats.extend(match_stats(hc, rc));
            }
            for (hw, rw) in h.words.iter().zip(&o.words) {
                stats.extend(match_stats(hw, rw));
            }
            let f = self.f_score(&stats);
            if best.as_ref().is_none_or(|b| f > b.0) {
                best = Some((f, stats));
            }
        }
        Ok(best.map(|b| b.1).unwrap_or_default())
    }

    /// Per-segment statistics of a corpus; `references[i]` are item i's references.
    pub fn corpus_stats(
        &self,
        hypotheses: &[&str],
        references: &[Vec<&str>],
    ) -> anyhow::Result<Vec<Vec<u64>>> {
        anyhow::ensure!(
            hypotheses.len() == references.len(),
            "chrF: {} hypotheses but {} reference lists; give one list per hypothesis",
            hypotheses.len(),
            references.len()
        );
        hypotheses
            .iter()
            .zip(references)
            .enumerate()
            .map(|(i, (h, r))| {
                self.segment_stats(h, r)
                    .map_err(|e| anyhow::anyhow!("item {i}: {e}"))
            })
            .collect()
    }

    /// Corpus chrF. An empty corpus is an error (sacrebleu raises on one too).
    pub fn corpus_score(
        &self,
        hypotheses: &[&str],
        references: &[Vec<&str>],
    ) -> anyhow::Result<f64> {
        anyhow::ensure!(
            !hypotheses.is_empty(),
            "chrF of an empty corpus is undefined (sacrebleu raises too): score at least one item"
        );
        let mut sum = vec![0u64; self.stats_len()];
        for s in self.corpus_stats(hypotheses, references)? {
            for (a, b) in sum.iter_mut().zip(s) {
                *a += b;
            }
        }
        Ok(self.f_score(&sum))
    }

    /// One sentence's chrF.
    pub fn sentence_score(&self, hypothesis: &str, references: &[&str]) -> anyhow::Result<f64> {
        Ok(self.f_score(&self.segment_stats(hypothesis, references)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_disjoint_is_0() {
        let c = Chrf::default();
        assert!((c.sentence_score("Hello world", &["Hello world"]).unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(c.sentence_score("xyz", &["abc"]).unwrap(), 0.0);
        // Whitespace does not count: the same characters differently spaced.
        assert!((c.sentence_score("Hel lo", &["Hello"]).unwrap() - 100.0).abs() < 1e-9);
        assert!(c.corpus_score(&[], &[]).is_err());
        assert!(c.corpus_score(&["a"], &[vec![]]).is_err());
        assert_eq!(c.sentence_score("", &["abc"]).unwrap(), 0.0);
    }

    #[test]
    fn chrf_plus_plus_splits_one_punctuation_mark_off_words() {
        assert_eq!(
            Chrf::words_of("(hi) \"x\" a ,b ?"),
            ["(hi", ")", "\"x", "\"", "a", ",", "b", "?"]
        );
        let pp = Chrf::plus_plus();
        assert_eq!(pp.stats_len(), 24);
        // Shuffled words: every word unigram matches, no word bigram does.
        // Values from sacrebleu 2.6.0's sentence_chrf (word_order 0 and 2).
        let (h, r) = ("mat the on sat cat the", ["the cat sat on the mat"]);
        let st = pp.segment_stats(h, &r).unwrap();
        assert_eq!(&st[18..], &[6, 6, 6, 5, 5, 0]);
        let c = Chrf::default().sentence_score(h, &r).unwrap();
        let p = pp.f_score(&st);
        assert!(
            (c - 33.68055555555556).abs() < 1e-9 && (p - 37.76041666666667).abs() < 1e-9,
            "{c} {p}"
        );
    }

    #[test]
    fn best_reference_wins() {
        let c = Chrf::default();
        let one = c.sentence_score("the cat", &["a dog"]).unwrap();
        let two = c.sentence_score("the cat", &["a dog", "the cat"]).unwrap();
        assert!(one < 50.0 && (two - 100.0).abs() < 1e-9);
    }

    #[test]
    fn beta_weights_recall() {
        // Hypothesis is a prefix of the reference: precision 1, recall < 1.
        let c = Chrf::default();
        let st = c.segment_stats("abc", &["abcdef"]).unwrap();
        assert_eq!(&st[..3], &[3, 6, 3]);
        let f = c.f_score(&st);
        assert!(f > 0.0 && f < 100.0);
    }
}
