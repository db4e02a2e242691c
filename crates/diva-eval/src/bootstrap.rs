//! Paired bootstrap between two systems scored on the same items: for every
//! metric of `diva eval`, intervals for each system and for their difference,
//! and a two-sided p-value.
//!
//! Procedure (Koehn 2004, "Statistical significance tests for machine
//! translation evaluation", as sacrebleu's `--paired-bs` and Moses'
//! `bootstrap-hypothesis-difference-significance.pl` run it):
//! - Each item carries sufficient statistics (BLEU's n-gram counts and lengths,
//!   chrF's n-gram counts, per-class tp/fp/fn for weighted F1, `[score, 1]`
//!   for a per-item mean such as accuracy, exact match or PEDANTS).
//! - One resample draws n item indices with replacement (seeded `StdRng`, so a
//!   seed and rand version give the same numbers). Both systems use the same
//!   indices (that is what makes it paired), their statistics are summed over
//!   the drawn items and the corpus metric is recomputed from the sums: a
//!   corpus BLEU of the resampled corpus, not a mean of sentence BLEUs.
//! - `resamples` (10,000 by default) such draws give each system's and the
//!   difference's (B − A) bootstrap distribution: its mean, standard deviation
//!   and the 2.5 / 97.5 percentiles (the 95% percentile interval, linear
//!   interpolation between order statistics as NumPy's default `percentile`).
//! - p-value, two-sided, for "no difference": the difference's distribution
//!   shifted to mean 0 stands for the null, and p is the share of resamples
//!   at least as far from 0 as the observed difference, with the usual +1
//!   correction: `(1 + #{|d_i - mean(d)| >= |d_obs|}) / (B + 1)`.
//!   [`PairedBootstrap::p_value_sacrebleu`] is sacrebleu's formula on the same
//!   resamples, `(1 + #{|d_i| - mean|d| > |d_obs|}) / (B + 1)`, given for
//!   comparison with published numbers; it centres |d| rather than d, which
//!   roughly halves p for a clear difference and gives its floor 1/(B+1) for
//!   two identical systems (where the two-sided p above is 1).

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Resamples, seed and interval level.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapConfig {
    pub resamples: usize,
    pub seed: u64,
    /// Central interval mass (0.95 gives the 2.5 and 97.5 percentiles).
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 10_000,
            seed: 19,
            confidence: 0.95,
        }
    }
}

/// One quantity's bootstrap summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// On all items (the number to report).
    pub observed: f64,
    /// Mean over resamples.
    pub mean: f64,
    /// Standard deviation over resamples (the bootstrap standard error).
    pub std: f64,
    /// Percentile interval.
    pub lo: f64,
    pub hi: f64,
}

/// Two systems compared on the same items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedBootstrap {
    pub items: usize,
    pub resamples: usize,
    pub seed: u64,
    pub confidence: f64,
    pub a: Estimate,
    pub b: Estimate,
    /// B − A.
    pub diff: Estimate,
    /// Two-sided p-value of the centred test (see the module comment).
    pub p_value: f64,
    /// sacrebleu's paired-bootstrap p-value formula on the same resamples.
    pub p_value_sacrebleu: f64,
}

/// NumPy's `percentile(x, 100 q)` (method "linear") of sorted values.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

fn summarise(observed: f64, mut boot: Vec<f64>, confidence: f64) -> Estimate {
    let n = boot.len() as f64;
    let mean = boot.iter().sum::<f64>() / n;
    let std = (boot.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
    boot.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Estimate {
        observed,
        mean,
        std,
        lo: percentile_sorted(&boot, tail),
        hi: percentile_sorted(&boot, 1.0 - tail),
    }
}

/// Paired bootstrap over per-item statistics (`stats_a[i]`, `stats_b[i]`: item
/// i's statistics for each system, all of one length) with `metric` turning
/// summed statistics into the corpus score.
pub fn paired_bootstrap<F>(
    stats_a: &[Vec<f64>],
    stats_b: &[Vec<f64>],
    metric: F,
    cfg: BootstrapConfig,
) -> anyhow::Result<PairedBootstrap>
where
    F: Fn(&[f64]) -> f64,
{
    let n = stats_a.len();
    anyhow::ensure!(
        n == stats_b.len(),
        "paired bootstrap: system A has {n} items, system B {}: score both on the same items",
        stats_b.len()
    );
    anyhow::ensure!(
        n > 0,
        "paired bootstrap of no items: score at least one item"
    );
    anyhow::ensure!(
        cfg.resamples > 0,
        "paired bootstrap with 0 resamples: use at least 1 (10,000 is usual)"
    );
    anyhow::ensure!(
        cfg.confidence > 0.0 && cfg.confidence < 1.0,
        "bootstrap confidence {} must be between 0 and 1 (0.95 for 95%)",
        cfg.confidence
    );
    let dim = stats_a[0].len();
    if let Some(i) = (0..n).find(|&i| stats_a[i].len() != dim || stats_b[i].len() != dim) {
        anyhow::bail!(
            "paired bootstrap: item {i} has {} / {} statistics where item 0 has {dim}: \
             every item needs the same statistics",
            stats_a[i].len(),
            stats_b[i].len()
        );
    }
    let sum_all = |s: &[Vec<f64>]| {
        let mut t = vec![0.0; dim];
        for row in s {
            for (a, b) in t.iter_mut().zip(row) {
                *a += b;
            }
        }
        t
    };
    let (obs_a, obs_b) = (metric(&sum_all(stats_a)), metric(&sum_all(stats_b)));
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut boot_a = Vec::with_capacity(cfg.resamples);
    let mut boot_b = Vec::with_capacity(cfg.resamples);
    let (mut sa, mut sb) = (vec![0.0; dim], vec![0.0; dim]);
    for _ in 0..cfg.resamples {
        sa.fill(0.0);
        sb.fill(0.0);
        for _ in 0..n {
            let i = rng.random_range(0..n);
            for (acc, x) in sa.iter_mut().zip(&stats_a[i]) {
                *acc += x;
            }
            for (acc, x) in sb.iter_mut().zip(&stats_b[i]) {
                *acc += x;
            }
        }
        boot_a.push(metric(&sa));
        boot_b.push(metric(&sb));
    }
    let d: Vec<f64> = boot_a.iter().zip(&boot_b).map(|(a, b)| b - a).collect();
    let d_obs = obs_b - obs_a;
    let bn = cfg.resamples as f64;
    let d_mean = d.iter().sum::<f64>() / bn;
    let abs_mean = d.iter().map(|x| x.abs()).sum::<f64>() / bn;
    let far = d
        .iter()
        .filter(|x| (*x - d_mean).abs() >= d_obs.abs())
        .count();
    let far_sb = d
        .iter()
        .filter(|x| x.abs() - abs_mean > d_obs.abs())
        .count();
    Ok(PairedBootstrap {
        items: n,
        resamples: cfg.resamples,
        seed: cfg.seed,
        confidence: cfg.confidence,
        a: summarise(obs_a, boot_a, cfg.confidence),
        b: summarise(obs_b, boot_b, cfg.confidence),
        diff: summarise(d_obs, d, cfg.confidence),
        p_value: (1 + far) as f64 / (bn + 1.0),
        p_value_sacrebleu: (1 + far_sb) as f64 / (bn + 1.0),
    })
}

/// Paired bootstrap of a per-item mean (accuracy, exact match, token F1, PEDANTS).
pub fn paired_bootstrap_mean(
    scores_a: &[f64],
    scores_b: &[f64],
    cfg: BootstrapConfig,
) -> anyhow::Result<PairedBootstrap> {
    let wrap = |s: &[f64]| s.iter().map(|&x| vec![x, 1.0]).collect::<Vec<_>>();
    paired_bootstrap(&wrap(scores_a), &wrap(scores_b), |s| s[0] / s[1], cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(resamples: usize, seed: u64) -> BootstrapConfig {
        BootstrapConfig {
            resamples,
            seed,
            confidence: 0.95,
        }
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_sorted(&x, 0.0), 1.0);
        assert_eq!(percentile_sorted(&x, 1.0), 4.0);
        // np.percentile([1,2,3,4], 25) = 1.75, 97.5 -> 3.925
        assert!((percentile_sorted(&x, 0.25) - 1.75).abs() < 1e-12);
        assert!((percentile_sorted(&x, 0.975) - 3.925).abs() < 1e-12);
        assert_eq!(percentile_sorted(&[7.0], 0.3), 7.0);
    }

    #[test]
    fn identical_systems_have_no_difference() {
        let s: Vec<f64> = (0..50).map(|i| f64::from(i % 3 == 0)).collect();
        let r = paired_bootstrap_mean(&s, &s, cfg(500, 1)).unwrap();
        assert_eq!((r.diff.lo, r.diff.hi, r.diff.observed), (0.0, 0.0, 0.0));
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.p_value_sacrebleu, 1.0 / 501.0);
        assert!(r.a.lo <= r.a.observed && r.a.observed <= r.a.hi);
    }

    #[test]
    fn seeded_and_paired() {
        let a: Vec<f64> = (0..80).map(|i| f64::from(i % 2 == 0)).collect();
        let b: Vec<f64> = (0..80)
            .map(|i| f64::from(i % 2 == 0 || i % 5 == 0))
            .collect();
        let r1 = paired_bootstrap_mean(&a, &b, cfg(2000, 7)).unwrap();
        let r2 = paired_bootstrap_mean(&a, &b, cfg(2000, 7)).unwrap();
        let r3 = paired_bootstrap_mean(&a, &b, cfg(2000, 8)).unwrap();
        assert_eq!(r1, r2);
        assert_ne!(r1.a.std, r3.a.std, "another seed, other resamples");
        // B is never worse than A item by item, so no resample has B < A.
        assert!(r1.diff.lo >= 0.0 && r1.diff.observed > 0.0);
        assert!(r1.p_value < 0.02, "{r1:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(paired_bootstrap_mean(&[], &[], cfg(10, 1)).is_err());
        assert!(paired_bootstrap_mean(&[1.0], &[1.0, 0.0], cfg(10, 1)).is_err());
        assert!(paired_bootstrap_mean(&[1.0], &[1.0], cfg(0, 1)).is_err());
        let ragged = [vec![1.0, 2.0], vec![1.0]];
        assert!(paired_bootstrap(&ragged, &ragged, |s| s[0], cfg(10, 1)).is_err());
    }
}
