//! The credential chain: where AccessKeys are looked for, in the order the official SDKs use.
//!
//! 1. Environment: `ALIBABA_CLOUD_ACCESS_KEY_ID` + `_SECRET` (+ `ALIBABA_CLOUD_SECURITY_TOKEN`),
//!    or the CLI's aliases `ALIBABACLOUD_*` / `ALICLOUD_*`.
//! 2. OIDC environment: `ALIBABA_CLOUD_OIDC_TOKEN_FILE` + `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` +
//!    `ALIBABA_CLOUD_ROLE_ARN` (STS AssumeRoleWithOIDC).
//! 3. The `aliyun` CLI's `~/.aliyun/config.json` (`ALIBABA_CLOUD_CONFIG_FILE`), see [`super::profile`].
//! 4. `~/.alibabacloud/credentials` or `credentials.ini` (`ALIBABA_CLOUD_CREDENTIALS_FILE`).
//! 5. `ALIBABA_CLOUD_CREDENTIALS_URI`, then the ECS instance role named by
//!    `ALIBABA_CLOUD_ECS_METADATA` (only when set: probing the metadata service on a laptop
//!    would only add a delay).
//!
//! Nothing here writes to the user's files.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Url;

pub use super::input::{
    ecs_role, endpoint_url, session_name, sts_endpoint, ChainError, ChainInput, PROFILE_VARS,
};
use super::keys::{AccessKeys, SharedSource, StaticKeys};
use super::profile::{self, Ini};
use super::sources::{CredentialsUri, OidcRole, RoleSpec};

/// The source that won, and the files whose change means "re-resolve".
pub struct Resolved {
    pub source: SharedSource,
    pub watched: Vec<PathBuf>,
}

const ID_VARS: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABACLOUD_ACCESS_KEY_ID",
    "ALICLOUD_ACCESS_KEY_ID",
];
const SECRET_VARS: &[&str] = &[
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "ALIBABACLOUD_ACCESS_KEY_SECRET",
    "ALICLOUD_ACCESS_KEY_SECRET",
];
const TOKEN_VARS: &[&str] = &[
    "ALIBABA_CLOUD_SECURITY_TOKEN",
    "ALIBABACLOUD_SECURITY_TOKEN",
    "ALICLOUD_SECURITY_TOKEN",
];
/// Walks the chain and returns the first source that has keys.
pub fn resolve(input: &ChainInput<'_>) -> Result<Resolved, ChainError> {
    let mut looked = Vec::new();

    // 1. Environment.
    match (input.var(ID_VARS), input.var(SECRET_VARS)) {
        (Some(id), Some(secret)) => {
            let keys = AccessKeys::new(id, secret, input.var(TOKEN_VARS));
            let origin = "environment variables ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET".to_string();
            return Ok(Resolved { source: Arc::new(StaticKeys { keys, origin }), watched: vec![] });
        }
        (Some(_), None) => looked.push("environment: ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not".into()),
        (None, Some(_)) => looked.push("environment: ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not".into()),
        (None, None) => looked.push("environment: ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET not set".into()),
    }

    // 2. OIDC environment.
    let oidc = (
        input.var(&[
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            "ALIBABACLOUD_OIDC_TOKEN_FILE",
        ]),
        input.var(&[
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "ALIBABACLOUD_OIDC_PROVIDER_ARN",
        ]),
        input.var(&["ALIBABA_CLOUD_ROLE_ARN", "ALIBABACLOUD_ROLE_ARN"]),
    );
    if let (Some(file), Some(provider), Some(role)) = oidc {
        let spec = RoleSpec {
            role_arn: role,
            session_name: session_name(input),
            duration_secs: 3600,
            policy: None,
            external_id: None,
            sts_endpoint: sts_endpoint(input, None, None)?,
        };
        let source = OidcRole {
            token_file: PathBuf::from(file),
            provider_arn: provider,
            spec,
            origin: "OIDC environment variables (ALIBABA_CLOUD_OIDC_TOKEN_FILE, …)".into(),
            cache: Default::default(),
        };
        return Ok(Resolved {
            source: Arc::new(source),
            watched: vec![],
        });
    }
    looked.push("OIDC environment: ALIBABA_CLOUD_OIDC_TOKEN_FILE/_PROVIDER_ARN/ALIBABA_CLOUD_ROLE_ARN not all set".into());

    // 3. aliyun CLI config.json.
    let cli_path = input
        .var(&["ALIBABA_CLOUD_CONFIG_FILE"])
        .map(PathBuf::from)
        .or_else(|| {
            input
                .home
                .as_ref()
                .map(|h| h.join(".aliyun").join("config.json"))
        });
    if input.flag("ALIBABA_CLOUD_CLI_PROFILE_DISABLED") {
        looked.push("aliyun CLI config: skipped (ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true)".into());
    } else if let Some(path) = cli_path {
        match std::fs::read_to_string(&path) {
            Ok(text) => match profile::from_cli_config(&text, &path, input)? {
                Some(source) => {
                    let watched = watched_files(input, Some(path));
                    return Ok(Resolved { source, watched });
                }
                None => looked.push(format!(
                    "{}: no profile selected or the selected one is empty",
                    path.display()
                )),
            },
            Err(_) => looked.push(format!("{}: not found", path.display())),
        }
    }
    if input.profile.is_some() {
        return Err(ChainError::Invalid(format!(
            "--profile {} was given, but there is no aliyun CLI config with that profile; run `aliyun configure --profile {0}`",
            input.profile.unwrap_or_default()
        )));
    }

    // 4. Shared credentials file.
    for path in ini_paths(input) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let section = input
                    .var(&["ALIBABA_CLOUD_PROFILE"])
                    .unwrap_or_else(|| "default".into());
                let ini = Ini::parse(&text);
                match profile::from_ini(&ini, &section, &path, input)? {
                    Some(source) => {
                        return Ok(Resolved {
                            source,
                            watched: watched_files(input, None),
                        })
                    }
                    None => looked.push(format!("{}: no [{section}] section", path.display())),
                }
            }
            Err(_) => looked.push(format!("{}: not found", path.display())),
        }
    }

    // 5. Credentials URI, ECS instance role.
    if let Some(uri) = input.var(&["ALIBABA_CLOUD_CREDENTIALS_URI"]) {
        let uri = Url::parse(&uri).map_err(|e| {
            ChainError::Invalid(format!("ALIBABA_CLOUD_CREDENTIALS_URI is not a URL: {e}"))
        })?;
        let source = CredentialsUri {
            uri,
            origin: "ALIBABA_CLOUD_CREDENTIALS_URI".into(),
            cache: Default::default(),
        };
        return Ok(Resolved {
            source: Arc::new(source),
            watched: vec![],
        });
    }
    looked.push("ALIBABA_CLOUD_CREDENTIALS_URI: not set".into());
    if let Some(role) = input.var(&["ALIBABA_CLOUD_ECS_METADATA"]) {
        if !input.flag("ALIBABA_CLOUD_ECS_METADATA_DISABLED") {
            return Ok(Resolved {
                source: Arc::new(ecs_role(Some(role))),
                watched: vec![],
            });
        }
    }
    looked.push("ECS instance role: ALIBABA_CLOUD_ECS_METADATA not set".into());
    Err(ChainError::NotFound { looked })
}

fn ini_paths(input: &ChainInput<'_>) -> Vec<PathBuf> {
    if let Some(p) = input.var(&["ALIBABA_CLOUD_CREDENTIALS_FILE"]) {
        return vec![PathBuf::from(p)];
    }
    let Some(home) = &input.home else {
        return vec![];
    };
    let dir = home.join(".alibabacloud");
    vec![dir.join("credentials"), dir.join("credentials.ini")]
}

/// The credential files a change of which should be picked up during a run.
fn watched_files(input: &ChainInput<'_>, cli: Option<PathBuf>) -> Vec<PathBuf> {
    cli.into_iter().chain(ini_paths(input)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn input<'a>(env: &'a dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> ChainInput<'a> {
        ChainInput {
            profile: None,
            env,
            home,
        }
    }

    #[test]
    fn environment_wins_and_aliases_work() {
        let vars: HashMap<&str, &str> = [
            ("ALICLOUD_ACCESS_KEY_ID", "id1"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s1"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let r = resolve(&input(&env, None)).unwrap();
        assert!(r.source.describe().contains("environment"));
    }

    #[test]
    fn nothing_found_lists_every_place() {
        let dir =
            std::env::temp_dir().join(format!("alibridge-chain-empty-{}", std::process::id()));
        let env = |_: &str| None;
        let err = resolve(&input(&env, Some(dir.clone())))
            .err()
            .unwrap()
            .to_string();
        for place in [
            "environment",
            "OIDC",
            ".aliyun/config.json",
            ".alibabacloud/credentials",
            "CREDENTIALS_URI",
            "ECS",
        ] {
            assert!(err.contains(place), "{place} missing from: {err}");
        }
    }

    #[test]
    fn sts_endpoint_precedence() {
        let vars: HashMap<&str, &str> =
            [("ALIBABA_CLOUD_STS_ENDPOINT", "sts.example-env.aliyuncs.com")].into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let i = input(&env, None);
        assert_eq!(
            sts_endpoint(&i, Some("http://127.0.0.1:9/"), None)
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            sts_endpoint(&i, None, Some("cn-x")).unwrap().host_str(),
            Some("sts.example-env.aliyuncs.com")
        );
        let none = |_: &str| None;
        let i = input(&none, None);
        assert_eq!(
            sts_endpoint(&i, None, Some("cn-beijing"))
                .unwrap()
                .host_str(),
            Some("sts.cn-beijing.aliyuncs.com")
        );
        assert_eq!(
            sts_endpoint(&i, None, None).unwrap().host_str(),
            Some("sts.aliyuncs.com")
        );
        assert!(sts_endpoint(&i, Some("http://sts.example.com"), None).is_err());
    }
}
