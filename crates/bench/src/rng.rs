//! A small, seeded pseudo-random generator (SplitMix64) for picking keys, so the bench needs no
//! random-number crate and every run picks the same sequence.

/// SplitMix64: fast, statistically fine for spreading reads over a key space, not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`; workers use distinct seeds.
    pub fn seeded(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), without the bias of a plain modulo.
    pub fn below(&mut self, bound: u64) -> u64 {
        // Lemire's multiply-shift: the high half of a 128-bit product is uniform enough here.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}
