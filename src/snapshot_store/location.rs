//! Where a node's snapshots live: `state.snapshot_url` parsed, and the store opened.
//!
//! - `file:///abs/dir` is a local directory, through `object_store`'s
//!   `LocalFileSystem` (fsync on). For one node; not fenced (see
//!   [`Fencing::None`]).
//! - `s3://bucket/prefix` is an S3 bucket (or an S3-compatible server). Credentials and
//!   region come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, ...) unless
//!   [`SnapshotStoreSpec`] carries them; `state.s3_endpoint` and `state.s3_allow_http`
//!   point it at another server.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use weir_actors::snapshot::SnapshotError;

use super::object::{Fencing, ObjectStoreSnapshots};

/// A parsed `state.snapshot_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotUrl {
    /// `file:///dir`: an absolute local directory.
    File(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside it (no leading or trailing `/`; may be empty).
        prefix: String,
    },
}

impl SnapshotUrl {
    /// Parses `file:///abs/dir` or `s3://bucket[/prefix]`; the error says what is
    /// wrong (the caller names the key).
    pub fn parse(url: &str) -> Result<SnapshotUrl, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?}: a file URL needs an absolute path, as in file:///var/lib/weir/snapshots"
                ));
            }
            if path.split('/').any(|c| c == "..") {
                return Err(format!("{url:?}: the path must not contain `..`"));
            }
            return Ok(SnapshotUrl::File(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(format!(
                    "{url:?}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, `-` or `.`)"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
                && !prefix.is_empty()
            {
                return Err(format!(
                    "{url:?}: the prefix must not have empty, `.` or `..` parts"
                ));
            }
            return Ok(SnapshotUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Err(format!(
            "{url:?}: expected file:///dir (one node) or s3://bucket/prefix (a cluster)"
        ))
    }
}

impl std::fmt::Display for SnapshotUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotUrl::File(p) => write!(f, "file://{}", p.display()),
            SnapshotUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            SnapshotUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 credentials given in code rather than through the environment (tests,
/// embedding). The configuration file has no keys for secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Everything needed to open a shared snapshot store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStoreSpec {
    /// Where (`state.snapshot_url`).
    pub url: SnapshotUrl,
    /// Another S3 endpoint than AWS's, e.g. `http://127.0.0.1:9000`
    /// (`state.s3_endpoint`).
    pub s3_endpoint: Option<String>,
    /// Whether plain HTTP endpoints are allowed (`state.s3_allow_http`).
    pub s3_allow_http: bool,
    /// The region (`state.s3_region`); unset: `AWS_REGION`, else `us-east-1`.
    pub s3_region: Option<String>,
    /// Credentials; `None` reads them from the environment.
    pub s3_credentials: Option<S3Credentials>,
}

impl SnapshotStoreSpec {
    /// A spec for `url` with every S3 option unset.
    pub fn new(url: SnapshotUrl) -> Self {
        SnapshotStoreSpec {
            url,
            s3_endpoint: None,
            s3_allow_http: false,
            s3_region: None,
            s3_credentials: None,
        }
    }
}

/// Opens the store `spec` names (creating a local directory if needed).
pub fn open(spec: &SnapshotStoreSpec) -> Result<Arc<ObjectStoreSnapshots>, SnapshotError> {
    let shown = spec.url.to_string();
    let failed =
        |op: &'static str, e: Box<dyn std::error::Error + Send + Sync>| SnapshotError::Remote {
            key: shown.clone(),
            op,
            source: e,
        };
    let store = match &spec.url {
        SnapshotUrl::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| SnapshotError::Io {
                path: dir.clone(),
                op: "create directory",
                source,
            })?;
            let fs = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| failed("open", Box::new(e)))?
                .with_fsync(true);
            ObjectStoreSnapshots::new(Arc::new(fs), shown.clone(), "", Fencing::None)?
        }
        SnapshotUrl::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(spec.s3_allow_http);
            if let Some(endpoint) = &spec.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &spec.s3_region {
                builder = builder.with_region(region);
            }
            if let Some(c) = &spec.s3_credentials {
                builder = builder
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(&c.secret_access_key);
            }
            let s3 = builder.build().map_err(|e| failed("open", Box::new(e)))?;
            ObjectStoreSnapshots::new(
                Arc::new(s3),
                format!("s3://{bucket}"),
                prefix,
                Fencing::Head,
            )?
        }
    };
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        for (url, parsed) in [
            ("file:///var/snaps", SnapshotUrl::File("/var/snaps".into())),
            (
                "s3://my-bucket/weir/prod/",
                SnapshotUrl::S3 {
                    bucket: "my-bucket".into(),
                    prefix: "weir/prod".into(),
                },
            ),
            (
                "s3://my-bucket",
                SnapshotUrl::S3 {
                    bucket: "my-bucket".into(),
                    prefix: String::new(),
                },
            ),
        ] {
            assert_eq!(SnapshotUrl::parse(url).unwrap(), parsed);
        }
        assert_eq!(
            SnapshotUrl::parse("s3://b12/x/y").unwrap().to_string(),
            "s3://b12/x/y"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, wanted) in [
            ("file://relative/dir", "absolute path"),
            ("file:///a/../b", "`..`"),
            ("s3://B", "not an S3 bucket name"),
            ("s3://bucket/a//b", "prefix"),
            ("gs://bucket", "expected file:///dir"),
            ("/var/snaps", "expected file:///dir"),
        ] {
            let err = SnapshotUrl::parse(url).unwrap_err();
            assert!(err.contains(wanted), "{url}: {err}");
        }
    }
}
