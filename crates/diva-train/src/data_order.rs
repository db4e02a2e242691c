//! The order examples are visited in: a fresh seeded shuffle each epoch,
//! consumed in batches that run on into the next epoch. The whole state is
//! `(epoch, cursor)`, so a checkpoint restores the data position exactly.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: usize,
    /// Index into the epoch's permutation of the next example.
    pub cursor: usize,
}

pub struct DataOrder {
    n: usize,
    seed: u64,
    pub position: DataPosition,
    permutation: Vec<usize>,
}

impl DataOrder {
    pub fn new(n: usize, seed: u64, position: DataPosition) -> Self {
        let permutation = Self::permutation(n, seed, position.epoch);
        Self {
            n,
            seed,
            position,
            permutation,
        }
    }

    fn permutation(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        p.shuffle(&mut rng);
        p
    }

    /// The next `k` example indices.
    pub fn next_batch(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k && self.n > 0 {
            if self.position.cursor >= self.n {
                self.position.epoch += 1;
                self.position.cursor = 0;
                self.permutation = Self::permutation(self.n, self.seed, self.position.epoch);
            }
            out.push(self.permutation[self.position.cursor]);
            self.position.cursor += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_position_continues_the_same_sequence() {
        let mut a = DataOrder::new(5, 7, DataPosition::default());
        let first: Vec<Vec<usize>> = (0..3).map(|_| a.next_batch(2)).collect();
        let mut epoch0 = [first[0].clone(), first[1].clone()].concat();
        epoch0.push(first[2][0]);
        epoch0.sort();
        assert_eq!(
            epoch0,
            vec![0, 1, 2, 3, 4],
            "each epoch visits every example once"
        );
        let saved = a.position;
        let rest: Vec<Vec<usize>> = (0..4).map(|_| a.next_batch(2)).collect();
        let mut b = DataOrder::new(5, 7, saved);
        let again: Vec<Vec<usize>> = (0..4).map(|_| b.next_batch(2)).collect();
        assert_eq!(rest, again);
        let mut c = DataOrder::new(5, 8, DataPosition::default());
        let other: Vec<Vec<usize>> = (0..3).map(|_| c.next_batch(2)).collect();
        assert_ne!(first, other, "the seed changes the order");
    }
}
