//! The paper's blind A/B study (its Figure 5): votes between two systems
//! answering the same recording, kept in SQLite, and their win rates with
//! paired-bootstrap 95% intervals.
//!
//! One table, `votes`: a vote per row, with both systems' names, which one
//! was shown on the left, the person's choice (left / right / tie) and the
//! winner by name (`tie` for a tie). `diva serve --votes` writes it,
//! `diva eval arena` reads it.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use serde::Serialize;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    created_s INTEGER NOT NULL,
    trial TEXT NOT NULL UNIQUE,
    system_left TEXT NOT NULL,
    system_right TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
    winner TEXT NOT NULL,
    audio_sha256 TEXT NOT NULL
)";

/// The vote store (a SQLite file; WAL, so a reader never blocks the server).
pub struct Votes {
    db: Connection,
}

impl Votes {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Connection::open(path).map_err(|e| {
            anyhow::anyhow!("cannot open the votes database {}: {e}", path.display())
        })?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute(SCHEMA, [])?;
        Ok(Self { db })
    }

    /// Record one vote. A trial votes once: a second vote for it is refused.
    pub fn record(
        &self,
        trial: &str,
        left: &str,
        right: &str,
        choice: &str,
        audio_sha256: &str,
    ) -> anyhow::Result<()> {
        let winner = match choice {
            "left" => left,
            "right" => right,
            "tie" => "tie",
            other => anyhow::bail!("choice `{other}`: vote left, right or tie"),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.db
            .execute(
                "INSERT INTO votes (created_s, trial, system_left, system_right, choice, winner, audio_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![now, trial, left, right, choice, winner, audio_sha256],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                    anyhow::anyhow!("trial {trial} has a vote already")
                }
                other => anyhow::anyhow!("cannot record the vote: {other}"),
            })?;
        Ok(())
    }

    /// Every vote as (system A, system B, outcome for A: 1 win, 0.5 tie, 0
    /// loss), with A and B in name order so the pair is the same whatever
    /// side each was shown on.
    pub fn outcomes(&self) -> anyhow::Result<Vec<(String, String, f64)>> {
        let mut q = self
            .db
            .prepare("SELECT system_left, system_right, winner FROM votes ORDER BY id")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (l, r, w) = row?;
            let (a, b) = if l <= r { (l, r) } else { (r, l) };
            let score = if w == "tie" {
                0.5
            } else if w == a {
                1.0
            } else {
                0.0
            };
            out.push((a, b, score));
        }
        Ok(out)
    }
}

/// One pair's result.
#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub system_a: String,
    pub system_b: String,
    pub votes: usize,
    pub a_wins: usize,
    pub b_wins: usize,
    pub ties: usize,
    /// A's win rate, a tie counting half.
    pub a_win_rate: f64,
    /// Paired bootstrap over votes (resampled with replacement): 2.5 and
    /// 97.5 percentiles of A's win rate.
    pub ci95: [f64; 2],
}

/// Win rates per pair of systems, with `rounds` bootstrap resamples (seeded).
pub fn report(outcomes: &[(String, String, f64)], rounds: usize, seed: u64) -> Vec<PairReport> {
    let mut pairs: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for (a, b, s) in outcomes {
        pairs.entry((a.clone(), b.clone())).or_default().push(*s);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    pairs
        .into_iter()
        .map(|((a, b), scores)| {
            let n = scores.len();
            let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / n as f64;
            let rate = mean(&mut scores.iter().copied());
            let mut boot: Vec<f64> = (0..rounds)
                .map(|_| mean(&mut (0..n).map(|_| scores[rng.random_range(0..n)])))
                .collect();
            boot.sort_by(f64::total_cmp);
            let pick = |q: f64| {
                boot.get(((rounds as f64 - 1.0) * q).round() as usize)
                    .copied()
                    .unwrap_or(rate)
            };
            PairReport {
                a_wins: scores.iter().filter(|&&s| s == 1.0).count(),
                b_wins: scores.iter().filter(|&&s| s == 0.0).count(),
                ties: scores.iter().filter(|&&s| s == 0.5).count(),
                votes: n,
                a_win_rate: rate,
                ci95: [pick(0.025), pick(0.975)],
                system_a: a,
                system_b: b,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_round_trip_and_win_rates_have_bootstrap_intervals() {
        let dir = tempfile::tempdir().unwrap();
        let v = Votes::open(&dir.path().join("votes.sqlite")).unwrap();
        // 8 votes for diva, 2 for the cascade, 2 ties, sides alternating.
        let mut n = 0;
        let mut vote = |left: &str, right: &str, choice: &str| {
            n += 1;
            v.record(&format!("t{n}"), left, right, choice, "sha")
                .unwrap();
        };
        for i in 0..8 {
            if i % 2 == 0 {
                vote("diva", "cascade", "left")
            } else {
                vote("cascade", "diva", "right")
            }
        }
        vote("diva", "cascade", "right");
        vote("cascade", "diva", "left");
        vote("diva", "cascade", "tie");
        vote("cascade", "diva", "tie");
        let e = v
            .record("t1", "diva", "cascade", "left", "sha")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a vote already"), "{e}");
        assert!(v.record("t99", "a", "b", "up", "sha").is_err());

        let r = report(&v.outcomes().unwrap(), 2000, 0);
        assert_eq!(r.len(), 1);
        let p = &r[0];
        // Name order: "cascade" < "diva", so A is the cascade.
        assert_eq!(
            (p.system_a.as_str(), p.system_b.as_str()),
            ("cascade", "diva")
        );
        assert_eq!((p.votes, p.a_wins, p.b_wins, p.ties), (12, 2, 8, 2));
        assert!((p.a_win_rate - 3.0 / 12.0).abs() < 1e-12);
        assert!(
            p.ci95[0] < p.a_win_rate && p.a_win_rate < p.ci95[1],
            "{p:?}"
        );
        assert!(p.ci95[0] >= 0.0 && p.ci95[1] <= 0.6, "{p:?}");
        // Reopening keeps the votes.
        drop(v);
        let v = Votes::open(&dir.path().join("votes.sqlite")).unwrap();
        assert_eq!(v.outcomes().unwrap().len(), 12);
    }
}
