//! Timestamps in JSON: written exactly as chrono writes them (RFC 3339, UTC, `Z`), read
//! with a fast path for that form.
//!
//! Restoring from a JSON backup parses three timestamps a record. chrono's general RFC 3339
//! parser took about a tenth of a 1,000,000-record restore; the form synclog itself writes
//! (`2026-11-25T01:27:55.123456Z`: fixed-width date and time, 0–9 fraction digits, `Z`) is
//! read here directly. Anything else (offsets like `+02:00`, a lower-case `z`, a leap
//! second) goes to chrono's parser, so what is accepted, and what it means, is unchanged.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{de, Deserializer, Serialize, Serializer};

use crate::record::Timestamp;

/// Parses an RFC 3339 timestamp into UTC, as chrono's `Deserialize` for `DateTime<Utc>` does.
pub fn parse(s: &str) -> Option<Timestamp> {
    fast(s.as_bytes()).or_else(|| {
        s.parse::<DateTime<FixedOffset>>()
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`; `None` for anything else (including invalid dates,
/// which the fallback then rejects).
fn fast(b: &[u8]) -> Option<Timestamp> {
    fn digits(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let rest = &b[19..];
    let nanos = match rest {
        [b'Z'] => 0,
        [b'.', frac @ .., b'Z'] if (1..=9).contains(&frac.len()) => {
            digits(frac)? * 10u32.pow(9 - frac.len() as u32)
        }
        _ => return None,
    };
    if second > 59 {
        return None; // a leap second: chrono's parser knows how to read it
    }
    let naive =
        NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_nano_opt(hour, minute, second, nanos)?;
    Some(Utc.from_utc_datetime(&naive))
}

struct Visitor;

impl de::Visitor<'_> for Visitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an RFC 3339 timestamp")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
        parse(s).ok_or_else(|| E::custom(format!("{s:?} is not an RFC 3339 timestamp")))
    }
}

/// `#[serde(with = "crate::timefmt")]` for a [`Timestamp`].
pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    t.serialize(s)
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    d.deserialize_str(Visitor)
}

/// `#[serde(with = "crate::timefmt::option")]` for an `Option<Timestamp>`.
pub mod option {
    use super::*;

    struct OptionVisitor;

    impl<'de> de::Visitor<'de> for OptionVisitor {
        type Value = Option<Timestamp>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }

    /// See [`super::serialize`].
    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    /// See [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono(s: &str) -> Option<Timestamp> {
        serde_json::from_value::<DateTime<Utc>>(serde_json::Value::String(s.into())).ok()
    }

    #[test]
    fn reads_every_timestamp_exactly_as_chrono_does() {
        for s in [
            "2026-11-25T01:27:55Z",
            "2026-11-25T01:27:55.1Z",
            "2026-11-25T01:27:55.123Z",
            "2026-11-25T01:27:55.123456Z",
            "2026-11-25T01:27:55.123456789Z",
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00Z",
            "2026-11-25T01:27:55.123456+02:00",
            "2026-11-25T01:27:55z",
            "2026-11-25 01:27:55Z",
            "2016-12-31T23:59:60Z",
            "2025-02-29T12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T01:27:55.Z",
            "2026-11-25T01:27:55.1234567890Z",
            "2026-11-25T01:27:55",
            "+2026-11-25T01:27:55Z",
            "garbage",
            "",
        ] {
            assert_eq!(parse(s), chrono(s), "{s:?}");
        }
        assert!(
            fast(b"2026-11-25T01:27:55.123456Z").is_some(),
            "the form synclog writes takes the fast path"
        );
    }

    #[test]
    fn what_it_writes_it_reads_back() {
        let t = Utc::now();
        let text = serde_json::to_value(t).unwrap();
        assert_eq!(parse(text.as_str().unwrap()), Some(t));
    }
}
