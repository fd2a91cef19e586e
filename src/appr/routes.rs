//! APPR paths to routes, with the reference's precedence (literal segments
//! such as `channels` and `blobs/sha256` win over release names) and its
//! tolerance of one trailing slash on package routes.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /cnr/`: the discovery page.
    Discovery,
    Version,
    Routes,
    TestError,
    List,
    Search,
    /// `GET` all manifests, `POST` push.
    Package {
        ns: String,
        name: String,
    },
    Release {
        ns: String,
        name: String,
        release: String,
    },
    /// `GET` show one manifest, `DELETE` it.
    Manifest {
        ns: String,
        name: String,
        release: String,
        media_type: String,
    },
    Pull {
        ns: String,
        name: String,
        release: String,
        media_type: String,
        json: bool,
    },
    Blob {
        ns: String,
        name: String,
        digest: String,
        json: bool,
    },
    Channels {
        ns: String,
        name: String,
    },
    /// `GET` show, `DELETE` delete.
    Channel {
        ns: String,
        name: String,
        channel: String,
    },
    /// `POST` add, `DELETE` remove.
    ChannelRelease {
        ns: String,
        name: String,
        channel: String,
        release: String,
    },
}

impl Route {
    /// The methods a route answers (`Allow`).
    pub fn allow(&self) -> &'static str {
        match self {
            Route::Package { .. } => "GET, HEAD, OPTIONS, POST",
            Route::Manifest { .. } | Route::Channel { .. } => "DELETE, GET, HEAD, OPTIONS",
            Route::ChannelRelease { .. } => "DELETE, OPTIONS, POST",
            _ => "GET, HEAD, OPTIONS",
        }
    }

    /// A label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Discovery => "appr_discovery",
            Route::Version => "appr_version",
            Route::Routes => "appr_routes",
            Route::TestError => "appr_test_error",
            Route::List => "appr_list",
            Route::Search => "appr_search",
            Route::Package { .. } => "appr_package",
            Route::Release { .. } => "appr_release",
            Route::Manifest { .. } => "appr_manifest",
            Route::Pull { .. } => "appr_pull",
            Route::Blob { .. } => "appr_blob",
            Route::Channels { .. } => "appr_channels",
            Route::Channel { .. } => "appr_channel",
            Route::ChannelRelease { .. } => "appr_channel_release",
        }
    }

    /// Parse a request path (still percent-encoded).
    pub fn parse(path: &str) -> Option<Route> {
        match path {
            "/cnr/" => return Some(Route::Discovery),
            "/cnr/version" => return Some(Route::Version),
            "/cnr/routes" => return Some(Route::Routes),
            "/cnr/test_error" => return Some(Route::TestError),
            _ => {}
        }
        let rest = path
            .strip_prefix("/cnr/api/v1/packages")
            .or_else(|| path.strip_prefix("/api/v1/packages"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Some(Route::List);
        }
        let rest = rest.strip_prefix('/')?;
        let segs: Vec<String> = rest.split('/').map(percent_decode).collect();
        if segs.iter().any(String::is_empty) {
            return None;
        }
        let s = |i: usize| segs[i].clone();
        let lit = |i: usize, v: &str| segs.get(i).map(String::as_str) == Some(v);
        let (ns, name) = match segs.len() {
            1 if lit(0, "search") => return Some(Route::Search),
            0 | 1 => return None,
            _ => (s(0), s(1)),
        };
        Some(match segs.len() {
            2 => Route::Package { ns, name },
            3 if lit(2, "channels") => Route::Channels { ns, name },
            3 => Route::Release {
                ns,
                name,
                release: s(2),
            },
            4 if lit(2, "channels") => Route::Channel {
                ns,
                name,
                channel: s(3),
            },
            4 => Route::Manifest {
                ns,
                name,
                release: s(2),
                media_type: s(3),
            },
            5 if lit(2, "channels") => Route::ChannelRelease {
                ns,
                name,
                channel: s(3),
                release: s(4),
            },
            5 if lit(2, "blobs") && lit(3, "sha256") => Route::Blob {
                ns,
                name,
                digest: s(4),
                json: false,
            },
            5 if lit(4, "pull") => Route::Pull {
                ns,
                name,
                release: s(2),
                media_type: s(3),
                json: false,
            },
            6 if lit(2, "blobs") && lit(3, "sha256") && lit(5, "json") => Route::Blob {
                ns,
                name,
                digest: s(4),
                json: true,
            },
            6 if lit(4, "pull") && lit(5, "json") => Route::Pull {
                ns,
                name,
                release: s(2),
                media_type: s(3),
                json: true,
            },
            _ => return None,
        })
    }
}

/// `%XX` decoding of one path segment (bad escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let (true, Ok(v)) = (
                hex.bytes().all(|c| c.is_ascii_hexdigit()),
                u8::from_str_radix(hex, 16),
            ) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> Option<Route> {
        Route::parse(path)
    }

    #[test]
    fn precedence_and_prefixes() {
        let pkg = |ns: &str, n: &str| (ns.to_string(), n.to_string());
        assert_eq!(p("/cnr/api/v1/packages"), Some(Route::List));
        assert_eq!(p("/cnr/api/v1/packages/"), Some(Route::List));
        assert_eq!(p("/api/v1/packages"), Some(Route::List));
        assert_eq!(p("/cnr/api/v1/packages/search"), Some(Route::Search));
        assert_eq!(p("/cnr/version"), Some(Route::Version));
        assert_eq!(p("/cnr/version/"), None);
        assert_eq!(p("/version"), None);
        let (ns, name) = pkg("a", "b");
        assert_eq!(
            p("/cnr/api/v1/packages/a/b/channels/"),
            Some(Route::Channels {
                ns: ns.clone(),
                name: name.clone()
            })
        );
        assert_eq!(
            p("/api/v1/packages/a/b/channels/stable/1.0.0"),
            Some(Route::ChannelRelease {
                ns: ns.clone(),
                name: name.clone(),
                channel: "stable".into(),
                release: "1.0.0".into()
            })
        );
        assert_eq!(
            p("/cnr/api/v1/packages/a/b/blobs/sha256/abc/json"),
            Some(Route::Blob {
                ns: ns.clone(),
                name: name.clone(),
                digest: "abc".into(),
                json: true
            })
        );
        assert_eq!(
            p("/cnr/api/v1/packages/a/b/%3E%3D1.0.0%2C%3C2.0.0/-/pull/json/"),
            Some(Route::Pull {
                ns: ns.clone(),
                name: name.clone(),
                release: ">=1.0.0,<2.0.0".into(),
                media_type: "-".into(),
                json: true
            })
        );
        assert_eq!(
            p("/cnr/api/v1/packages/a/b/1.0.0/helm"),
            Some(Route::Manifest {
                ns,
                name,
                release: "1.0.0".into(),
                media_type: "helm".into()
            })
        );
        assert_eq!(p("/cnr/api/v1/packages/a"), None);
        assert_eq!(p("/cnr/api/v1/packages/a/b/1/2/3/4/5"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }
}
