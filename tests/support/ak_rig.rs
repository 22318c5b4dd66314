//! The AccessKey rig the `--auth ak` suites share: the Alibaba Cloud fake, an MCP server that
//! accepts only the fake's live tokens (401 otherwise), and a scratch `HOME`; the bridge
//! arguments that point at them, the environment that carries a key pair, and the bridge's
//! `auth:` line.

use super::aliyun_fake::AliyunFake;
use super::home::TempHome;
use super::mcp_server::{ServerOptions, TestServer};

/// The fake, an upstream that only accepts the fake's live tokens, and a temp `HOME`.
pub struct AkRig {
    pub fake: AliyunFake,
    pub server: TestServer,
    pub home: TempHome,
}

impl AkRig {
    /// A fresh rig; `tag` names its `HOME` (`ak-<tag>`).
    pub async fn start(tag: &str) -> AkRig {
        let fake = AliyunFake::start().await;
        let server =
            TestServer::start_with(ServerOptions::requiring_bearer(fake.token_checker())).await;
        AkRig {
            fake,
            server,
            home: TempHome::new(&format!("ak-{tag}")),
        }
    }

    /// `<mcp url> --transport http-only --auth ak --ims-endpoint <fake>`, then `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            self.server.url().as_str(),
            "--transport",
            "http-only",
            "--auth",
            "ak",
            "--ims-endpoint",
            self.fake.url().as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

/// The environment that hands the bridge the key pair `id`/`secret`.
pub fn env_keys<'a>(id: &'a str, secret: &'a str) -> [(&'a str, &'a str); 2] {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", id),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
    ]
}

/// The `alibridge: auth: …` start-up line (which credential, from where).
pub fn auth_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("alibridge: auth: "))
        .unwrap_or_else(|| panic!("no `alibridge: auth:` line in stderr:\n{stderr}"))
}
