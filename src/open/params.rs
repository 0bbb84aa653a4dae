//! URL parameters: each engine knows a list; anything else is refused, naming the list.

use synclog_core::{Error, Result};

/// The parameters a `postgres://` URL may carry: those synclog's client
/// (tokio-postgres) understands, plus `synclog_schema`.
pub const POSTGRES_PARAMS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "synclog_schema",
];

/// libpq parameters that synclog's client does not support (named as such when given).
const LIBPQ_ONLY: &[&str] = &[
    "passfile",
    "require_auth",
    "client_encoding",
    "fallback_application_name",
    "keepalives_count",
    "replication",
    "gssencmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslkeylogfile",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "min_protocol_version",
    "max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "scram_client_key",
    "scram_server_key",
];

/// Parameters that may be given more than once (libpq lists several hosts).
const REPEATABLE: &[&str] = &["host", "hostaddr", "port"];

/// `rest` split at its first `?`: the path (or name) and the query, if any.
pub fn split_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// The query of a `postgres://` URL, found as tokio-postgres finds it: after the user
/// info (up to the first `@`, if any), at the first `?`.
pub fn postgres_query(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let rest = rest.split_once('@').map_or(rest, |(_, after)| after);
    rest.split_once('?').map(|(_, query)| query)
}

/// The `NAME=VALUE` pairs of `query` (names %-decoded), each checked against `known`.
///
/// Refused with [`Error::InvalidInput`]: a name not in `known`, one given twice (unless
/// repeatable), a pair without `=`. Messages name parameters, never their values (which
/// may be secrets), and list the parameters `engine` knows. `shown` is the redacted URL.
pub fn parse<'q>(
    shown: &str,
    engine: &str,
    query: &'q str,
    known: &[&str],
) -> Result<Vec<(String, &'q str)>> {
    let mut pairs: Vec<(String, &'q str)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((raw_name, value)) = pair.split_once('=') else {
            return Err(Error::invalid(
                "url",
                format!(
                    "{shown} has a parameter that is not NAME=VALUE{}; {}",
                    printable(pair).map(|n| format!(" ({n})")).unwrap_or_default(),
                    knows(engine, known)
                ),
            ));
        };
        let name = decode(raw_name).unwrap_or_default();
        if !known.contains(&name.as_str()) {
            let what = match printable(&name) {
                Some(n) if LIBPQ_ONLY.contains(&n) && engine == "postgres" => {
                    format!("parameter {n}, which synclog's PostgreSQL client does not support")
                }
                Some(n) => format!("unknown parameter {n}"),
                None => "an unknown parameter".to_string(),
            };
            return Err(Error::invalid(
                "url",
                format!("{shown} has {what}; {}", knows(engine, known)),
            ));
        }
        if !REPEATABLE.contains(&name.as_str()) && pairs.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(
                "url",
                format!("{shown} gives parameter {name} more than once"),
            ));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// "ENGINE URLs take no parameters" or "ENGINE URLs take: a, b".
fn knows(engine: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("{engine} URLs take no parameters")
    } else {
        format!("{engine} URLs take: {}", known.join(", "))
    }
}

/// `name` when it is safe and useful to print: a short identifier. Anything else may be a
/// piece of a mistyped secret, and is not printed.
fn printable(name: &str) -> Option<&str> {
    (!name.is_empty() && name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// `%XX`-decodes `s`; `None` when an escape is broken or the result is not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use synclog_core::ErrorKind;

    #[test]
    fn a_known_parameter_is_accepted_and_others_are_refused() {
        let ok = parse("u", "json", "rotate_mb=5", &["rotate_mb"]).unwrap();
        assert_eq!(ok, vec![("rotate_mb".to_string(), "5")]);
        for bad in ["foo=1", "rotate_mb", "rotate_mb=1&rotate_mb=2", "%zz=1"] {
            let err = parse("u", "json", bad, &["rotate_mb"]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn postgres_query_starts_after_the_user_info() {
        assert_eq!(postgres_query("postgres://u:a?b@h/db?x=1"), Some("x=1"));
        assert_eq!(
            postgres_query("postgresql://h/db?sslmode=disable"),
            Some("sslmode=disable")
        );
        assert_eq!(postgres_query("postgres://h/db"), None);
    }
}
