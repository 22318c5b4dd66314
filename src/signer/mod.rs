//! Alibaba Cloud OpenAPI request signing.
//!
//! This module owns one job: turning an API call plus AccessKey credentials
//! into the exact bytes of a signed request (query string, form body and
//! headers). It does no I/O and keeps no state: the caller supplies the clock
//! reading and the nonce, so every signature is reproducible in tests, and the
//! caller sends the request with whatever HTTP client it likes.
//!
//! Two signature styles exist, and alibridge needs both:
//!
//! * [`rpc_v2`]: RPC signature "V2" (HMAC-SHA1, `SignatureVersion=1.0`). The
//!   official proxy still uses it for RAM-OAuth `GenerateAccessToken`, and STS
//!   `AssumeRole` uses it too. Reference: `aliyun-cli-and-credentials.md` §4.1,
//!   `alibabacloud-mcp-proxy.md` §2.3.
//! * [`acs3`]: `ACS3-HMAC-SHA256` ("V3"), the SDKs' default, used for
//!   `ListApiMcpServerCores` discovery. Reference:
//!   `aliyun-cli-and-credentials.md` §4.2, `alibabacloud-mcp-proxy.md` §2.4.
//!
//! Shared pieces live here: the borrowed credential view, the RFC 3986
//! percent-encoding both styles use, ISO-8601 UTC timestamps from
//! [`SystemTime`], a default nonce generator, and the error type.
//!
//! Secret material is only ever borrowed (`&str`); no type defined here prints
//! a secret, a security token or a signature through `Debug`.

pub mod acs3;
pub mod rpc_v2;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The AccessKey material needed to sign one request, borrowed from wherever
/// the caller keeps it (typically its own redacting `Secret` wrapper).
///
/// Borrowing keeps ownership and zeroing policy with the credential layer;
/// this module only reads the bytes while computing an HMAC.
#[derive(Clone, Copy)]
pub struct ApiCredentials<'a> {
    /// AccessKey id; sent in clear (`AccessKeyId` / `Credential=`).
    pub access_key_id: &'a str,
    /// AccessKey secret; only ever used as HMAC key material.
    pub access_key_secret: &'a str,
    /// STS security token, present for temporary credentials. Sent as
    /// `SecurityToken` (V2) or `x-acs-security-token` (V3).
    pub security_token: Option<&'a str>,
}

impl fmt::Debug for ApiCredentials<'_> {
    /// Shows the AccessKey id only; the secret and token are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("security_token", &self.security_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// HTTP method of a signed request. Both styles put the method name inside
/// the string to sign, so it must be exactly what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `HEAD`
    Head,
}

impl HttpMethod {
    /// Upper-case method name, as used in the string to sign.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Head => "HEAD",
        }
    }
}

/// Why a request could not be signed. Every variant is a caller bug that
/// would otherwise produce a request the server rejects or misreads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The caller supplied a parameter or header the signer sets itself
    /// (for example `Timestamp`, `Signature` or `x-acs-date`).
    Reserved(String),
    /// The same parameter name was supplied twice; the signed set is a map.
    Duplicate(String),
    /// Form parameters were given for a method that carries no body.
    FormWithoutBody(HttpMethod),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Reserved(name) => {
                write!(f, "`{name}` is set by the signer and must not be supplied")
            }
            SignError::Duplicate(name) => write!(f, "parameter `{name}` is supplied twice"),
            SignError::FormWithoutBody(m) => {
                write!(
                    f,
                    "form parameters need a request body, but {} has none",
                    m.as_str()
                )
            }
        }
    }
}

impl std::error::Error for SignError {}

/// Percent-encodes `s` the way both Alibaba Cloud signatures require
/// (§4.1 "Rules"; mcp-proxy §2.3 step 3): the UTF-8 bytes of the RFC 3986
/// unreserved set `A-Z a-z 0-9 - _ . ~` pass through, every other byte
/// becomes `%XX` with upper-case hex. So space is `%20` (never `+`), `*` is
/// `%2A`, `/` is `%2F` and `~` stays as is.
pub fn percent_encode(s: &str) -> String {
    encode_except(s, |_| false)
}

/// Builds the canonical query string both styles sign (§4.1 step 2, §4.2
/// `CanonicalQuery`): parameters sorted by name in byte order (stable, so
/// repeated names keep their order, as Go's `url.Values` does), each name and
/// value [`percent_encode`]d, joined as `k=v` with `&`. Empty values stay as
/// `k=`. The result is also a valid, strictly encoded URL query or form body.
pub fn canonical_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let pairs: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    pairs.join("&")
}

/// Percent-encodes a URL path segment by segment, keeping the `/`
/// separators, and maps the empty path to `/`. This is V3's CanonicalURI
/// rule (§4.2: "RFC3986-encoded per segment; empty -> /").
pub fn percent_encode_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    encode_except(path, |b| b == b'/')
}

fn encode_except(s: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Lower-case hex of `bytes`. V3 writes both the payload hash and the
/// signature in this form (§4.2); kept local to avoid a dependency.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ` in UTC, the form both the V2
/// `Timestamp` parameter and the V3 `x-acs-date` header take (§4.1 Go layout
/// `2006-01-02T15:04:05Z`, §4.2 `yyyy-MM-ddTHH:mm:ssZ`). Sub-second parts
/// are truncated towards the past; times before 1970 are handled.
pub fn iso8601_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Converts a count of days since 1970-01-01 to a proleptic Gregorian
/// `(year, month, day)`. Written out here so that no date crate is needed.
///
/// Method: shift the epoch to 0000-03-01 so that the leap day ends each
/// year, split into 400-year eras (146 097 days each), then find the year of
/// the era, the day of that March-based year, and the month by the
/// 153-days-per-5-months rule.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    // 719 468 days separate 0000-03-01 from 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    // Both values are small and positive by construction.
    (year, month as u32, day as u32)
}

/// A fresh 32-hex-character `SignatureNonce`. The signers take the nonce as a parameter so
/// tests stay deterministic; production code passes `&generate_nonce()`. Drawn from the
/// operating system's CSPRNG: a nonce the server has seen before is rejected.
pub fn generate_nonce() -> String {
    crate::random::hex::<16>()
}

/// Checks that every name in `names` is unique, and none is in `reserved`
/// (compared with `eq`, so callers choose case sensitivity).
pub(crate) fn check_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    reserved: &[&str],
    eq: fn(&str, &str) -> bool,
) -> Result<(), SignError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if reserved.iter().any(|r| eq(r, name)) {
            return Err(SignError::Reserved(name.to_owned()));
        }
        if seen.iter().any(|s| eq(s, name)) {
            return Err(SignError::Duplicate(name.to_owned()));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// `secs` seconds after (or before) the Unix epoch.
    pub(crate) fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    /// Long-term AccessKey credentials without an STS token.
    pub(crate) fn creds<'a>(id: &'a str, secret: &'a str) -> ApiCredentials<'a> {
        ApiCredentials {
            access_key_id: id,
            access_key_secret: secret,
            security_token: None,
        }
    }

    #[test]
    fn percent_encode_follows_rfc3986_unreserved_set() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(
            percent_encode("a b*c/d:e+f=g&h"),
            "a%20b%2Ac%2Fd%3Ae%2Bf%3Dg%26h"
        );
        assert_eq!(percent_encode("%7E"), "%257E");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn percent_encode_path_keeps_slashes_and_defaults_to_root() {
        assert_eq!(percent_encode_path(""), "/");
        assert_eq!(
            percent_encode_path("/apimcpservercores"),
            "/apimcpservercores"
        );
        assert_eq!(percent_encode_path("/a b/c*d/"), "/a%20b/c%2Ad/");
    }

    #[test]
    fn iso8601_matches_reference_timestamps() {
        // Timestamps used by the vectors in the reference documents.
        assert_eq!(iso8601_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(at(1_767_225_600)), "2026-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(at(1_456_231_584)), "2016-02-23T12:46:24Z");
        assert_eq!(iso8601_utc(at(1_678_696_470)), "2023-03-13T08:34:30Z");
        assert_eq!(iso8601_utc(at(1_698_315_752)), "2023-10-26T10:22:32Z");
        // Leap days, century rules, and the far side of the epoch.
        assert_eq!(iso8601_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(iso8601_utc(at(-1)), "1969-12-31T23:59:59Z");
        assert_eq!(iso8601_utc(at(-2_208_988_800)), "1900-01-01T00:00:00Z");
        let half = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(iso8601_utc(half), "1969-12-31T23:59:59Z");
        let later = at(1_767_225_600) + Duration::from_millis(999);
        assert_eq!(iso8601_utc(later), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn civil_from_days_walks_the_calendar_one_day_at_a_time() {
        fn days_in_month(y: i64, m: u32) -> u32 {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1]
        }
        // From 0400-01-01 to beyond 2400, every step is "next day".
        let start = -571_970; // 0404-01-01, counted back from 1970-01-01
        let mut prev = civil_from_days(start);
        assert_eq!(prev, (404, 1, 1));
        for days in start + 1..200_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let expected = if pd < days_in_month(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn nonces_are_32_hex_chars_and_distinct() {
        let a = generate_nonce();
        let b = generate_nonce();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn credentials_debug_redacts_secret_material() {
        let ak = ApiCredentials {
            security_token: Some("STS_TOKEN_VALUE"),
            ..creds("LTAI_TEST_ID", "TEST_SECRET")
        };
        let shown = format!("{ak:?}");
        assert!(shown.contains("LTAI_TEST_ID"));
        assert!(!shown.contains("TEST_SECRET"));
        assert!(!shown.contains("STS_TOKEN_VALUE"));
    }

    #[test]
    fn check_names_reports_reserved_and_duplicates() {
        let exact = |a: &str, b: &str| a == b;
        assert_eq!(check_names(["A", "B"], &["C"], exact), Ok(()));
        assert_eq!(
            check_names(["A", "C"], &["C"], exact),
            Err(SignError::Reserved("C".into()))
        );
        assert_eq!(
            check_names(["A", "A"], &[], exact),
            Err(SignError::Duplicate("A".into()))
        );
    }
}
