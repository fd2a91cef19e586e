//! Content digests (`<alg>:<hex>`) and streaming hashers whose state can be
//! saved between requests, so a chunked upload can move between replicas
//! without re-reading its bytes.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest is not of the form <algorithm>:<hex>")]
    Malformed,
    #[error("unsupported digest algorithm {0:?}")]
    Unsupported(String),
}

impl Digest {
    pub fn new(alg: Algorithm, hex: String) -> Self {
        Digest { alg, hex }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::new(Algorithm::Sha256, hex::encode(Sha256::digest(data)))
    }

    pub fn of(alg: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        // Grammar from the image spec: algorithm components, then base16 encoded.
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let hex_ok = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !alg_ok || !hex_ok {
            return Err(DigestError::Malformed);
        }
        let alg = Algorithm::parse(alg).ok_or_else(|| DigestError::Unsupported(alg.to_string()))?;
        if hex.len() != alg.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            alg,
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::new(Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => Digest::new(Algorithm::Sha512, hex::encode(h.finalize())),
        }
    }

    /// The hasher's internal state, to be stored with an upload session.
    pub fn save(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    pub fn restore(alg: Algorithm, state: &[u8]) -> Option<Self> {
        match alg {
            Algorithm::Sha256 => {
                let s = SerializedState::<Sha256>::try_from(state).ok()?;
                Sha256::deserialize(&s).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let s = SerializedState::<Sha512>::try_from(state).ok()?;
                Sha512::deserialize(&s).ok().map(Hasher::Sha512)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            .parse()
            .unwrap();
        assert_eq!(d, Digest::sha256_of(b"{}"));
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::Malformed));
        assert_eq!(
            "totallywrong".parse::<Digest>(),
            Err(DigestError::Malformed)
        );
        assert!(matches!(
            "md5:abcd".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!(
            "sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A"
                .parse::<Digest>()
                .is_err()
        );
    }

    #[test]
    fn saved_state_resumes() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut a = Hasher::new(alg);
            a.update(b"hello ");
            let mut b = Hasher::restore(alg, &a.save()).unwrap();
            a.update(b"world");
            b.update(b"world");
            assert_eq!(a.finish(), b.finish());
        }
        assert_eq!(Digest::of(Algorithm::Sha256, b"x"), Digest::sha256_of(b"x"));
    }
}
