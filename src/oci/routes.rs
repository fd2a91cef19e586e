//! `/v2` paths to routes. Repository names contain slashes, so the path is
//! split on the last endpoint keyword rather than by a route pattern.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Tags { repo: String },
    Manifest { repo: String, reference: String },
    Blob { repo: String, digest: String },
    UploadStart { repo: String },
    Upload { repo: String, id: String },
    Referrers { repo: String, digest: String },
}

impl Route {
    /// A label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } => "upload_start",
            Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// Parse the part of the path after `/v2`.
    pub fn parse(rest: &str) -> Option<Route> {
        if rest.is_empty() || rest == "/" {
            return Some(Route::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Route::Catalog);
        }
        if let Some(repo) = rest.strip_suffix("/tags/list") {
            return Some(Route::Tags { repo: repo.into() });
        }
        if let Some(repo) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Some(Route::UploadStart { repo: repo.into() });
        }
        let split = |kw: &str| {
            rest.rsplit_once(kw)
                .filter(|(r, last)| !r.is_empty() && !last.is_empty() && !last.contains('/'))
        };
        if let Some((repo, id)) = split("/blobs/uploads/") {
            return Some(Route::Upload {
                repo: repo.into(),
                id: id.into(),
            });
        }
        if let Some((repo, reference)) = split("/manifests/") {
            return Some(Route::Manifest {
                repo: repo.into(),
                reference: reference.into(),
            });
        }
        if let Some((repo, digest)) = split("/blobs/") {
            return Some(Route::Blob {
                repo: repo.into(),
                digest: digest.into(),
            });
        }
        if let Some((repo, digest)) = split("/referrers/") {
            return Some(Route::Referrers {
                repo: repo.into(),
                digest: digest.into(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn parses() {
        assert_eq!(Route::parse(""), Some(Route::Base));
        assert_eq!(Route::parse("/"), Some(Route::Base));
        assert_eq!(Route::parse("/_catalog"), Some(Route::Catalog));
        assert_eq!(
            Route::parse("/a/b/tags/list"),
            Some(Route::Tags { repo: "a/b".into() })
        );
        assert_eq!(
            Route::parse("/a/b/blobs/uploads/"),
            Some(Route::UploadStart { repo: "a/b".into() })
        );
        assert_eq!(
            Route::parse("/a/blobs/uploads/123"),
            Some(Route::Upload {
                repo: "a".into(),
                id: "123".into()
            })
        );
        assert_eq!(
            Route::parse("/a/manifests/v1"),
            Some(Route::Manifest {
                repo: "a".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            Route::parse("/x/manifests/y/blobs/sha256:1"),
            Some(Route::Blob {
                repo: "x/manifests/y".into(),
                digest: "sha256:1".into()
            })
        );
        assert_eq!(
            Route::parse("/a/referrers/sha256:1"),
            Some(Route::Referrers {
                repo: "a".into(),
                digest: "sha256:1".into()
            })
        );
        assert_eq!(Route::parse("/a/unknown"), None);
    }
}
