//! What the credential chain reads from the outside world ([`ChainInput`], injectable for
//! tests), how it fails ([`ChainError`]), and the settings every source derives from that
//! input (the profile variables, the role session name, the STS endpoint, the ECS role). Both
//! the chain ([`super::chain`]) and the CLI profiles ([`super::profile`]) use them.

use std::path::PathBuf;

use reqwest::Url;

use super::sources::EcsRole;

/// What the chain reads from the outside world; injectable for tests.
pub struct ChainInput<'a> {
    /// `--profile`.
    pub profile: Option<&'a str>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub home: Option<PathBuf>,
}

impl ChainInput<'_> {
    /// The first non-empty of `names`.
    pub fn var(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| (self.env)(n).filter(|v| !v.trim().is_empty()))
    }

    pub(super) fn flag(&self, name: &str) -> bool {
        self.var(&[name])
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// Why no keys could be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(
        "no Alibaba Cloud AccessKey found. Looked at, in order:\n{}\nSet ALIBABA_CLOUD_ACCESS_KEY_ID \
         and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or run `aliyun configure`",
        .looked.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound { looked: Vec<String> },
    #[error("{0}")]
    Invalid(String),
}

/// Profile-name variables, in the CLI's order.
pub const PROFILE_VARS: &[&str] = &[
    "ALIBABACLOUD_PROFILE",
    "ALIBABA_CLOUD_PROFILE",
    "ALICLOUD_PROFILE",
];

/// The ECS instance role source.
pub fn ecs_role(role_name: Option<String>) -> EcsRole {
    EcsRole {
        role_name,
        metadata: Url::parse("http://100.100.100.200").expect("static URL"),
        origin: "the ECS instance RAM role".into(),
        cache: Default::default(),
    }
}

/// `ALIBABA_CLOUD_ROLE_SESSION_NAME`, else `alibridge-<unix seconds>`.
pub fn session_name(input: &ChainInput<'_>) -> String {
    input
        .var(&["ALIBABA_CLOUD_ROLE_SESSION_NAME"])
        .unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("alibridge-{secs}")
        })
}

/// The STS endpoint, first match wins: the profile's `sts_endpoint`,
/// `ALIBABA_CLOUD_STS_ENDPOINT`, `sts.<region>.aliyuncs.com` (profile `sts_region` or
/// `ALIBABA_CLOUD_STS_REGION`), `sts.aliyuncs.com`. A bare host means https; plain http is
/// accepted only for loopback (local test servers).
pub fn sts_endpoint(
    input: &ChainInput<'_>,
    profile_endpoint: Option<&str>,
    profile_region: Option<&str>,
) -> Result<Url, ChainError> {
    let raw = profile_endpoint
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .or_else(|| input.var(&["ALIBABA_CLOUD_STS_ENDPOINT"]))
        .or_else(|| {
            let region = profile_region
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .or_else(|| input.var(&["ALIBABA_CLOUD_STS_REGION"]))?;
            let vpc = input.flag("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED");
            Some(format!(
                "sts{}.{region}.aliyuncs.com",
                if vpc { "-vpc" } else { "" }
            ))
        })
        .unwrap_or_else(|| "sts.aliyuncs.com".to_string());
    endpoint_url(&raw, "STS endpoint").map_err(ChainError::Invalid)
}

/// Parses `host`, `https://host` or (loopback only) `http://host:port` into an endpoint URL.
pub fn endpoint_url(raw: &str, what: &str) -> Result<Url, String> {
    let raw = raw.trim().trim_end_matches('/');
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| format!("the {what} {raw:?} is not a valid host or URL: {e}"))?;
    if url.scheme() == "http" && !crate::net::is_loopback(&url) {
        return Err(format!(
            "the {what} {raw:?} uses plain http; only https is allowed (http only for loopback)"
        ));
    }
    Ok(url)
}
