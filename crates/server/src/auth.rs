//! Bearer tokens: read from a file or an environment variable (never the command line),
//! kept as SHA-256 digests, compared in constant time, never logged or echoed.

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// A secret token. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The shortest token taken: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

impl Token {
    /// A token from its text (surrounding white space dropped).
    ///
    /// Errors: a message when it is shorter than [`MIN_TOKEN_BYTES`] or holds white space
    /// or control characters inside.
    pub fn new(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "a token needs at least {MIN_TOKEN_BYTES} bytes (this one has {}); make one with `openssl rand -hex 32`",
                t.len()
            ));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a token may not hold white space or control characters".into());
        }
        Ok(Token(Sha256::digest(t.as_bytes()).into()))
    }

    /// The token in the file at `path` (its whole content, trimmed).
    pub fn from_file(path: &std::path::Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Token::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.0).into()
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading: the read or the write token, or nothing with `--public-read`.
    Read,
    /// Writing: the write token.
    Write,
}

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token that may write (and read).
    pub write: Option<Token>,
    /// The token that may only read.
    pub read: Option<Token>,
    /// Reads need no token.
    pub public_read: bool,
}

/// Whether the request's `Host` names a loopback address (`localhost`, `127.0.0.1`,
/// `[::1]`, any port). A server without tokens answers only those: a page that rebinds its
/// own host name to 127.0.0.1 cannot read or write through the victim's browser.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Access {
    /// Whether any token is set (a server without one may listen on loopback only).
    pub fn has_tokens(&self) -> bool {
        self.write.is_some() || self.read.is_some()
    }

    /// Checks the request's credentials for `need`. `browser`: ask for HTTP Basic (the
    /// dashboard: a browser prompts, and the token is the password) instead of Bearer.
    pub fn check(&self, headers: &HeaderMap, need: Need, browser: bool) -> Result<(), ApiError> {
        if !self.has_tokens() {
            return Ok(());
        }
        if need == Need::Read && self.public_read {
            return Ok(());
        }
        let challenge = if browser { "Basic" } else { "Bearer" };
        let unauthorized = |msg: &str| ApiError {
            challenge: Some(challenge),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
        };
        // Basic (what a browser sends after its prompt, and keeps sending to this origin)
        // is taken for reads only: a write must carry its token on purpose, so a page on
        // another site cannot ride on a cached password.
        let Some(presented) = presented(headers, need == Need::Read) else {
            return Err(unauthorized("this needs `Authorization: Bearer <token>`"));
        };
        let is_write = self.write.as_ref().is_some_and(|t| t.matches(&presented));
        let is_read = self.read.as_ref().is_some_and(|t| t.matches(&presented));
        match need {
            Need::Write if is_write => Ok(()),
            Need::Write if is_read => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may only read; writing needs the write token",
            )),
            Need::Read if is_write || is_read => Ok(()),
            _ => Err(unauthorized("the token is not one this server takes")),
        }
    }
}

/// The token a request presents: `Bearer <token>`, or (`basic`) the password of `Basic`.
fn presented(headers: &HeaderMap, basic: bool) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(rest.to_vec());
    }
    if basic && scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn a_token_is_taken_as_bearer_or_as_the_basic_password() {
        let access = Access {
            write: Some(Token::new("w-0123456789abcdef").unwrap()),
            read: None,
            public_read: false,
        };
        assert!(access
            .check(&headers("Bearer w-0123456789abcdef"), Need::Write, false)
            .is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode("me:w-0123456789abcdef");
        assert!(access
            .check(&headers(&format!("Basic {basic}")), Need::Read, true)
            .is_ok());
        let e = access
            .check(&headers("Bearer w-0123456789abcdeX"), Need::Write, false)
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.challenge, Some("Bearer"));
    }

    #[test]
    fn only_loopback_host_names_pass_the_host_check() {
        let host = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            loopback_host(&m)
        };
        for ok in [
            "127.0.0.1:7070",
            "localhost",
            "LOCALHOST:1",
            "[::1]:7070",
            "127.1.2.3",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "192.168.1.5",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert!(!host(bad), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn short_tokens_are_refused_and_debug_shows_nothing() {
        assert!(Token::new("short").is_err());
        let t = Token::new("secret-secret-secret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
