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

use crate::id::Timestamp;

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

/// Writes `t` into `buf` exactly as chrono's `Serialize` writes it (RFC 3339, `Z`, 0, 3, 6
/// or 9 fraction digits, whichever is shortest without loss), for years 0 to 9999; `None`
/// for other years, which chrono writes with a sign.
pub fn format<'b>(t: &Timestamp, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (mut sec, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second, written as second 60 (as chrono does).
        sec += 1;
        nano -= 1_000_000_000;
    }
    let (frac, digits) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (nano / 1_000_000, 3)
    } else if nano % 1_000 == 0 {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    let mut put = |at: usize, mut n: u32, width: usize| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, sec, 2);
    let mut len = 19;
    if digits > 0 {
        put(20, frac, digits);
        buf[19] = b'.';
        len = 20 + digits;
    }
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (len, b'Z'),
    ] {
        buf[i] = c;
    }
    std::str::from_utf8(&buf[..len + 1]).ok()
}

/// `#[serde(with = "crate::timefmt")]` for a [`Timestamp`]: the text chrono writes, without
/// going through `fmt` (which took most of the time of writing a record as JSON).
pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match format(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => t.serialize(s),
    }
}

/// A timestamp serialized by [`serialize`].
struct Rfc3339<'a>(&'a Timestamp);

impl Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, s)
    }
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
        t.as_ref().map(Rfc3339).serialize(s)
    }

    /// See [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }
}

/// An instant as filters take it, on the command line and over HTTP: RFC 3339
/// (`2026-11-24T08:30:00Z`), a date (`2026-11-24`, midnight UTC), or an age (`30m`, `24h`,
/// `7d`: that long before `now`).
///
/// Errors: a message saying which forms are taken.
pub fn parse_when(s: &str, now: Timestamp) -> std::result::Result<Timestamp, String> {
    if let Some(t) = parse(s) {
        return Ok(t);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    let age = crate::retention::parse_duration(s).map_err(|_| {
        format!("{s:?} is not a time: give RFC 3339 (2026-11-24T08:30:00Z), a date (2026-11-24) or an age (30m, 24h, 7d)")
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("{s:?} is too long ago"))
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

    /// What chrono's `Serialize` writes for `t`.
    fn chrono_text(t: &Timestamp) -> String {
        serde_json::to_value(t).unwrap().as_str().unwrap().to_owned()
    }

    #[test]
    fn writes_every_timestamp_exactly_as_chrono_does() {
        use chrono::NaiveDate;
        let day = NaiveDate::from_ymd_opt(2016, 12, 31).unwrap();
        let mut times: Vec<Timestamp> = [0, 1, 999, 1_000, 123_456, 1_000_000, 120_000_000, 999_999_999]
            .into_iter()
            .map(|nanos| Utc.from_utc_datetime(&day.and_hms_nano_opt(23, 59, 59, nanos).unwrap()))
            .collect();
        // Leap seconds (nanos past 10^9) are written as second 60.
        times.push(Utc.from_utc_datetime(&day.and_hms_nano_opt(23, 59, 59, 1_000_000_000).unwrap()));
        times.push(Utc.from_utc_datetime(&day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap()));
        times.push(min_time());
        times.push(
            Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(9999, 12, 31)
                    .unwrap()
                    .and_hms_opt(23, 59, 59)
                    .unwrap(),
            ),
        );
        // Then a spread over years 0..=9999, and a step of 7,919 µs.
        let mut micros = -62_167_219_200_000_000i64; // 0000-01-01
        while micros < 253_402_300_800_000_000 {
            times.push(Utc.timestamp_micros(micros).unwrap());
            micros += 12_345_678_901_234;
        }
        let now = Utc::now().timestamp_micros();
        times.extend((0..1000).map(|i| Utc.timestamp_micros(now + i * 7_919).unwrap()));
        for t in &times {
            let mut buf = [0u8; 30];
            assert_eq!(format(t, &mut buf), Some(chrono_text(t).as_str()), "{t:?}");
            assert_eq!(
                ours(t),
                format!("{{\"t\":\"{0}\",\"o\":\"{0}\"}}", chrono_text(t))
            );
        }
        // Years chrono writes with a sign are left to chrono.
        let far = Utc.from_utc_datetime(
            &NaiveDate::from_ymd_opt(10000, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        );
        assert_eq!(format(&far, &mut [0u8; 30]), None);
        assert_eq!(chrono_text(&far), "+10000-01-01T00:00:00Z");
        assert_eq!(
            ours(&far),
            format!("{{\"t\":\"{0}\",\"o\":\"{0}\"}}", chrono_text(&far))
        );
    }

    /// `t` written through `serialize` and `option::serialize`.
    fn ours(t: &Timestamp) -> String {
        #[derive(serde::Serialize)]
        struct Both {
            #[serde(with = "crate::timefmt")]
            t: Timestamp,
            #[serde(with = "crate::timefmt::option")]
            o: Option<Timestamp>,
        }
        serde_json::to_string(&Both { t: *t, o: Some(*t) }).unwrap()
    }

    fn min_time() -> Timestamp {
        Utc.from_utc_datetime(
            &chrono::NaiveDate::from_ymd_opt(0, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        )
    }

    #[test]
    fn what_it_writes_it_reads_back() {
        let t = Utc::now();
        let text = serde_json::to_value(t).unwrap();
        assert_eq!(parse(text.as_str().unwrap()), Some(t));
    }
}
