//! Repository names, tags and references, checked against the distribution
//! spec's grammar before they reach storage keys.

use once_cell::sync::Lazy;
use regex::Regex;

use crate::digest::{Digest, DigestError};

static NAME: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$").unwrap()
});
static TAG: Lazy<Regex> = Lazy::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap());

/// Longest repository name accepted (as in distribution).
pub const MAX_NAME_LEN: usize = 255;

pub fn valid_repo(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && NAME.is_match(name)
}

pub fn valid_tag(tag: &str) -> bool {
    TAG.is_match(tag)
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReferenceError {
    /// Neither a tag nor a digest.
    Invalid,
    /// Shaped like a digest but not a usable one.
    Digest(DigestError),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            return s
                .parse()
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest);
        }
        if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Invalid)
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "myorg/myrepo", "a.b/c-d/e__f", "a--b", "x/y/z"] {
            assert!(valid_repo(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/../b",
            "..",
            "a//b",
            "/a",
            "a/",
            "a/_tags",
            "-a",
            "a.",
            &"a".repeat(256),
        ] {
            assert!(!valid_repo(bad), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(Reference::parse("v1.0"), Ok(Reference::Tag("v1.0".into())));
        assert_eq!(Reference::parse(".INVALID"), Err(ReferenceError::Invalid));
        assert!(matches!(
            Reference::parse("sha256:totallywrong"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
