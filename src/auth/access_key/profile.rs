//! Profiles from files the user already has: the `aliyun` CLI's `~/.aliyun/config.json` and the
//! SDKs' shared `~/.alibabacloud/credentials` INI file. Read only; never written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::input::{ecs_role, session_name, sts_endpoint, ChainError, ChainInput, PROFILE_VARS};
use super::keys::{AccessKeys, SharedSource, StaticKeys};
use super::sources::{AssumeRole, CredentialsUri, External, OidcRole, RoleSpec};

/// Modes this build can use, for error messages.
const SUPPORTED: &str =
    "AK, StsToken, RamRoleArn, ChainableRamRoleArn, EcsRamRole, CredentialsURI, External, OIDC";
/// How deep `ChainableRamRoleArn` may chain before we call it a loop.
const MAX_CHAIN: usize = 5;

/// Picks the profile (`--profile`, then `ALIBABACLOUD_PROFILE`/`ALIBABA_CLOUD_PROFILE`/
/// `ALICLOUD_PROFILE`, then the file's `current`) and builds its key source. `Ok(None)` when no
/// profile is selected and none was asked for.
pub fn from_cli_config(
    text: &str,
    path: &Path,
    input: &ChainInput<'_>,
) -> Result<Option<SharedSource>, ChainError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        ChainError::Invalid(format!(
            "{} is not valid JSON ({e}); fix it or run `aliyun configure`",
            path.display()
        ))
    })?;
    let profiles = doc
        .get("profiles")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let explicit = input
        .profile
        .map(str::to_string)
        .or_else(|| input.var(PROFILE_VARS));
    let name = match explicit.clone().or_else(|| str_field(&doc, "current")) {
        Some(n) => n,
        None => return Ok(None),
    };
    let exists = profiles
        .iter()
        .any(|p| str_field(p, "name").as_deref() == Some(&name));
    if !exists {
        if explicit.is_some() {
            let names: Vec<String> = profiles
                .iter()
                .filter_map(|p| str_field(p, "name"))
                .collect();
            return Err(ChainError::Invalid(format!(
                "profile {name:?} is not in {} (it has: {}); pick one with --profile or ALIBABA_CLOUD_PROFILE, or run `aliyun configure --profile {name}`",
                path.display(),
                names.join(", ")
            )));
        }
        return Ok(None);
    }
    build(&profiles, &name, path, input, 0).map(Some)
}

fn build(
    profiles: &[Value],
    name: &str,
    path: &Path,
    input: &ChainInput<'_>,
    depth: usize,
) -> Result<SharedSource, ChainError> {
    let p = profiles
        .iter()
        .find(|p| str_field(p, "name").as_deref() == Some(name))
        .ok_or_else(|| {
            ChainError::Invalid(format!("profile {name:?} is not in {}", path.display()))
        })?;
    let mode = str_field(p, "mode").unwrap_or_else(|| auto_mode(p).to_string());
    let origin = format!("aliyun CLI profile {name:?} ({mode}) in {}", path.display());
    let need = |field: &str| {
        str_field(p, field).ok_or_else(|| {
            ChainError::Invalid(format!(
                "{origin} has no {field}; run `aliyun configure --profile {name}`"
            ))
        })
    };
    let static_keys = |with_token: bool| -> Result<AccessKeys, ChainError> {
        let token = if with_token {
            Some(need("sts_token")?)
        } else {
            str_field(p, "sts_token")
        };
        Ok(AccessKeys::new(
            need("access_key_id")?,
            need("access_key_secret")?,
            token,
        ))
    };
    let role = |role_arn: String| -> Result<RoleSpec, ChainError> {
        Ok(RoleSpec {
            role_arn,
            session_name: str_field(p, "ram_session_name").unwrap_or_else(|| session_name(input)),
            duration_secs: p
                .get("expired_seconds")
                .and_then(Value::as_u64)
                .filter(|s| *s > 0)
                .unwrap_or(3600)
                .max(900),
            policy: str_field(p, "policy"),
            external_id: str_field(p, "external_id"),
            sts_endpoint: sts_endpoint(
                input,
                str_field(p, "sts_endpoint").as_deref(),
                str_field(p, "sts_region").as_deref(),
            )?,
        })
    };
    Ok(match mode.as_str() {
        "AK" => Arc::new(StaticKeys { keys: static_keys(false)?, origin }),
        "StsToken" => Arc::new(StaticKeys { keys: static_keys(true)?, origin }),
        "RamRoleArn" => {
            let source = Arc::new(StaticKeys { keys: static_keys(false)?, origin: origin.clone() });
            Arc::new(AssumeRole { source, spec: role(need("ram_role_arn")?)?, origin, cache: Default::default() })
        }
        "ChainableRamRoleArn" => {
            if depth >= MAX_CHAIN {
                return Err(ChainError::Invalid(format!("{origin}: source_profile chain is longer than {MAX_CHAIN} (a loop?)")));
            }
            let source = build(profiles, &need("source_profile")?, path, input, depth + 1)?;
            Arc::new(AssumeRole { source, spec: role(need("ram_role_arn")?)?, origin, cache: Default::default() })
        }
        "EcsRamRole" => Arc::new(ecs_role(str_field(p, "ram_role_name"))),
        "CredentialsURI" => {
            let raw = str_field(p, "credentials_uri")
                .or_else(|| input.var(&["ALIBABA_CLOUD_CREDENTIALS_URI"]))
                .ok_or_else(|| ChainError::Invalid(format!("{origin} has no credentials_uri")))?;
            let uri = reqwest::Url::parse(&raw).map_err(|e| ChainError::Invalid(format!("{origin}: credentials_uri is not a URL: {e}")))?;
            Arc::new(CredentialsUri { uri, origin, cache: Default::default() })
        }
        "External" => {
            if input.var(&["ALIBABA_CLOUD_DISABLE_EXTERNAL_PROCESS"]).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
                return Err(ChainError::Invalid(format!("{origin}: External profiles are disabled by ALIBABA_CLOUD_DISABLE_EXTERNAL_PROCESS")));
            }
            Arc::new(External { command: need("process_command")?, origin, cache: Default::default() })
        }
        "OIDC" => Arc::new(OidcRole {
            token_file: need("oidc_token_file")?.into(),
            provider_arn: need("oidc_provider_arn")?,
            spec: role(need("ram_role_arn")?)?,
            origin,
            cache: Default::default(),
        }),
        other => {
            return Err(ChainError::Invalid(format!(
                "{origin}: mode {other} is not supported by alibridge. Supported modes: {SUPPORTED}. \
                 Switch profiles with --profile, create an AK profile (`aliyun configure --mode AK --profile NAME`), \
                 or set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET"
            )))
        }
    })
}

/// The CLI's `AutoModeRecognition` for profiles written without a `mode`.
fn auto_mode(p: &Value) -> &'static str {
    let has = |k: &str| str_field(p, k).is_some();
    if has("access_key_id") && has("access_key_secret") {
        if has("ram_role_arn") {
            "RamRoleArn"
        } else if has("sts_token") {
            "StsToken"
        } else {
            "AK"
        }
    } else if has("ram_role_name") {
        "EcsRamRole"
    } else if has("process_command") {
        "External"
    } else if has("oidc_provider_arn") && has("oidc_token_file") && has("ram_role_arn") {
        "OIDC"
    } else if has("credentials_uri") {
        "CredentialsURI"
    } else {
        "(unknown)"
    }
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A minimal INI reader: `[section]`, `key = value`, `#`/`;` comments.
pub struct Ini {
    sections: HashMap<String, HashMap<String, String>>,
}

impl Ini {
    pub fn parse(text: &str) -> Ini {
        let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut current = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.trim().to_string();
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').to_string();
                sections
                    .entry(current.clone())
                    .or_default()
                    .insert(k.trim().to_string(), v);
            }
        }
        Ini { sections }
    }
}

/// Builds the source of INI section `section` (`type` = access_key, ram_role_arn,
/// ecs_ram_role or oidc_role_arn).
pub fn from_ini(
    ini: &Ini,
    section: &str,
    path: &Path,
    input: &ChainInput<'_>,
) -> Result<Option<SharedSource>, ChainError> {
    let Some(s) = ini.sections.get(section) else {
        return Ok(None);
    };
    let get = |k: &str| s.get(k).filter(|v| !v.is_empty()).cloned();
    let kind = get("type").unwrap_or_else(|| "access_key".into());
    let origin = format!("[{section}] ({kind}) in {}", path.display());
    let need = |k: &str| get(k).ok_or_else(|| ChainError::Invalid(format!("{origin} has no {k}")));
    let spec = |role_arn: String| -> Result<RoleSpec, ChainError> {
        Ok(RoleSpec {
            role_arn,
            session_name: get("role_session_name").unwrap_or_else(|| session_name(input)),
            duration_secs: 3600,
            policy: get("policy"),
            external_id: None,
            sts_endpoint: sts_endpoint(input, None, None)?,
        })
    };
    Ok(Some(match kind.as_str() {
        "access_key" => Arc::new(StaticKeys {
            keys: AccessKeys::new(need("access_key_id")?, need("access_key_secret")?, None),
            origin,
        }),
        "ram_role_arn" => {
            let keys = AccessKeys::new(need("access_key_id")?, need("access_key_secret")?, None);
            let source = Arc::new(StaticKeys { keys, origin: origin.clone() });
            Arc::new(AssumeRole { source, spec: spec(need("role_arn")?)?, origin, cache: Default::default() })
        }
        "ecs_ram_role" => Arc::new(ecs_role(get("role_name"))),
        "oidc_role_arn" => Arc::new(OidcRole {
            token_file: need("oidc_token_file_path")?.into(),
            provider_arn: need("oidc_provider_arn")?,
            spec: spec(need("role_arn")?)?,
            origin,
            cache: Default::default(),
        }),
        other => {
            return Err(ChainError::Invalid(format!(
                "{origin}: type {other} is not supported; use access_key, ram_role_arn, ecs_ram_role or oidc_role_arn"
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
      "current": "prod",
      "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": "id-default", "access_key_secret": "s"},
        {"name": "prod", "mode": "RamRoleArn", "access_key_id": "id-prod", "access_key_secret": "s",
         "ram_role_arn": "acs:ram::1:role/ops", "ram_session_name": "me", "sts_endpoint": "http://127.0.0.1:1"},
        {"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "prod", "ram_role_arn": "acs:ram::1:role/x"},
        {"name": "loop", "mode": "ChainableRamRoleArn", "source_profile": "loop", "ram_role_arn": "r"},
        {"name": "sso", "mode": "CloudSSO"},
        {"name": "auto", "access_key_id": "a", "access_key_secret": "b", "sts_token": "t"}
      ]}"#;

    fn pick(profile: Option<&str>) -> Result<Option<String>, String> {
        let env = |_: &str| None;
        let input = ChainInput {
            profile,
            env: &env,
            home: None,
        };
        from_cli_config(CONFIG, Path::new("/h/.aliyun/config.json"), &input)
            .map(|s| s.map(|s| s.describe()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn current_profile_is_used_and_flag_overrides_it() {
        assert!(pick(None)
            .unwrap()
            .unwrap()
            .contains("\"prod\" (RamRoleArn)"));
        assert!(pick(Some("default")).unwrap().unwrap().contains("(AK)"));
        assert!(pick(Some("chain"))
            .unwrap()
            .unwrap()
            .contains("ChainableRamRoleArn"));
        assert!(pick(Some("auto")).unwrap().unwrap().contains("(StsToken)"));
    }

    #[test]
    fn unsupported_modes_and_missing_profiles_are_explained() {
        let e = pick(Some("sso")).unwrap_err();
        assert!(
            e.contains("CloudSSO")
                && e.contains("RamRoleArn")
                && e.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"),
            "{e}"
        );
        let e = pick(Some("nope")).unwrap_err();
        assert!(e.contains("default, prod"), "{e}");
        assert!(pick(Some("loop")).unwrap_err().contains("loop"));
    }

    #[test]
    fn ini_sections() {
        let ini = Ini::parse("[default]\ntype = access_key\naccess_key_id = a\naccess_key_secret = b\n[r]\ntype=ram_role_arn\naccess_key_id=a\n");
        let env = |_: &str| None;
        let input = ChainInput {
            profile: None,
            env: &env,
            home: None,
        };
        let p = Path::new("/h/.alibabacloud/credentials");
        assert!(from_ini(&ini, "default", p, &input).unwrap().is_some());
        assert!(from_ini(&ini, "missing", p, &input).unwrap().is_none());
        assert!(from_ini(&ini, "r", p, &input)
            .err()
            .unwrap()
            .to_string()
            .contains("access_key_secret"));
    }
}
