//! A stable 64-bit content digest (FNV-1a): the same bytes give the same
//! value on every platform and in every release, unlike `std`'s hashers,
//! so it can key files that outlive a build (sweep journals, approved
//! policies).

/// FNV-1a over everything written to it.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a64 {
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    /// The digest of `bytes` as 16 hex digits.
    pub fn hex_of(bytes: &[u8]) -> String {
        format!("{:016x}", Fnv1a64::default().write(bytes).finish())
    }
}

#[cfg(test)]
mod tests {
    use super::Fnv1a64;

    #[test]
    fn matches_the_published_fnv1a_64_vectors() {
        assert_eq!(Fnv1a64::hex_of(b""), "cbf29ce484222325");
        assert_eq!(Fnv1a64::hex_of(b"a"), "af63dc4c8601ec8c");
        assert_eq!(Fnv1a64::hex_of(b"foobar"), "85944171f73967e8");
    }
}
