//! Settings: defaults, then a TOML config file, then environment, then flags
//! (clap folds environment and flags together, flags winning).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Filesystem,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Storage backend.
    pub storage: StorageKind,
    /// Filesystem store folder.
    pub root: PathBuf,
    pub s3: S3Config,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
    /// Largest APPR package push body (JSON with base64 blob), in bytes.
    pub max_package_size: u64,
    /// Seconds after which an idle upload session is purged.
    pub upload_ttl_secs: u64,
    /// Seconds to finish in-flight requests after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Longest a worker polls for the next request before it sleeps, in
    /// microseconds (adaptive, see `ops::idle_poll`); 0 turns it off.
    pub idle_poll_us: u64,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    /// Path-style addressing (`http://host/bucket/key`), needed by most local stores.
    pub path_style: bool,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: u64,
    /// Answer `/v2` blob GETs with a redirect to a presigned URL.
    pub redirect: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:5000".parse().unwrap(),
            storage: StorageKind::Filesystem,
            root: PathBuf::from("./data"),
            s3: S3Config::default(),
            max_manifest_size: 4 * 1024 * 1024,
            max_package_size: 1024 * 1024 * 1024,
            upload_ttl_secs: 24 * 3600,
            shutdown_grace_secs: 30,
            idle_poll_us: 200,
            log_format: LogFormat::Text,
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            path_style: false,
            part_size: 8 * 1024 * 1024,
            redirect: false,
        }
    }
}

/// Settings given on the command line or in the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// TOML config file (keys as printed by `apprd config check`; unknown keys are rejected).
    #[arg(long, env = "APPRD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:5000].
    #[arg(long, env = "APPRD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Storage backend: filesystem or s3 [default: filesystem].
    #[arg(long, env = "STORAGE", value_enum)]
    pub storage: Option<StorageKind>,
    /// Folder of the filesystem store [default: ./data].
    #[arg(long, env = "APPRD_ROOT")]
    pub root: Option<PathBuf>,
    /// S3 bucket (must exist). Endpoint, region and credentials come from the AWS chain
    /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, profiles, web identity).
    #[arg(long, env = "APPRD_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "APPRD_S3_PREFIX")]
    pub s3_prefix: Option<String>,
    /// Use path-style S3 addressing.
    #[arg(long, env = "APPRD_S3_PATH_STYLE")]
    pub s3_path_style: Option<bool>,
    /// S3 multipart part size in bytes [default: 8388608].
    #[arg(long, env = "APPRD_S3_PART_SIZE")]
    pub s3_part_size: Option<u64>,
    /// Redirect /v2 blob GETs to presigned S3 URLs [default: false].
    #[arg(long, env = "APPRD_S3_REDIRECT")]
    pub s3_redirect: Option<bool>,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, env = "APPRD_MAX_MANIFEST_SIZE")]
    pub max_manifest_size: Option<usize>,
    /// Largest APPR push body, in bytes [default: 1073741824].
    #[arg(long, env = "APPRD_MAX_PACKAGE_SIZE")]
    pub max_package_size: Option<u64>,
    /// Idle upload sessions older than this many seconds are purged [default: 86400].
    #[arg(long, env = "APPRD_UPLOAD_TTL_SECS")]
    pub upload_ttl_secs: Option<u64>,
    /// Grace period for in-flight requests on SIGTERM, in seconds [default: 30].
    #[arg(long, env = "APPRD_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Longest a worker polls for the next request before sleeping, in µs; 0 = off [default: 200].
    #[arg(long, env = "APPRD_IDLE_POLL_US")]
    pub idle_poll_us: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "APPRD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                toml::from_str::<Config>(&text)
                    .map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))?
            }
            None => Config::default(),
        };
        macro_rules! set {
            ($field:expr, $value:expr) => {
                if let Some(v) = $value.clone() {
                    $field = v;
                }
            };
        }
        set!(c.listen, o.listen);
        set!(c.storage, o.storage);
        set!(c.root, o.root);
        set!(c.s3.bucket, o.s3_bucket);
        set!(c.s3.prefix, o.s3_prefix);
        set!(c.s3.path_style, o.s3_path_style);
        set!(c.s3.part_size, o.s3_part_size);
        set!(c.s3.redirect, o.s3_redirect);
        set!(c.max_manifest_size, o.max_manifest_size);
        set!(c.max_package_size, o.max_package_size);
        set!(c.upload_ttl_secs, o.upload_ttl_secs);
        set!(c.shutdown_grace_secs, o.shutdown_grace_secs);
        set!(c.idle_poll_us, o.idle_poll_us);
        set!(c.log_format, o.log_format);
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.storage == StorageKind::S3 && self.s3.bucket.is_empty() {
            return Err(ConfigError::Invalid(
                "storage s3 needs a bucket (--s3-bucket / APPRD_S3_BUCKET)".into(),
            ));
        }
        if self.s3.part_size < 5 * 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "s3 part_size must be at least 5 MiB (5242880)".into(),
            ));
        }
        if self.max_manifest_size < 4 * 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "max_manifest_size must be at least 4 MiB (4194304)".into(),
            ));
        }
        Ok(())
    }

    /// The settings as TOML, with secrets masked (the AWS credentials never enter
    /// `Config`; they are shown only as set or unset).
    pub fn describe(&self) -> String {
        let mut out = toml::to_string_pretty(self).unwrap_or_default();
        for var in ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_PROFILE"] {
            if let Ok(v) = std::env::var(var) {
                out.push_str(&format!("# {var} = {v:?}\n"));
            }
        }
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            let state = if std::env::var_os(var).is_some() {
                "set (masked)"
            } else {
                "unset"
            };
            out.push_str(&format!("# {var}: {state}\n"));
        }
        out
    }
}
