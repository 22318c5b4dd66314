//! The fake's own RPC v2 ("HMAC-SHA1", `SignatureVersion=1.0`) primitives, written from the
//! reference (`alibabacloud-mcp-proxy.md` §2.3, `aliyun-cli-and-credentials.md` §4.1) and not
//! shared with the product's signer, so a canonicalisation bug in one cannot hide in the other:
//!
//! 1. the signed set is every query and form parameter except `Signature`;
//! 2. sorted by name (byte order), name and value percent-encoded (RFC 3986 unreserved
//!    characters kept, everything else `%XX` upper-case, space `%20`), joined `k=v&…`;
//! 3. `StringToSign = METHOD&%2F&percent_encode(canonicalized)`;
//! 4. `Signature = base64(HMAC-SHA1(key = secret + "&", StringToSign))`.
//!
//! Also: `application/x-www-form-urlencoded` decoding (`+` is a space, as the Python SDK sends
//! it), the strict `YYYY-MM-DDTHH:MM:SSZ` timestamps of the common parameters and of STS
//! `Expiration`, and random ids in the shapes Alibaba Cloud uses.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

pub use super::super::net::{percent_encode, random_b64url};

/// The canonicalized query string: every parameter but `Signature`, sorted by name.
pub fn canonicalize(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&percent_encode(canonicalized)`.
pub fn string_to_sign(method: &str, canonicalized: &str) -> String {
    format!("{method}&%2F&{}", percent_encode(canonicalized))
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{secret}&").as_bytes(),
    );
    STANDARD.encode(ring::hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// Decodes `a=1&b=x%20y+z` (`+` is a space). Malformed escapes are an error, as on the server.
pub fn parse_urlencoded(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SSZ` (UTC), the only form the common `Timestamp` takes.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Formats `YYYY-MM-DDTHH:MM:SSZ` (UTC), as STS writes `Expiration`.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 (Howard Hinnant's algorithms, both directions).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("OS randomness");
    buf
}

/// Random upper-case hex from `n` random bytes.
pub fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02X}")).collect()
}

/// `n` random decimal digits.
pub fn random_digits(n: usize) -> String {
    random_bytes(n)
        .iter()
        .map(|b| char::from(b'0' + b % 10))
        .collect()
}

/// A `RequestId` shaped like Alibaba Cloud's (an upper-case UUID).
pub fn request_id() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A bearer token shaped like the real ones (a JWT: header, claims, signature), whose claims
/// name the AccessKey it was minted for. Nothing checks it but the fake itself.
pub fn jwt(key_id: &str, expires_at: SystemTime) -> String {
    let exp = expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"alibridge-fake"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        format!(
            r#"{{"iss":"ramoauth-fake","sub":"{key_id}","aud":"/internal/acs/openapi","exp":{exp},"jti":"{}"}}"#,
            random_hex(8)
        )
        .as_bytes(),
    );
    format!("{header}.{claims}.{}", random_b64url(32))
}
