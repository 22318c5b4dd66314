//! Credential origins that produce temporary keys: STS AssumeRole (RamRoleArn profiles),
//! AssumeRoleWithOIDC, the ECS instance role, a credentials URI and an external command.
//! Each renews its keys shortly before they expire.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::api::{ApiClient, ApiError};
use super::keys::{parse_utc, AccessKeys, KeySource, Renewing, SharedSource};
use crate::auth::transport::{read_small, read_small_json, Transport};
use futures_util::future::BoxFuture;

use crate::auth::AuthError;
use crate::signer::rpc_v2::RpcCall;
use crate::signer::HttpMethod;

const STS_VERSION: &str = "2015-04-01";

/// Settings shared by the two STS role calls.
pub struct RoleSpec {
    pub role_arn: String,
    pub session_name: String,
    pub duration_secs: u64,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    pub sts_endpoint: Url,
}

/// `RamRoleArn` / `ChainableRamRoleArn` / ini `ram_role_arn`: STS AssumeRole signed with the
/// source keys (their security token included, so roles can be chained).
pub struct AssumeRole {
    pub source: SharedSource,
    pub spec: RoleSpec,
    pub origin: String,
    pub cache: Renewing,
}

impl KeySource for AssumeRole {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn cache_identity(&self) -> Option<String> {
        let s = &self.spec;
        self.source.cache_identity().map(|base| {
            format!(
                "role\n{}\n{}\n{}\n{}\n{}",
                s.role_arn,
                s.policy.as_deref().unwrap_or(""),
                s.external_id.as_deref().unwrap_or(""),
                s.sts_endpoint,
                base
            )
        })
    }

    fn keys<'a>(&'a self, api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(self.cache.get(move || async move {
            let source = self.source.keys(api).await?;
            let duration = self.spec.duration_secs.to_string();
            let mut form = vec![
                ("RoleArn", self.spec.role_arn.as_str()),
                ("RoleSessionName", self.spec.session_name.as_str()),
                ("DurationSeconds", duration.as_str()),
            ];
            if let Some(p) = &self.spec.policy {
                form.push(("Policy", p));
            }
            if let Some(x) = &self.spec.external_id {
                form.push(("ExternalId", x));
            }
            let call = RpcCall {
                method: HttpMethod::Post,
                action: "AssumeRole",
                version: STS_VERSION,
                format: "JSON",
                query: &[],
                form: &form,
            };
            let resp = api
                .rpc(&self.spec.sts_endpoint, &call, Some(&source.api()))
                .await;
            sts_keys(resp, &self.spec.role_arn, &self.origin)
        }))
    }
}

/// OIDC role: STS AssumeRoleWithOIDC with the token read from a file (re-read on each renewal,
/// because platforms such as Kubernetes rotate it).
pub struct OidcRole {
    pub token_file: PathBuf,
    pub provider_arn: String,
    pub spec: RoleSpec,
    pub origin: String,
    pub cache: Renewing,
}

impl KeySource for OidcRole {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn keys<'a>(&'a self, api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(self.cache.get(move || async move {
            let token = tokio::fs::read_to_string(&self.token_file)
                .await
                .map_err(|source| AuthError::Io {
                    message: format!(
                        "cannot read the OIDC token file {} (check ALIBABA_CLOUD_OIDC_TOKEN_FILE or the profile's oidc_token_file)",
                        self.token_file.display()
                    ),
                    source,
                })?;
            let duration = self.spec.duration_secs.to_string();
            let mut form = vec![
                ("RoleArn", self.spec.role_arn.as_str()),
                ("OIDCProviderArn", self.provider_arn.as_str()),
                ("OIDCToken", token.trim()),
                ("RoleSessionName", self.spec.session_name.as_str()),
                ("DurationSeconds", duration.as_str()),
            ];
            if let Some(p) = &self.spec.policy {
                form.push(("Policy", p));
            }
            let call = RpcCall {
                method: HttpMethod::Post,
                action: "AssumeRoleWithOIDC",
                version: STS_VERSION,
                format: "JSON",
                query: &[],
                form: &form,
            };
            let resp = api.rpc(&self.spec.sts_endpoint, &call, None).await;
            sts_keys(resp, &self.spec.role_arn, &self.origin)
        }))
    }
}

fn sts_keys(
    resp: Result<Value, ApiError>,
    role: &str,
    origin: &str,
) -> Result<AccessKeys, AuthError> {
    let v = resp.map_err(|e| {
        AuthError::api(
            format!(
                "could not assume the RAM role {role} with the credentials from {origin} (check \
                 that the role exists, trusts the caller, and that the caller may call \
                 sts:AssumeRole)"
            ),
            e,
            false,
        )
    })?;
    parse_temporary(v.get("Credentials").unwrap_or(&Value::Null)).ok_or_else(|| {
        AuthError::Protocol(format!(
            "STS answered AssumeRole for {role} without usable Credentials"
        ))
    })
}

/// Reads `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`.
fn parse_temporary(c: &Value) -> Option<AccessKeys> {
    let s = |k: &str| c.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let mut keys = AccessKeys::new(
        s("AccessKeyId")?,
        s("AccessKeySecret")?,
        s("SecurityToken").map(str::to_string),
    );
    keys.expires_at = s("Expiration").and_then(parse_utc);
    Some(keys)
}

/// ECS instance RAM role, from the instance metadata service (IMDSv2 token first).
pub struct EcsRole {
    pub role_name: Option<String>,
    pub metadata: Url,
    pub origin: String,
    pub cache: Renewing,
}

impl KeySource for EcsRole {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn keys<'a>(&'a self, api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(self.cache.get(move || async move {
            const ECS: &str = "could not get the ECS instance role credentials (this only works \
                               on an ECS instance with a RAM role attached)";
            let fail = |what: String| AuthError::Network(format!("{ECS}: {what}"));
            let unreachable = |source: Transport| AuthError::Unreachable {
                message: ECS.into(),
                source,
            };
            let http = api.http();
            let t = Duration::from_secs(2);
            let token = http
                .put(
                    self.metadata
                        .join("/latest/api/token")
                        .expect("static path"),
                )
                .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600")
                .timeout(t)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            let token = match token {
                Some(r) => read_small(r)
                    .await
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                None => None,
            };
            let get = |path: String| {
                let mut rb = http
                    .get(self.metadata.join(&path).expect("static path"))
                    .timeout(t);
                if let Some(tok) = &token {
                    rb = rb.header("X-aliyun-ecs-metadata-token", tok.as_str());
                }
                rb.send()
            };
            let base = "/latest/meta-data/ram/security-credentials/".to_string();
            let role = match &self.role_name {
                Some(r) => r.clone(),
                None => {
                    let resp = get(base.clone()).await.map_err(|e| unreachable(e.into()))?;
                    let name = read_small(resp).await.map_err(unreachable)?;
                    String::from_utf8_lossy(&name).trim().to_string()
                }
            };
            let resp = get(format!("{base}{role}"))
                .await
                .map_err(|e| unreachable(e.into()))?;
            let v: Value = read_small_json(resp).await.map_err(unreachable)?;
            parse_temporary(&v)
                .ok_or_else(|| fail(format!("role {role}: no credentials in the answer")))
        }))
    }
}

/// `CredentialsURI` profiles and `ALIBABA_CLOUD_CREDENTIALS_URI`.
pub struct CredentialsUri {
    pub uri: Url,
    pub origin: String,
    pub cache: Renewing,
}

impl KeySource for CredentialsUri {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn keys<'a>(&'a self, api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(self.cache.get(move || async move {
            let context = || format!("the credentials URI from {} failed", self.origin);
            let fail = |what: String| AuthError::Network(format!("{}: {what}", context()));
            let unreachable = |source: Transport| AuthError::Unreachable {
                message: context(),
                source,
            };
            let resp = api
                .http()
                .get(self.uri.clone())
                .send()
                .await
                .map_err(|e| unreachable(e.into()))?;
            if !resp.status().is_success() {
                return Err(fail(format!("HTTP {}", resp.status().as_u16())));
            }
            let v: Value = read_small_json(resp).await.map_err(unreachable)?;
            parse_temporary(&v)
                .ok_or_else(|| fail("no AccessKeyId/AccessKeySecret in the answer".into()))
        }))
    }
}

/// `External` profiles: run `process_command` and read a profile-shaped JSON from its stdout.
pub struct External {
    pub command: String,
    pub origin: String,
    pub cache: Renewing,
}

impl KeySource for External {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn keys<'a>(&'a self, _api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(self.cache.get(move || async move {
            let fail = |what: String| {
                AuthError::Config(format!(
                    "the External profile's process_command ({}) failed: {what}",
                    self.origin
                ))
            };
            let mut cmd = if cfg!(windows) {
                let mut c = tokio::process::Command::new("cmd");
                c.arg("/C");
                c
            } else {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c");
                c
            };
            cmd.arg(&self.command)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .map_err(|_| fail("timed out after 60 s".into()))?
                .map_err(|source| AuthError::Io {
                    message: format!(
                        "cannot run the External profile's process_command ({})",
                        self.origin
                    ),
                    source,
                })?;
            if !out.status.success() {
                return Err(fail(format!("exit status {}", out.status)));
            }
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|_| fail("its output is not JSON".into()))?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let (id, secret) = s("access_key_id")
                .zip(s("access_key_secret"))
                .ok_or_else(|| fail("its output lacks access_key_id/access_key_secret".into()))?;
            let mut keys = AccessKeys::new(id, secret, s("sts_token").map(str::to_string));
            keys.expires_at = s("expiration").and_then(parse_utc);
            Ok(keys)
        }))
    }
}
