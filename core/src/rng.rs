//! Seeded randomness, one ChaCha stream per subsystem.
//!
//! Every random draw in a run comes from a [`Stream`] derived from the
//! scenario's seed and a [`Subsystem`]: ChaCha's 64-bit stream number selects
//! the subsystem, so adding draws in one subsystem never shifts another's.
//!
//! Requests get *common random numbers*: the load stream draws one 64-bit key
//! per arriving root request, and everything about that request's tree (CPU
//! demand, error draw, which calls it makes) is derived from the key with
//! [`KeyedDraws`]. Two controllers run on the same seed therefore see exactly
//! the same requests, whatever they do to queues and pods.

use std::convert::Infallible;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng, TryRng};
use rand_distr::{Distribution, Exp1, StandardNormal};

/// The subsystems that own a random stream. The discriminant is the ChaCha
/// stream id, so it must never be reordered (it would change every golden
/// result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Subsystem {
    /// Root-request arrival times and request keys.
    Load = 1,
    /// Pod start-up times, probe jitter.
    Pods = 2,
    /// Load-balancer choices (random routing) and retry back-off jitter.
    Traffic = 3,
    /// Fault targets.
    Faults = 4,
    /// Scrape phase.
    Metrics = 5,
    /// Load-curve noise and burst schedules.
    Curves = 6,
    /// Streams handed to controllers.
    Control = 7,
    /// The training-trace generator's draws of loads and faults.
    Traces = 8,
    /// Model training: initial weights, shuffling, dropout.
    Training = 9,
    /// The tuner's candidate settings and the order it spends runs in.
    Tuning = 10,
}

/// A seeded ChaCha8 stream with the few draws the simulator needs.
#[derive(Clone, Debug)]
pub struct Stream {
    rng: ChaCha8Rng,
}

impl Stream {
    pub fn new(seed: u64, subsystem: Subsystem) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(subsystem as u64);
        Stream { rng }
    }

    /// A stream for a sub-part of a subsystem (for example one per load curve),
    /// still independent of every other stream.
    pub fn new_indexed(seed: u64, subsystem: Subsystem, index: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ splitmix64(index.wrapping_add(0x5EED)));
        rng.set_stream(subsystem as u64);
        Stream { rng }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        unit_f64(self.rng.next_u64())
    }

    /// Exponential with the given mean (ziggurat: no logarithm on the hot
    /// path, and the same values on every platform).
    #[inline]
    pub fn exp(&mut self, mean: f64) -> f64 {
        mean * <Exp1 as Distribution<f64>>::sample(&Exp1, &mut self.rng)
    }

    /// Standard normal (ziggurat).
    pub fn normal(&mut self) -> f64 {
        <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut self.rng)
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub fn index(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }
}

/// Deterministic draws derived from a request key: a tiny counter-based
/// generator, so a request's randomness does not depend on the order in which
/// the simulator happens to process it.
#[derive(Clone, Copy, Debug)]
pub struct KeyedDraws {
    state: u64,
}

impl KeyedDraws {
    /// Draws for one part of a request tree: `salt` names the part (service,
    /// call edge, attempt).
    #[inline]
    pub fn new(key: u64, salt: u64) -> Self {
        KeyedDraws {
            state: key ^ splitmix64(salt),
        }
    }
    #[inline]
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        unit_f64(self.next())
    }
    #[inline]
    pub fn exp(&mut self, mean: f64) -> f64 {
        mean * <Exp1 as Distribution<f64>>::sample(&Exp1, self)
    }
    pub fn normal(&mut self) -> f64 {
        <StandardNormal as Distribution<f64>>::sample(&StandardNormal, self)
    }
}

/// Lets `rand_distr`'s samplers draw from a keyed sequence.
impl TryRng for KeyedDraws {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[inline]
fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_reproducible() {
        let a: Vec<u64> = (0..4)
            .map(|_| Stream::new(7, Subsystem::Load).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut load = Stream::new(7, Subsystem::Load);
        let mut pods = Stream::new(7, Subsystem::Pods);
        assert_ne!(load.next_u64(), pods.next_u64());
        assert_ne!(
            Stream::new(8, Subsystem::Load).next_u64(),
            Stream::new(7, Subsystem::Load).next_u64()
        );
    }

    #[test]
    fn uniform_and_exponential_moments() {
        let mut s = Stream::new(1, Subsystem::Traffic);
        let n = 200_000;
        let mean_u: f64 = (0..n).map(|_| s.uniform()).sum::<f64>() / n as f64;
        let mean_e: f64 = (0..n).map(|_| s.exp(2.0)).sum::<f64>() / n as f64;
        assert!((mean_u - 0.5).abs() < 0.005, "{mean_u}");
        assert!((mean_e - 2.0).abs() < 0.03, "{mean_e}");
        let mut k = KeyedDraws::new(99, 3);
        let mean_k: f64 = (0..n).map(|_| k.exp(1.0)).sum::<f64>() / n as f64;
        assert!((mean_k - 1.0).abs() < 0.015, "{mean_k}");
        let var_n: f64 = (0..n).map(|_| k.normal().powi(2)).sum::<f64>() / n as f64;
        assert!((var_n - 1.0).abs() < 0.015, "{var_n}");
    }
}
