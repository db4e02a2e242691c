//! Choosing the next token: greedy, or temperature with top-k / top-p, with an
//! optional repetition penalty. Seeded, so a run is reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 disables it. Applied as in HF/llama.cpp: positive logits are
    /// divided by it, negative ones multiplied.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
    pub max_tokens: usize,
    /// Stop when the decoded reply ends with any of these (not included).
    pub stop_strings: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            max_tokens: 256,
            stop_strings: Vec::new(),
        }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Greedy with no repetition penalty: the choice is the argmax alone, so
    /// on a GPU it can be taken on the device (4 bytes back per token instead
    /// of the whole vocabulary's logits).
    pub fn is_plain_greedy(&self) -> bool {
        self.params.temperature <= 0.0 && self.params.repeat_penalty == 1.0
    }

    /// Pick the next token from `logits` given the tokens produced so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = p.temperature as f32;
        let mut idx: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / t))
            .collect();
        idx.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = p.top_k.filter(|&k| k > 0) {
            idx.truncate(k);
        }
        let max = idx[0].1;
        let mut probs: Vec<f64> = idx.iter().map(|&(_, l)| ((l - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        if let Some(top_p) = p.top_p.filter(|&v| v < 1.0) {
            // Keep the smallest prefix whose mass reaches top_p (at least one).
            let mut acc = 0.0;
            let keep = probs.iter().position(|&q| {
                acc += q;
                acc >= top_p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            idx.truncate(keep);
            let s: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= s);
        }
        let mut r: f64 = self.rng.random();
        for (i, q) in probs.iter().enumerate() {
            r -= q;
            if r <= 0.0 {
                return idx[i].0;
            }
        }
        idx[probs.len() - 1].0
    }
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_maximum() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    /// Only when the argmax alone decides may the device take it.
    #[test]
    fn plain_greedy_means_no_temperature_and_no_penalty() {
        assert!(Sampler::new(SamplingParams::default()).is_plain_greedy());
        for p in [
            SamplingParams {
                repeat_penalty: 1.1,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.7,
                ..Default::default()
            },
        ] {
            assert!(!Sampler::new(p).is_plain_greedy());
        }
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..Default::default()
        });
        // Token 1 (3.0 → 1.5) loses to token 3 (2.9).
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 2.9], &[1]), 3);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support_and_seed_repeats() {
        let logits = [5.0f32, 4.9, 0.0, -3.0, 4.8];
        let draw = |params: SamplingParams| {
            let mut s = Sampler::new(params);
            (0..400)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let base = SamplingParams {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        };
        let k2 = draw(SamplingParams {
            top_k: Some(2),
            ..base.clone()
        });
        assert!(k2.iter().all(|&t| t == 0 || t == 1));
        assert!(k2.contains(&0) && k2.contains(&1));
        let p = draw(SamplingParams {
            top_p: Some(0.3),
            ..base.clone()
        });
        assert!(
            p.iter().all(|&t| t == 0),
            "top-p 0.3 keeps only the top token"
        );
        let all = draw(base.clone());
        assert!(all.contains(&4), "plain sampling reaches the third token");
        assert_eq!(all, draw(base), "same seed, same draws");
    }
}
