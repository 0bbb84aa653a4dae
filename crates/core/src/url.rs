//! Printing store URLs safely.

/// `url` with any password replaced by `***`: `postgres://u:secret@h/db` becomes
/// `postgres://u:***@h/db`. Also hides `password=` query and key-value parameters.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    // key=value forms (query strings and libpq key-value strings)
    let lower = out.to_ascii_lowercase();
    if let Some(pos) = lower.find("password=") {
        let start = pos + "password=".len();
        let end = out[start..]
            .find(['&', ' ', ';'])
            .map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
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
}
