//! AccessKey material and the [`KeySource`] trait every credential origin implements.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::api::ApiClient;
use crate::auth::secret::Secret;
use futures_util::future::BoxFuture;

use crate::auth::AuthError;
use crate::signer::ApiCredentials;

/// An AccessKey pair, possibly temporary (STS). `Debug` shows only the id.
#[derive(Clone, Debug)]
pub struct AccessKeys {
    pub id: String,
    pub secret: Secret,
    pub security_token: Option<Secret>,
    /// When temporary credentials stop working.
    pub expires_at: Option<SystemTime>,
}

impl AccessKeys {
    pub fn new(id: impl Into<String>, secret: impl Into<String>, token: Option<String>) -> Self {
        AccessKeys {
            id: id.into(),
            secret: Secret::new(secret),
            security_token: token.filter(|t| !t.is_empty()).map(Secret::new),
            expires_at: None,
        }
    }

    /// The borrowed view the signers take.
    pub fn api(&self) -> ApiCredentials<'_> {
        ApiCredentials {
            access_key_id: &self.id,
            access_key_secret: self.secret.expose(),
            security_token: self.security_token.as_ref().map(Secret::expose),
        }
    }

    /// True when the keys expire within `margin` (temporary keys are renewed early).
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|t| t <= SystemTime::now() + margin)
    }
}

/// Somewhere AccessKeys come from: the environment, a CLI profile, an STS role, …
pub trait KeySource: Send + Sync {
    /// Where the keys come from, for messages (`environment variables ALIBABA_CLOUD_…`).
    fn describe(&self) -> String;

    /// Current keys; temporary ones are renewed before they expire.
    fn keys<'a>(&'a self, api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>>;

    /// What identifies the keys without a network call, secrets included (only ever hashed, by
    /// the [`super::token_cache`]); `None` when that needs one (then minted tokens are not
    /// kept across runs).
    fn cache_identity(&self) -> Option<String> {
        None
    }
}

/// Keys that never change during the run (environment, `AK`/`StsToken` profiles).
pub struct StaticKeys {
    pub keys: AccessKeys,
    pub origin: String,
}

impl KeySource for StaticKeys {
    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn keys<'a>(&'a self, _api: &'a ApiClient) -> BoxFuture<'a, Result<AccessKeys, AuthError>> {
        Box::pin(async move { Ok(self.keys.clone()) })
    }

    fn cache_identity(&self) -> Option<String> {
        let k = &self.keys;
        Some(format!(
            "keys\n{}\n{}\n{}",
            k.id,
            k.secret.expose(),
            k.security_token.as_ref().map_or("", Secret::expose)
        ))
    }
}

/// How early temporary credentials are renewed (the official SDKs use 180 s).
const STS_RENEW_MARGIN: Duration = Duration::from_secs(180);

/// [`STS_RENEW_MARGIN`], or the test knob [`crate::env::ALIBRIDGE_TEST_STS_RENEW_MARGIN`].
fn sts_renew_margin() -> Duration {
    static MARGIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *MARGIN.get_or_init(|| {
        crate::env::test_knob(crate::env::ALIBRIDGE_TEST_STS_RENEW_MARGIN)
            .map_or(STS_RENEW_MARGIN, Duration::from_secs)
    })
}

/// Caches temporary keys and renews them, one renewal at a time, when they near expiry.
#[derive(Default)]
pub struct Renewing {
    cached: tokio::sync::Mutex<Option<AccessKeys>>,
}

impl Renewing {
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<AccessKeys, AuthError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessKeys, AuthError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(k) = cached
            .as_ref()
            .filter(|k| !k.expires_within(sts_renew_margin()))
        {
            return Ok(k.clone());
        }
        let fresh = fetch().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Shared handle to a source.
pub type SharedSource = Arc<dyn KeySource>;

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (the STS `Expiration` format; fractional seconds and a
/// `+00:00` offset are tolerated).
pub fn parse_utc(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let tail = &s[19..];
    let tail = tail
        .strip_prefix('.')
        .map_or(tail, |t| t.trim_start_matches(|c: char| c.is_ascii_digit()));
    if !matches!(tail, "Z" | "z" | "+00:00" | "") {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::iso8601_utc;

    #[test]
    fn parses_sts_expiration() {
        let t = parse_utc("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(iso8601_utc(t), "2026-01-01T00:00:00Z");
        let t = parse_utc("2024-02-29T23:59:59.123Z").unwrap();
        assert_eq!(iso8601_utc(t), "2024-02-29T23:59:59Z");
        assert!(parse_utc("2026-13-01T00:00:00Z").is_none());
        assert!(parse_utc("yesterday").is_none());
        assert!(parse_utc("2026-01-01T00:00:00+08:00").is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = AccessKeys::new("LTAI_ID", "the-secret", Some("the-token".into()));
        let d = format!("{k:?}");
        assert!(
            d.contains("LTAI_ID") && !d.contains("the-secret") && !d.contains("the-token"),
            "{d}"
        );
    }
}
