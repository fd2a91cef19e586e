//! Channels: one small record per channel in the store, changed only by
//! conditional writes (read, change, write-if-unchanged, retry), so replicas
//! sharing a bucket never lose each other's updates. A deleted channel is a
//! record with no releases (a tombstone), so deletion is conditional too.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Appr, Result, ServiceError};
use crate::appr::semver;
use crate::registry::names;
use crate::store::{layout, Condition, StoreError};

const RETRIES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    pub current: String,
    /// Highest first.
    pub releases: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    current: String,
    #[serde(default)]
    releases: Vec<String>,
}

fn valid_channel(name: &str) -> bool {
    names::valid_tag(name)
}

impl Appr {
    async fn read_channel(&self, repo: &str, name: &str) -> Result<(Option<Channel>, Condition)> {
        match self.reg.store().read(&layout::channel(repo, name)).await {
            Ok((bytes, meta)) => {
                let rec: Record = serde_json::from_slice(&bytes)
                    .map_err(|e| ServiceError::Internal(format!("corrupt channel {name}: {e}")))?;
                let ch = (!rec.releases.is_empty()).then(|| Channel {
                    name: name.to_string(),
                    current: rec.current,
                    releases: rec.releases,
                });
                Ok((ch, Condition::Matches(meta.etag)))
            }
            Err(StoreError::NotFound) => Ok((None, Condition::Absent)),
            Err(e) => Err(e.into()),
        }
    }

    /// Apply `change` atomically; `None` from it deletes the channel.
    async fn update_channel<F>(&self, repo: &str, name: &str, change: F) -> Result<Option<Channel>>
    where
        F: Fn(Option<Channel>) -> Result<Option<Channel>>,
    {
        for _ in 0..RETRIES {
            let (old, cond) = self.read_channel(repo, name).await?;
            let new = change(old.clone())?;
            if new == old {
                return Ok(new);
            }
            let rec = match &new {
                Some(c) => Record {
                    current: c.current.clone(),
                    releases: c.releases.clone(),
                },
                None => Record::default(),
            };
            let data = Bytes::from(serde_json::to_vec(&rec).expect("record serializes"));
            match self
                .reg
                .store()
                .put_if(&layout::channel(repo, name), data, cond)
                .await
            {
                Ok(_) => return Ok(new),
                Err(StoreError::PreconditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Internal(format!(
            "channel {name} kept changing; gave up after {RETRIES} tries"
        )))
    }

    /// Every channel of a package, by name.
    pub async fn channels(&self, repo: &str) -> Result<Vec<Channel>> {
        let prefix = layout::channels(repo);
        let mut names: Vec<String> = self
            .reg
            .store()
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|n| !n.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            if let (Some(c), _) = self.read_channel(repo, &n).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub async fn list_channels(&self, repo: &str) -> Result<Vec<Channel>> {
        if !self.exists(repo).await? {
            return Err(Self::not_found(repo));
        }
        self.channels(repo).await
    }

    pub async fn show_channel(&self, repo: &str, name: &str) -> Result<Channel> {
        let missing = || ServiceError::ChannelNotFound {
            channel: name.to_string(),
        };
        if !valid_channel(name) {
            return Err(missing());
        }
        self.read_channel(repo, name).await?.0.ok_or_else(missing)
    }

    /// Add an exact, existing release; it becomes the channel's current one.
    pub async fn channel_add(&self, repo: &str, name: &str, release: &str) -> Result<Channel> {
        if !self.exists(repo).await? {
            return Err(Self::not_found(repo));
        }
        if self.load_release(repo, release).await?.is_none() {
            return Err(ServiceError::ReleaseNotFound {
                package: repo.to_string(),
                release: release.to_string(),
            });
        }
        if !valid_channel(name) {
            return Err(ServiceError::InvalidParameter {
                name: "channel",
                value: name.to_string(),
                reason: "a channel name is letters, digits, '_', '.' and '-' (at most 128, \
                         not starting with '.' or '-')"
                    .into(),
            });
        }
        let updated = self
            .update_channel(repo, name, |old| {
                let mut releases = old.map(|c| c.releases).unwrap_or_default();
                if !releases.iter().any(|r| r == release) {
                    releases.push(release.to_string());
                }
                semver::sort_desc(&mut releases);
                Ok(Some(Channel {
                    name: name.to_string(),
                    current: release.to_string(),
                    releases,
                }))
            })
            .await?;
        Ok(updated.expect("an added release leaves a channel"))
    }

    /// Take a release out of a channel; an empty channel is deleted, and
    /// otherwise `current` falls back to the highest release left.
    pub async fn channel_remove(&self, repo: &str, name: &str, release: &str) -> Result<()> {
        self.show_channel(repo, name).await?;
        if self.load_release(repo, release).await?.is_none() {
            return Err(ServiceError::PackageNotFound {
                package: repo.to_string(),
                release: Some(release.to_string()),
                media_type: None,
            });
        }
        self.update_channel(repo, name, |old| Ok(without(old, release)))
            .await?;
        Ok(())
    }

    pub async fn channel_delete(&self, repo: &str, name: &str) -> Result<()> {
        self.show_channel(repo, name).await?;
        self.update_channel(repo, name, |_| Ok(None)).await?;
        Ok(())
    }

    /// A release is gone: take it out of every channel.
    pub(super) async fn channels_drop_release(&self, repo: &str, release: &str) -> Result<()> {
        for c in self.channels(repo).await? {
            if c.releases.iter().any(|r| r == release) {
                self.update_channel(repo, &c.name, |old| Ok(without(old, release)))
                    .await?;
            }
        }
        Ok(())
    }
}

fn without(old: Option<Channel>, release: &str) -> Option<Channel> {
    let mut c = old?;
    if !c.releases.iter().any(|r| r == release) {
        return Some(c);
    }
    c.releases.retain(|r| r != release);
    semver::sort_desc(&mut c.releases);
    let current = c.releases.first()?.clone();
    c.current = current;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_falls_back_to_highest() {
        let c = Channel {
            name: "beta".into(),
            current: "1.0.0".into(),
            releases: vec!["1.1.0-rc.1".into(), "1.0.0".into()],
        };
        let after = without(Some(c.clone()), "1.0.0").unwrap();
        assert_eq!(after.current, "1.1.0-rc.1");
        assert_eq!(without(Some(after), "1.1.0-rc.1"), None);
        assert_eq!(without(Some(c.clone()), "9.9.9"), Some(c));
    }
}
