//! Printing store URLs safely.

/// `url` with any password replaced by `***`, whether the URL is well-formed or not.
///
/// - URL user info: `postgres://u:secret@h/db` becomes `postgres://u:***@h/db`. The
///   password runs from the first `:` after `://` to the **last** `@`, so one holding
///   `/ ? # @ :`, spaces or `%`-escapes, escaped or not, is hidden whole. (A string without
///   `://` is read the same way from its start.)
/// - `password=` (any case, `sslpassword=` too) in a query string, up to the next `&`.
/// - `password = VALUE` in a libpq key-value string: a quoted value (`'a b'`, with `\'`
///   escapes) to its closing quote, an unquoted one up to the next `KEY=`.
///
/// Every occurrence is hidden. When the text is ambiguous it hides more rather than less
/// (`postgres://h:5432/db?application_name=a@b` prints as `postgres://h:***@b`).
pub fn redact_url(url: &str) -> String {
    // Both readings are taken on the original text and their union hidden, so a password
    // that looks like the other form (`u:mypassword=x@h`) is hidden whole either way.
    let mut spans = keyword_spans(url);
    spans.extend(userinfo_span(url));
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = url.to_string();
    for &(start, end) in merged.iter().rev() {
        out.replace_range(start..end, "***");
    }
    out
}

/// The value of every `password` keyword (`password=`, `PassWord =`, `sslpassword=`).
fn keyword_spans(text: &str) -> Vec<(usize, usize)> {
    let url_mode = text.contains("://");
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key_end = from + found + "password".len();
        from = key_end;
        let mut i = key_end;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while !url_mode && i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let span = if url_mode {
            (i, text[i..].find('&').map_or(text.len(), |n| i + n))
        } else if bytes.get(i) == Some(&b'\'') {
            (i + 1, quoted_end(bytes, i + 1))
        } else {
            (i, unquoted_end(bytes, i))
        };
        spans.push(span);
    }
    spans
}

/// The index of the closing quote of a libpq value that starts at `start` (after its
/// opening quote), or the end of the text when it is not closed.
fn quoted_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Where an unquoted libpq value starting at `start` ends: at the white space before the
/// next `KEY=` (or `KEY =`), or at the end of the text. A value with spaces in it (which
/// libpq itself would reject) is hidden whole.
fn unquoted_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() && next_is_keyword(bytes, i) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// Whether white space at `i` is followed by `KEY=` (letters, digits, `_`).
fn next_is_keyword(bytes: &[u8], mut i: usize) -> bool {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    let key_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    if i == key_start {
        return false;
    }
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    bytes.get(i) == Some(&b'=')
}

/// A `user:password@` part's password: from the first `:` after `://` to the last `@`.
fn userinfo_span(text: &str) -> Option<(usize, usize)> {
    // A scheme is letters, digits, `+ - .`; a `://` after anything else is in the password.
    let start = match text.find("://") {
        Some(i)
            if i > 0
                && text[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
        {
            i + 3
        }
        _ => 0,
    };
    let at = start + text[start..].rfind('@')?;
    let colon = start + text[start..at].find(':')?;
    Some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x&ssl=1"),
            "postgres://h/db?user=u&password=***&ssl=1"
        );
        assert_eq!(
            redact_url("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn a_password_with_url_delimiters_is_hidden_whole() {
        for pw in ["a/b", "a?b", "a#b", "a@b", "a:b", "a b", "a%2Fb%40c", "@:/?#"] {
            let url = format!("postgres://user:{pw}@db.example:5432/logs?sslmode=disable");
            let shown = redact_url(&url);
            assert!(!shown.contains(pw), "{shown}");
            assert!(shown.contains("db.example:5432/logs"), "{shown}");
        }
    }

    #[test]
    fn every_key_value_password_is_hidden_in_any_case_and_quoting() {
        assert_eq!(
            redact_url("host=h password = 'a b\\' c' user=u"),
            "host=h password = '***' user=u"
        );
        assert_eq!(
            redact_url("PASSWORD=x1 host=h Password=x2 sslpassword=x3"),
            "PASSWORD=*** host=h Password=*** sslpassword=***"
        );
        assert_eq!(
            redact_url("host=h password=a b c dbname=d"),
            "host=h password=*** dbname=d"
        );
        assert_eq!(
            redact_url("postgres://u:p1@h/db?password=p2&PASSWORD=p3"),
            "postgres://u:***@h/db?password=***&PASSWORD=***"
        );
    }

    #[test]
    fn a_url_without_a_scheme_still_hides_its_password() {
        assert_eq!(redact_url("u:s3cret@h/db"), "u:***@h/db");
        assert_eq!(redact_url("user:pa://ss@h/db"), "user:***@h/db");
        assert_eq!(redact_url("postgres://u:mypassword=1@h/db"), "postgres://u:***");
    }

    /// URL shapes with `{pw}` where a password goes: user info (raw and %-escaped),
    /// query strings, libpq key-value strings, several occurrences, no scheme.
    const SHAPES: &[&str] = &[
        "postgres://user:{pw}@127.0.0.1:1/db",
        "postgresql://user:{pw}@127.0.0.1:1/db?sslmode=disable&synclog_schema=s",
        "postgres://127.0.0.1:1/db?user=u&password={pw}",
        "postgres://127.0.0.1:1/db?password={pw}&user=u",
        "postgres://user:{pw}@127.0.0.1:1/db?password={pw}",
        "host=127.0.0.1 port=1 password='{pw}' user=u",
        "host=127.0.0.1 PASSWORD = {pw} dbname=test",
        "json://u:{pw}@h/b.jsonl?rotate_mb=x",
        "sqlite://u:{pw}@h/a.db?foo=1",
        "ftp://u:{pw}@h/x",
        "u:{pw}@127.0.0.1/db",
        "u:{pw}://x@127.0.0.1/db",
        "postgres://u:password={pw}@127.0.0.1/db",
    ];

    fn password() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            "[A-Za-z0-9]{1,3}",
            Just("/".to_string()),
            Just("?".to_string()),
            Just("#".to_string()),
            Just("@".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            "%[0-9A-F]{2}",
        ];
        proptest::collection::vec(piece, 1..8).prop_map(|p| format!("Zq{}", p.concat()))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, ..Default::default() })]

        #[test]
        fn no_spliced_password_survives_redaction(pw in password(), shape in 0..SHAPES.len()) {
            let url = SHAPES[shape].replace("{pw}", &pw);
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&pw), "{url} -> {shown}");
            // Not even its start: "Zq" appears nowhere else in the shapes.
            proptest::prop_assert!(!shown.contains("Zq"), "{url} -> {shown}");
        }
    }
}
