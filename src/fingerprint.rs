//! A hash of a list of texts, for noticing change: what an issue says (its content hash), what a
//! template set or a page was made from. Each text goes in with its length in front, so that no two
//! different lists feed the same bytes.

use sha2::{Digest as _, Sha256};

#[derive(Default, Clone)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// The whole hash of `texts`, in hex.
    pub fn of(texts: &[&str]) -> String {
        let mut f = Fingerprint::default();
        texts.iter().for_each(|t| {
            f.text(t);
        });
        f.finish()
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    /// Bytes of a fixed length (a number's), as they are.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.update(b);
        self
    }

    /// The first `bytes` bytes of the hash, in hex.
    pub fn hex(self, bytes: usize) -> String {
        hex::encode(&self.0.finalize()[..bytes])
    }

    /// The whole hash, in hex.
    pub fn finish(self) -> String {
        self.hex(32)
    }
}

/// The hex SHA-256 of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
