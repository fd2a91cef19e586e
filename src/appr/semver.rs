//! Versions and release queries as the reference server reads them: Python
//! `semantic_version` 2.6 (`Version`, partial versions, `Spec`) plus appr's
//! own `last_version` / `select_version` rules (`appr/semver.py`).
//! Error messages keep Python's wording, `u'...'` repr included, because the
//! reference sends them to clients.

use std::cmp::Ordering;

use once_cell::sync::Lazy;
use regex::Regex;

static FULL: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9a-zA-Z.-]+))?(?:\+([0-9a-zA-Z.-]+))?$").unwrap()
});
static PARTIAL: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^(\d+)(?:\.(\d+)(?:\.(\d+))?)?(?:-([0-9a-zA-Z.-]*))?(?:\+([0-9a-zA-Z.-]*))?$")
        .unwrap()
});
static SPEC_ITEM: Lazy<Regex> =
    Lazy::new(|| Regex::new(r"^(<=|<|==|=|>=|>|!=|\^|~=|~|)(\d.*)$").unwrap());

/// Python 2 `repr()` of a unicode string, as in the reference's messages.
pub fn py_repr(s: &str) -> String {
    let body = s.replace('\\', "\\\\").replace('\'', "\\'");
    format!("u'{body}'")
}

/// A version; `None` fields only occur in partial versions (inside specs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: Option<u64>,
    pub patch: Option<u64>,
    pub prerelease: Option<Vec<String>>,
    pub build: Option<Vec<String>>,
}

fn leading_zero(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

fn identifiers(s: &str, allow_leading_zeroes: bool) -> Result<Vec<String>, String> {
    let ids: Vec<String> = s.split('.').map(str::to_string).collect();
    for id in &ids {
        if id.is_empty() {
            return Err(format!(
                "Invalid empty identifier {} in {}",
                py_repr(id),
                py_repr(s)
            ));
        }
        if !allow_leading_zeroes && leading_zero(id) {
            return Err(format!(
                "Invalid leading zero in identifier {}",
                py_repr(id)
            ));
        }
    }
    Ok(ids)
}

impl Version {
    /// A strict SemVer 2.0 version (what push accepts).
    pub fn parse(s: &str) -> Result<Version, String> {
        Self::parse_with(s, false)
    }

    fn parse_with(s: &str, partial: bool) -> Result<Version, String> {
        if s.is_empty() {
            return Err(format!("Invalid empty version string: {}", py_repr(s)));
        }
        let re = if partial { &PARTIAL } else { &FULL };
        let c = re
            .captures(s)
            .ok_or_else(|| format!("Invalid version string: {}", py_repr(s)))?;
        let part = |i: usize| c.get(i).map(|m| m.as_str());
        for (i, name) in [(1, "major"), (2, "minor"), (3, "patch")] {
            if part(i).is_some_and(leading_zero) {
                return Err(format!("Invalid leading zero in {name}: {}", py_repr(s)));
            }
        }
        let num = |i: usize| -> Result<Option<u64>, String> {
            part(i)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("Invalid version string: {}", py_repr(s)))
                })
                .transpose()
        };
        let major = num(1)?.unwrap_or(0);
        let (minor, patch) = (num(2)?, num(3)?);
        let (pre, build) = (part(4), part(5));
        let prerelease = match pre {
            None if partial && build.is_none() => None,
            None | Some("") => Some(vec![]),
            Some(p) => Some(identifiers(p, false)?),
        };
        let build = match build {
            None if partial => None,
            None | Some("") => Some(vec![]),
            Some(b) => Some(identifiers(b, true)?),
        };
        Ok(Version {
            major,
            minor,
            patch,
            prerelease,
            build,
        })
    }

    fn is_prerelease(&self) -> bool {
        self.prerelease.as_ref().is_some_and(|p| !p.is_empty())
    }

    fn core(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor: Some(minor),
            patch: Some(patch),
            prerelease: Some(vec![]),
            build: Some(vec![]),
        }
    }

    fn minor_or_zero(&self) -> u64 {
        self.minor.unwrap_or(0)
    }

    fn patch_or_zero(&self) -> u64 {
        self.patch.unwrap_or(0)
    }

    fn next_major(&self) -> Version {
        if self.is_prerelease() && self.minor == Some(0) && self.patch == Some(0) {
            Version::core(self.major, 0, 0)
        } else {
            Version::core(self.major + 1, 0, 0)
        }
    }

    fn next_minor(&self) -> Version {
        if self.is_prerelease() && self.patch == Some(0) {
            Version::core(self.major, self.minor_or_zero(), 0)
        } else {
            Version::core(self.major, self.minor_or_zero() + 1, 0)
        }
    }

    fn next_patch(&self) -> Version {
        if self.is_prerelease() {
            Version::core(self.major, self.minor_or_zero(), self.patch_or_zero())
        } else {
            Version::core(self.major, self.minor_or_zero(), self.patch_or_zero() + 1)
        }
    }

    /// Python's `__cmp__`: `None` when build metadata differs (no ordering).
    fn compare(&self, other: &Version) -> Option<Ordering> {
        let partial = [self, other].iter().any(|v| {
            v.minor.is_none() || v.patch.is_none() || v.prerelease.is_none() || v.build.is_none()
        });
        let opt = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ if partial => Ordering::Equal,
            (a, b) => a.cmp(&b),
        };
        let ord = self
            .major
            .cmp(&other.major)
            .then(opt(self.minor, other.minor))
            .then(opt(self.patch, other.patch))
            .then(match (&self.prerelease, &other.prerelease) {
                (Some(a), Some(b)) => prerelease_cmp(a, b),
                _ => Ordering::Equal,
            });
        if ord != Ordering::Equal {
            return Some(ord);
        }
        match (&self.build, &other.build) {
            (Some(a), Some(b)) if a != b => None,
            _ => Some(Ordering::Equal),
        }
    }

    /// A total order for sorting release lists (build metadata last).
    pub fn sort_cmp(&self, other: &Version) -> Ordering {
        self.compare(other)
            .unwrap_or_else(|| self.build.cmp(&other.build))
    }
}

fn prerelease_cmp(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, false) => {
            for (x, y) in a.iter().zip(b) {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            a.len().cmp(&b.len())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Lt,
    Lte,
    Eq,
    Gte,
    Gt,
    Neq,
    Caret,
    Tilde,
    Compatible,
}

#[derive(Debug, Clone)]
struct SpecItem {
    kind: Kind,
    spec: Version,
}

impl SpecItem {
    fn parse(s: &str) -> Result<SpecItem, String> {
        if s.is_empty() {
            return Err(format!(
                "Invalid empty requirement specification: {}",
                py_repr(s)
            ));
        }
        if s == "*" {
            return Ok(SpecItem {
                kind: Kind::Any,
                spec: Version::core(0, 0, 0),
            });
        }
        let c = SPEC_ITEM
            .captures(s)
            .ok_or_else(|| format!("Invalid requirement specification: {}", py_repr(s)))?;
        let kind = match &c[1] {
            "<" => Kind::Lt,
            "<=" => Kind::Lte,
            "" | "=" | "==" => Kind::Eq,
            ">=" => Kind::Gte,
            ">" => Kind::Gt,
            "!=" => Kind::Neq,
            "^" => Kind::Caret,
            "~" => Kind::Tilde,
            _ => Kind::Compatible,
        };
        let spec = Version::parse_with(&c[2], true)?;
        if spec.build.is_some() && !matches!(kind, Kind::Eq | Kind::Neq) {
            return Err(format!(
                "Invalid requirement specification {}: build numbers have no ordering.",
                py_repr(s)
            ));
        }
        Ok(SpecItem { kind, spec })
    }

    fn matches(&self, v: &Version) -> bool {
        let c = v.compare(&self.spec);
        let within = |upper: Version| {
            matches!(c, Some(Ordering::Greater | Ordering::Equal))
                && v.compare(&upper) == Some(Ordering::Less)
        };
        match self.kind {
            Kind::Any => true,
            Kind::Lt => c == Some(Ordering::Less),
            Kind::Lte => matches!(c, Some(Ordering::Less | Ordering::Equal)),
            Kind::Eq => c == Some(Ordering::Equal),
            Kind::Gte => matches!(c, Some(Ordering::Greater | Ordering::Equal)),
            Kind::Gt => c == Some(Ordering::Greater),
            Kind::Neq => c != Some(Ordering::Equal),
            Kind::Caret => within(if self.spec.major != 0 {
                self.spec.next_major()
            } else if self.spec.minor != Some(0) {
                self.spec.next_minor()
            } else {
                self.spec.next_patch()
            }),
            Kind::Tilde => within(self.spec.next_minor()),
            Kind::Compatible => within(if self.spec.patch.is_some() {
                self.spec.next_minor()
            } else {
                self.spec.next_major()
            }),
        }
    }
}

/// Sort release strings by semver, highest first; strings that are not
/// versions are dropped.
pub fn sort_desc(releases: &mut Vec<String>) {
    releases.retain(|r| Version::parse(r).is_ok());
    releases.sort_by(|a, b| {
        let (a, b) = (Version::parse(a).unwrap(), Version::parse(b).unwrap());
        b.sort_cmp(&a)
    });
}

/// The highest release (pre-releases included): what `default` means.
pub fn last_version(releases: &[String]) -> Option<String> {
    let mut all = releases.to_vec();
    sort_desc(&mut all);
    all.into_iter().next()
}

/// appr's `select_version`: the highest release matching every
/// comma-separated requirement; pre-releases only count when the query
/// itself contains a `-`. `Err` carries the reference's message.
pub fn select_version(releases: &[String], query: &str) -> Result<Option<String>, String> {
    let parts: Vec<String> = query.split(',').map(|p| p.replace(' ', "")).collect();
    let items = parts
        .iter()
        .map(|p| SpecItem::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let stable = !query.contains('-');
    let mut candidates: Vec<String> = releases
        .iter()
        .filter(|r| !stable || !r.contains('-'))
        .filter(|r| Version::parse(r).is_ok_and(|v| items.iter().all(|item| item.matches(&v))))
        .cloned()
        .collect();
    sort_desc(&mut candidates);
    Ok(candidates.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn releases() -> Vec<String> {
        [
            "1.0.0",
            "1.1.0-rc.1",
            "1.2.0",
            "2.0.0",
            "2.1.0-beta",
            "10.0.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn reference_table() {
        let r = releases();
        assert_eq!(last_version(&r).as_deref(), Some("10.0.0"));
        for (q, want) in [
            ("*", Some("10.0.0")),
            ("1.2.0", Some("1.2.0")),
            ("1.2", Some("1.2.0")),
            ("1", Some("1.2.0")),
            ("==1.2.0", Some("1.2.0")),
            (">=1.0.0", Some("10.0.0")),
            (">=1.0.0,<2.0.0", Some("1.2.0")),
            (">= 1.0.0, < 2.0.0", Some("1.2.0")),
            ("<2.0.0", Some("1.2.0")),
            ("^1.0.0", Some("1.2.0")),
            ("~=1.1", Some("1.2.0")),
            ("!=10.0.0", Some("2.0.0")),
            ("~1.1.0", None),
            (">1.0.0-a", Some("10.0.0")),
            ("1.1.0-rc.1", Some("1.1.0-rc.1")),
            ("9.9.9", None),
        ] {
            assert_eq!(select_version(&r, q).unwrap().as_deref(), want, "{q}");
        }
        assert_eq!(
            select_version(&r, "abc").unwrap_err(),
            "Invalid requirement specification: u'abc'"
        );
        assert!(select_version(&r, "v1.0.0").is_err());
        assert!(select_version(&r, "1.x").is_err());
        assert!(select_version(&r, ">1.0.0+b").is_err());
    }

    #[test]
    fn strict_versions() {
        for ok in [
            "1.0.0",
            "1.1.0-rc.1",
            "1.0.0+build.1",
            "0.0.0",
            "1.0.0-0.3.7",
        ] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1.0",
            "v1.0.0",
            "01.0.0",
            "abc",
            "1.0.0-01",
            "1.0.0-a..b",
            "",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Version::parse("abc").unwrap_err(),
            "Invalid version string: u'abc'"
        );
        assert_eq!(
            Version::parse("01.0.0").unwrap_err(),
            "Invalid leading zero in major: u'01.0.0'"
        );
    }

    #[test]
    fn ordering() {
        let mut r = releases();
        r.push("1.0.0-alpha".into());
        r.push("1.0.0-alpha.1".into());
        r.push("1.0.0-beta.2".into());
        r.push("1.0.0-beta.11".into());
        sort_desc(&mut r);
        assert_eq!(
            r,
            [
                "10.0.0",
                "2.1.0-beta",
                "2.0.0",
                "1.2.0",
                "1.1.0-rc.1",
                "1.0.0",
                "1.0.0-beta.11",
                "1.0.0-beta.2",
                "1.0.0-alpha.1",
                "1.0.0-alpha"
            ]
        );
    }
}
