//! BLEU as sacrebleu 2.6 computes it: a hand-written port of its `BLEU`
//! metric and its `13a`, `zh`, `char` and `none` tokenizers (there is no Rust
//! sacrebleu), checked against sacrebleu itself on the fixtures written by
//! `tools/reference/make_eval_metric_fixtures.py`.
//!
//! Defaults as sacrebleu's: case-sensitive, the `13a` tokenizer (mteval-v13a),
//! `exp` smoothing (NIST's, only acting where an order has no match), n-grams
//! up to 4, the closest reference length (shorter on ties) for the brevity
//! penalty, and effective order off for the corpus score and on for the
//! sentence score (`sacrebleu.sentence_bleu`).
//!
//! Tokenizer per target language ([`Tokenize::for_target`]): `zh` for
//! Chinese and `13a` for everything else, as sacrebleu picks them, except
//! Japanese: sacrebleu uses `ja-mecab` (MeCab with IPADIC), a morphological
//! analyser diva does not have, so Japanese is scored with `char` (every
//! character a token). Those scores are not comparable with published
//! `ja-mecab` numbers (char BLEU is higher); the report says which was used.
//!
//! Corpus BLEU is computed from summed per-sentence statistics
//! ([`BleuStats`]), which is also what the paired bootstrap resamples.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::pytext;

/// n-gram orders (sacrebleu's `MAX_NGRAM_ORDER`).
pub const MAX_ORDER: usize = 4;

/// sacrebleu's tokenizers that diva implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenize {
    /// mteval-v13a (sacrebleu's default).
    V13a,
    /// Chinese characters split one by one, the rest as `13a`'s regexps.
    Zh,
    /// Every character a token (diva's stand-in for `ja-mecab`).
    Char,
    /// Split on whitespace only.
    None,
}

impl Tokenize {
    /// The tokenizer for a target language code (`zh`, `zh-CN`, `ja`, `de`, …).
    pub fn for_target(lang: &str) -> Self {
        let primary = lang
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Tokenize::Zh,
            "ja" => Tokenize::Char,
            _ => Tokenize::V13a,
        }
    }

    /// sacrebleu's name for it (what its signature prints).
    pub fn name(self) -> &'static str {
        match self {
            Tokenize::V13a => "13a",
            Tokenize::Zh => "zh",
            Tokenize::Char => "char",
            Tokenize::None => "none",
        }
    }

    /// Parse sacrebleu's name (`13a`, `zh`, `char`, `none`).
    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "13a" => Tokenize::V13a,
            "zh" => Tokenize::Zh,
            "char" => Tokenize::Char,
            "none" => Tokenize::None,
            "ja-mecab" => anyhow::bail!(
                "tokenizer `ja-mecab` needs MeCab, which diva does not have: use `char` \
                 (diva's choice for Japanese) and report it as char-tokenized BLEU"
            ),
            other => anyhow::bail!("unknown BLEU tokenizer `{other}`: use 13a, zh, char or none"),
        })
    }

    /// Tokenize one segment as sacrebleu's BLEU does (after its `rstrip()`).
    pub fn apply(self, line: &str) -> String {
        let line = pytext::rstrip(line);
        match self {
            Tokenize::V13a => tokenize_13a(line),
            Tokenize::Zh => tokenize_zh(line),
            Tokenize::Char => {
                let chars: Vec<String> = line.chars().map(String::from).collect();
                chars.join(" ")
            }
            Tokenize::None => line.to_string(),
        }
    }
}

struct Rule {
    re: Regex,
    rep: &'static str,
}

// sacrebleu's TokenizerRegexp, in order. Constant patterns (a unit test
// compiles them), hence the panic instead of an error.
static RE_RULES: LazyLock<[Rule; 4]> = LazyLock::new(|| {
    let rule = |pat: &str, rep: &'static str| Rule {
        re: Regex::new(pat).unwrap_or_else(|e| panic!("13a pattern {pat}: {e}")),
        rep,
    };
    [
        // language-dependent part (assuming Western languages)
        rule(r"([\{-\~\[-\` -\&\(-\+\:-@/])", " ${1} "),
        // tokenize period and comma unless preceded by a digit
        rule(r"([^0-9])([\.,])", "${1} ${2} "),
        // tokenize period and comma unless followed by a digit
        rule(r"([\.,])([^0-9])", " ${1} ${2}"),
        // tokenize dash when preceded by a digit
        rule(r"([0-9])(-)", "${1} ${2} "),
    ]
});

/// sacrebleu's `TokenizerRegexp` (the part `13a` and `zh` share).
fn post_tokenize(line: &str) -> String {
    let mut s = line.to_string();
    for r in RE_RULES.iter() {
        s = r.re.replace_all(&s, r.rep).into_owned();
    }
    pytext::collapse_spaces(&s)
}

/// sacrebleu's `Tokenizer13a`.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    post_tokenize(&format!(" {line} "))
}

/// sacrebleu's `TokenizerZh._is_chinese_char`, ranges as they are written
/// there. Two of them are written as `'\u20000'` and `'\u2f800'`, which
/// Python reads as a 4-digit escape followed by a `0` (a two-character
/// string), so the first range actually compares as U+2001..=U+2A6D
/// (general punctuation, currency, arrows, maths, …) and the second as
/// U+2F81..=U+2FA1; kept so, for identical scores.
fn is_chinese_char(c: char) -> bool {
    const RANGES: [(u32, u32); 22] = [
        (0x3400, 0x4db5),
        (0x4e00, 0x9fa5),
        (0x9fa6, 0x9fbb),
        (0xf900, 0xfa2d),
        (0xfa30, 0xfa6a),
        (0xfa70, 0xfad9),
        (0x2001, 0x2a6d), // '\u20000' <= c <= '\u2a6d6'
        (0x2f81, 0x2fa1), // '\u2f800' <= c <= '\u2fa1d'
        (0xff00, 0xffef),
        (0x2e80, 0x2eff),
        (0x3000, 0x303f),
        (0x31c0, 0x31ef),
        (0x2f00, 0x2fdf),
        (0x2ff0, 0x2fff),
        (0x3100, 0x312f),
        (0x31a0, 0x31bf),
        (0xfe10, 0xfe1f),
        (0xfe30, 0xfe4f),
        (0x2600, 0x26ff),
        (0x2700, 0x27bf),
        (0x3200, 0x32ff),
        (0x3300, 0x33ff),
    ];
    let u = c as u32;
    RANGES.iter().any(|&(a, b)| (a..=b).contains(&u))
}

/// sacrebleu's `TokenizerZh`.
pub fn tokenize_zh(line: &str) -> String {
    let mut spaced = String::with_capacity(line.len() * 2);
    for c in pytext::strip(line).chars() {
        if is_chinese_char(c) {
            spaced.push(' ');
            spaced.push(c);
            spaced.push(' ');
        } else {
            spaced.push(c);
        }
    }
    post_tokenize(&spaced)
}

/// One segment's sufficient statistics: sacrebleu's
/// `[hyp_len, ref_len, correct_1..4, total_1..4]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub hyp_len: u64,
    pub ref_len: u64,
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
}

impl BleuStats {
    /// The flat layout sacrebleu uses (and the bootstrap resamples).
    pub fn to_vec(&self) -> Vec<f64> {
        let mut v = vec![self.hyp_len as f64, self.ref_len as f64];
        v.extend(self.correct.iter().map(|&x| x as f64));
        v.extend(self.total.iter().map(|&x| x as f64));
        v
    }

    fn add(&mut self, o: &BleuStats) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// A BLEU score and the numbers sacrebleu prints beside it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BleuScore {
    pub score: f64,
    pub precisions: [f64; MAX_ORDER],
    pub bp: f64,
    pub sys_len: u64,
    pub ref_len: u64,
    pub counts: [u64; MAX_ORDER],
    pub totals: [u64; MAX_ORDER],
}

/// Smoothing (sacrebleu's `none` and `exp`, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smooth {
    None,
    Exp,
}

/// BLEU's settings; [`Bleu::default`] is sacrebleu's `corpus_bleu`,
/// [`Bleu::sentence`] its `sentence_bleu`.
#[derive(Debug, Clone, Copy)]
pub struct Bleu {
    pub tokenize: Tokenize,
    pub lowercase: bool,
    pub smooth: Smooth,
    pub effective_order: bool,
}

impl Default for Bleu {
    fn default() -> Self {
        Self {
            tokenize: Tokenize::V13a,
            lowercase: false,
            smooth: Smooth::Exp,
            effective_order: false,
        }
    }
}

type Ngrams<'a> = HashMap<&'a [&'a str], u64>;

fn ngrams<'a>(tokens: &'a [&'a str]) -> Ngrams<'a> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// sacrebleu's `_get_closest_ref_len`: the closest length, the shorter one on a tie.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in ref_lens {
        let d = hyp_len.abs_diff(r);
        best = match best {
            Some((bd, bl)) if d > bd || (d == bd && r >= bl) => Some((bd, bl)),
            _ => Some((d, r)),
        };
    }
    best.map_or(0, |b| b.1)
}

/// sacrebleu's `my_log`: log, with log(0) floored to -9999999999.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

impl Bleu {
    /// sacrebleu's `sentence_bleu` defaults (effective order on).
    pub fn sentence(tokenize: Tokenize) -> Self {
        Self {
            tokenize,
            effective_order: true,
            ..Self::default()
        }
    }

    /// Corpus defaults with the given tokenizer.
    pub fn corpus(tokenize: Tokenize) -> Self {
        Self {
            tokenize,
            ..Self::default()
        }
    }

    fn preprocess(&self, s: &str) -> String {
        if self.lowercase {
            self.tokenize.apply(&s.to_lowercase())
        } else {
            self.tokenize.apply(s)
        }
    }

    /// One segment's statistics against its references (sacrebleu's
    /// `_extract_reference_info` + `_compute_segment_statistics`): n-gram
    /// counts clipped by the maximum count over the references.
    pub fn segment_stats(
        &self,
        hypothesis: &str,
        references: &[&str],
    ) -> anyhow::Result<BleuStats> {
        anyhow::ensure!(
            !references.is_empty(),
            "BLEU: a hypothesis has no reference; give every item at least one"
        );
        let refs_tok: Vec<String> = references.iter().map(|r| self.preprocess(r)).collect();
        let refs_words: Vec<Vec<&str>> = refs_tok
            .iter()
            .map(|r| pytext::split(r).collect())
            .collect();
        let mut ref_max: Ngrams = HashMap::new();
        for words in &refs_words {
            for (g, c) in ngrams(words) {
                let e = ref_max.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let ref_lens: Vec<usize> = refs_words.iter().map(Vec::len).collect();
        let hyp_tok = self.preprocess(hypothesis);
        let hyp_words: Vec<&str> = pytext::split(&hyp_tok).collect();
        let mut st = BleuStats {
            hyp_len: hyp_words.len() as u64,
            ref_len: closest_ref_len(hyp_words.len(), &ref_lens) as u64,
            ..Default::default()
        };
        for (g, c) in ngrams(&hyp_words) {
            let n = g.len() - 1;
            st.total[n] += c;
            if let Some(&r) = ref_max.get(g) {
                st.correct[n] += c.min(r);
            }
        }
        Ok(st)
    }

    /// Per-segment statistics of a corpus; `references[i]` are item i's references.
    pub fn corpus_stats(
        &self,
        hypotheses: &[&str],
        references: &[Vec<&str>],
    ) -> anyhow::Result<Vec<BleuStats>> {
        anyhow::ensure!(
            hypotheses.len() == references.len(),
            "BLEU: {} hypotheses but {} reference lists; give one list per hypothesis",
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

    /// sacrebleu's `compute_bleu` on summed statistics.
    pub fn score_stats(&self, st: &BleuStats) -> BleuScore {
        let (sys_len, ref_len) = (st.hyp_len, st.ref_len);
        let bp = if sys_len < ref_len {
            if sys_len > 0 {
                (1.0 - ref_len as f64 / sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let mut precisions = [0.0; MAX_ORDER];
        let done = |score, precisions| BleuScore {
            score,
            precisions,
            bp,
            sys_len,
            ref_len,
            counts: st.correct,
            totals: st.total,
        };
        // Early stop if there are no matches (sacrebleu #141).
        if st.correct.iter().all(|&c| c == 0) {
            return done(0.0, precisions);
        }
        let mut smooth_mteval = 1.0;
        let mut eff_order = MAX_ORDER;
        for (n, p) in precisions.iter_mut().enumerate() {
            let (correct, total) = (st.correct[n], st.total[n]);
            if total == 0 {
                break;
            }
            if self.effective_order {
                eff_order = n + 1;
            }
            if correct == 0 {
                if self.smooth == Smooth::Exp {
                    smooth_mteval *= 2.0;
                    *p = 100.0 / (smooth_mteval * total as f64);
                }
            } else {
                *p = 100.0 * correct as f64 / total as f64;
            }
        }
        let logs: f64 = precisions[..eff_order].iter().map(|&p| my_log(p)).sum();
        done(bp * (logs / eff_order as f64).exp(), precisions)
    }

    /// The score from statistics in [`BleuStats::to_vec`]'s layout (summed).
    pub fn score_flat(&self, v: &[f64]) -> f64 {
        let get = |i: usize| v.get(i).map_or(0, |&x| x.round().max(0.0) as u64);
        let mut st = BleuStats {
            hyp_len: get(0),
            ref_len: get(1),
            ..Default::default()
        };
        for n in 0..MAX_ORDER {
            st.correct[n] = get(2 + n);
            st.total[n] = get(2 + MAX_ORDER + n);
        }
        self.score_stats(&st).score
    }

    /// Corpus BLEU. An empty corpus is an error (sacrebleu raises on one too).
    pub fn corpus_score(
        &self,
        hypotheses: &[&str],
        references: &[Vec<&str>],
    ) -> anyhow::Result<BleuScore> {
        anyhow::ensure!(
            !hypotheses.is_empty(),
            "BLEU of an empty corpus is undefined (sacrebleu raises too): score at least one item"
        );
        let mut sum = BleuStats::default();
        for s in self.corpus_stats(hypotheses, references)? {
            sum.add(&s);
        }
        Ok(self.score_stats(&sum))
    }

    /// One sentence's BLEU.
    pub fn sentence_score(
        &self,
        hypothesis: &str,
        references: &[&str],
    ) -> anyhow::Result<BleuScore> {
        Ok(self.score_stats(&self.segment_stats(hypothesis, references)?))
    }
}

/// sacrebleu's `corpus_bleu(hyps, refs, tokenize=...)`.
pub fn corpus_bleu(
    hypotheses: &[&str],
    references: &[Vec<&str>],
    tokenize: Tokenize,
) -> anyhow::Result<BleuScore> {
    Bleu::corpus(tokenize).corpus_score(hypotheses, references)
}

/// sacrebleu's `sentence_bleu(hyp, refs, tokenize=...)` (exp smoothing, effective order).
pub fn sentence_bleu(
    hypothesis: &str,
    references: &[&str],
    tokenize: Tokenize,
) -> anyhow::Result<f64> {
    Ok(Bleu::sentence(tokenize)
        .sentence_score(hypothesis, references)?
        .score)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("Hello, world! It costs $1,200.50 (3-4 days)."),
            "Hello , world ! It costs $ 1,200.50 ( 3 - 4 days ) ."
        );
        assert_eq!(
            tokenize_13a("a &quot;b&quot; &amp; <skipped>c"),
            "a \" b \" & c"
        );
        assert_eq!(tokenize_13a("line-\nbreak\nhere"), "linebreak here");
        assert_eq!(tokenize_13a("don't stop-gap"), "don't stop-gap");
        assert_eq!(tokenize_13a(""), "");
    }

    #[test]
    fn tokenizer_zh_keeps_sacrebleus_ranges() {
        assert_eq!(tokenize_zh("我有2.5个GPU。"), "我 有 2.5 个 GPU 。");
        // U+2014 and U+201C fall in the range sacrebleu's '\u20000' really spans.
        assert_eq!(tokenize_zh("a—b“c"), "a — b “ c");
        assert!(!is_chinese_char('\u{2000}'));
        assert!(is_chinese_char('\u{2001}') && is_chinese_char('\u{2a6d}'));
        assert!(!is_chinese_char('\u{2a6e}') && !is_chinese_char('\u{20000}'));
    }

    #[test]
    fn tokenizer_for_target_language() {
        assert_eq!(Tokenize::for_target("zh-CN"), Tokenize::Zh);
        assert_eq!(Tokenize::for_target("ja"), Tokenize::Char);
        assert_eq!(Tokenize::for_target("de"), Tokenize::V13a);
        assert!(Tokenize::from_name("ja-mecab").is_err());
        assert_eq!(Tokenize::Char.apply("日本 語 "), "日 本   語");
    }

    #[test]
    fn identical_sentence_is_100_and_empty_corpus_is_an_error() {
        let b = Bleu::default();
        let s = b
            .corpus_score(
                &["the cat sat on the mat"],
                &[vec!["the cat sat on the mat"]],
            )
            .unwrap();
        assert!((s.score - 100.0).abs() < 1e-9, "{s:?}");
        assert!(b.corpus_score(&[], &[]).is_err());
        assert!(b.corpus_score(&["x"], &[vec![]]).is_err());
        assert!(b.corpus_score(&["x"], &[]).is_err());
        // An empty hypothesis scores 0 with brevity penalty 0, no NaN.
        let e = b.corpus_score(&[""], &[vec!["a b c"]]).unwrap();
        assert_eq!((e.score, e.bp), (0.0, 0.0));
    }

    #[test]
    fn exp_smoothing_and_effective_order_for_short_sentences() {
        // 3 tokens: no 4-grams at all. Without effective order the corpus
        // score has a zero precision and is 0; the sentence score is not.
        let corpus = Bleu::default()
            .corpus_score(&["a b c"], &[vec!["a b c"]])
            .unwrap();
        assert_eq!(corpus.score, 0.0);
        let sent = sentence_bleu("a b c", &["a b c"], Tokenize::V13a).unwrap();
        assert!((sent - 100.0).abs() < 1e-9, "{sent}");
        // One matching unigram out of two, nothing else: exp smoothing gives
        // the bigram 100 / (2 * 1).
        let s = Bleu::sentence(Tokenize::V13a)
            .sentence_score("a x", &["a b"])
            .unwrap();
        assert_eq!(s.precisions[..2], [50.0, 50.0]);
        assert!((s.score - 50.0).abs() < 1e-9);
    }

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, &[7, 3]), 3);
        assert_eq!(closest_ref_len(5, &[6, 4, 9]), 4);
        assert_eq!(closest_ref_len(5, &[5, 4]), 5);
    }

    #[test]
    fn stats_round_trip_through_the_flat_layout() {
        let b = Bleu::default();
        let st = b
            .segment_stats("the cat is on a mat", &["the cat sat on the mat"])
            .unwrap();
        assert_eq!(st.correct, [4, 1, 0, 0]);
        assert_eq!(st.total, [6, 5, 4, 3]);
        assert_eq!(b.score_flat(&st.to_vec()), b.score_stats(&st).score);
    }
}
