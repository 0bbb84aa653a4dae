//! The canonical encoding of a record and its checksum.
//!
//! Every engine and the backup store the same checksum, computed here, so any copy of a
//! record can be checked on its own.
//!
//! # The canonical bytes (format 1)
//! All integers are big-endian; strings are UTF-8 preceded by their byte length as `u32`.
//!
//! | field | bytes |
//! |---|---|
//! | magic | `b"SLR1"` |
//! | id | `u64` |
//! | recorded_at | `i64`, microseconds since the Unix epoch (UTC) |
//! | job | `u32` length + bytes |
//! | status | `u8` ([`crate::Status::code`]: started 1, succeeded 2, failed 3, partial 4, skipped 5, progress 6, abandoned 7) |
//! | started_at | `i64` microseconds |
//! | finished_at | `u8` 0 (absent) or 1 followed by `i64` microseconds |
//! | items_seen, items_written, items_failed | `u64` each |
//! | message | `u32` length + bytes |
//! | attrs | `u32` length + bytes of the canonical JSON text (see [`Attrs`]) |
//! | keys (only when a run or idempotency key is set) | `u8` flags (1: run, 2: idempotency key), then each key present as `u32` length + bytes |
//!
//! A record without a run or idempotency key ends at `attrs`, so every record stored
//! before keys existed keeps its checksum.
//!
//! # The checksum
//! CRC-32C (Castagnoli, the polynomial of iSCSI, ext4 and LevelDB) of those bytes, shown
//! as 8 lowercase hex digits. It detects accidental damage (torn writes, bit flips, a
//! field edited behind the store's back); it is not a defence against a forger.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};

/// The magic bytes that start the canonical encoding (format 1).
pub const MAGIC: &[u8; 4] = b"SLR1";

/// A record's CRC-32C checksum over its canonical encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checksum(pub u32);

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for Checksum {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 8 {
            return Err(Error::invalid("checksum", format!("{s:?} is not 8 hex digits")));
        }
        u32::from_str_radix(s, 16)
            .map(Checksum)
            .map_err(|_| Error::invalid("checksum", format!("{s:?} is not 8 hex digits")))
    }
}

impl Checksum {
    /// Its text (8 lowercase hex digits, as `Display` writes), without going through `fmt`.
    pub fn hex(self) -> [u8; 8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 8];
        for (i, c) in text.iter_mut().enumerate() {
            *c = HEX[(self.0 >> (28 - 4 * i) & 0xf) as usize];
        }
        text
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.hex()).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything the checksum covers, borrowed, so engines can check stored bytes without
/// building a [`crate::LogRecord`].
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct RecordView<'a> {
    pub id: u64,
    pub recorded_at: i64,
    pub job: &'a str,
    pub status: u8,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub items_seen: u64,
    pub items_written: u64,
    pub items_failed: u64,
    pub message: &'a str,
    /// The canonical JSON text of the attributes.
    pub attrs: &'a str,
    /// The run key, if any.
    pub run: Option<&'a str>,
    /// The idempotency key, if any.
    pub idempotency_key: Option<&'a str>,
}

impl RecordView<'_> {
    /// Feeds the canonical bytes, piece by piece, to `out`.
    fn emit(&self, out: &mut impl FnMut(&[u8])) {
        let text = |out: &mut dyn FnMut(&[u8]), s: &str| {
            out(&(s.len() as u32).to_be_bytes());
            out(s.as_bytes());
        };
        out(MAGIC);
        out(&self.id.to_be_bytes());
        out(&self.recorded_at.to_be_bytes());
        text(out, self.job);
        out(&[self.status]);
        out(&self.started_at.to_be_bytes());
        match self.finished_at {
            None => out(&[0]),
            Some(t) => {
                out(&[1]);
                out(&t.to_be_bytes());
            }
        }
        out(&self.items_seen.to_be_bytes());
        out(&self.items_written.to_be_bytes());
        out(&self.items_failed.to_be_bytes());
        text(out, self.message);
        text(out, self.attrs);
        if self.run.is_some() || self.idempotency_key.is_some() {
            out(&[u8::from(self.run.is_some()) | (u8::from(self.idempotency_key.is_some()) << 1)]);
            for key in [self.run, self.idempotency_key].into_iter().flatten() {
                text(out, key);
            }
        }
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(96 + self.job.len() + self.message.len() + self.attrs.len());
        self.emit(&mut |b| buf.extend_from_slice(b));
        buf
    }

    /// CRC-32C of the canonical bytes (computed without allocating).
    ///
    /// The pieces are gathered in a buffer on the stack and fed to CRC-32C a buffer at a
    /// time: one call per field cost more than the CRC itself.
    pub fn checksum(&self) -> Checksum {
        let mut buf = [0u8; 512];
        let (mut len, mut crc) = (0usize, 0u32);
        self.emit(&mut |b| {
            if len + b.len() > buf.len() {
                crc = crc32c::crc32c_append(crc, &buf[..len]);
                len = 0;
                if b.len() > buf.len() {
                    crc = crc32c::crc32c_append(crc, b);
                    return;
                }
            }
            buf[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        });
        Checksum(crc32c::crc32c_append(crc, &buf[..len]))
    }
}

/// Reads canonical bytes (format 1) back into a view of the fields. Fails with
/// [`Error::Corrupt`] when the bytes are not a whole, well-formed encoding.
pub fn decode(bytes: &[u8]) -> Result<RecordView<'_>> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8]> {
            if self.0.len() < n {
                return Err(Error::corrupt("canonical record", "truncated"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn u8(&mut self) -> Result<u8> {
            Ok(self.take(1)?[0])
        }
        fn u64(&mut self) -> Result<u64> {
            let mut b = [0u8; 8];
            b.copy_from_slice(self.take(8)?);
            Ok(u64::from_be_bytes(b))
        }
        fn i64(&mut self) -> Result<i64> {
            Ok(self.u64()? as i64)
        }
        fn text(&mut self) -> Result<&'a str> {
            let mut b = [0u8; 4];
            b.copy_from_slice(self.take(4)?);
            let n = u32::from_be_bytes(b) as usize;
            std::str::from_utf8(self.take(n)?)
                .map_err(|_| Error::corrupt("canonical record", "text is not UTF-8"))
        }
    }
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(Error::corrupt("canonical record", "does not start with SLR1"));
    }
    let view = RecordView {
        id: r.u64()?,
        recorded_at: r.i64()?,
        job: r.text()?,
        status: r.u8()?,
        started_at: r.i64()?,
        finished_at: match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            _ => return Err(Error::corrupt("canonical record", "bad finished_at flag")),
        },
        items_seen: r.u64()?,
        items_written: r.u64()?,
        items_failed: r.u64()?,
        message: r.text()?,
        attrs: r.text()?,
        run: None,
        idempotency_key: None,
    };
    let mut view = view;
    if !r.0.is_empty() {
        let flags = r.u8()?;
        if flags == 0 || flags > 3 {
            return Err(Error::corrupt("canonical record", "bad keys flags"));
        }
        if flags & 1 != 0 {
            view.run = Some(r.text()?);
        }
        if flags & 2 != 0 {
            view.idempotency_key = Some(r.text()?);
        }
    }
    if !r.0.is_empty() {
        return Err(Error::corrupt("canonical record", "trailing bytes"));
    }
    Ok(view)
}

/// Attributes as canonical JSON text: an object, keys sorted by their UTF-8 bytes at every
/// level, no insignificant white space, strings and numbers written as `serde_json` writes them.
///
/// It serializes as the JSON object itself. Deserializing keeps the text as received, so a
/// copy edited by hand fails its checksum instead of being silently re-canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attrs(String);

impl Attrs {
    /// `{}`.
    pub fn empty() -> Attrs {
        Attrs("{}".to_string())
    }

    /// The canonical text of a JSON object; any other JSON value is an invalid-input error.
    pub fn from_value(v: &Value) -> Result<Attrs> {
        if !v.is_object() {
            return Err(Error::invalid("attrs", "must be a JSON object"));
        }
        let mut out = Vec::new();
        write_canonical_bytes(v, &mut out);
        // serde_json writes UTF-8 only; this cannot fail.
        String::from_utf8(out)
            .map(Attrs)
            .map_err(|_| Error::invalid("attrs", "not UTF-8 once encoded"))
    }

    /// Wraps text that is already canonical (read back from a store); the record's
    /// checksum is what proves it.
    pub fn from_stored(text: String) -> Attrs {
        Attrs(text)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text into a JSON value.
    pub fn to_value(&self) -> Result<Value> {
        serde_json::from_str(&self.0).map_err(|e| Error::Corrupt {
            location: "attrs".into(),
            detail: "attributes are not valid JSON".into(),
            source: Some(Box::new(e)),
        })
    }
}

impl Default for Attrs {
    fn default() -> Self {
        Attrs::empty()
    }
}

impl fmt::Display for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Attrs {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let raw =
            serde_json::value::RawValue::from_string(self.0.clone()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(d)?;
        Ok(Attrs(raw.get().to_string()))
    }
}

/// Writes `v` as canonical JSON (sorted keys, compact).
pub fn write_canonical(v: &Value, out: &mut String) {
    let mut bytes = Vec::new();
    write_canonical_bytes(v, &mut bytes);
    // Never lossy: serde_json writes UTF-8.
    out.push_str(&String::from_utf8_lossy(&bytes));
}

/// [`write_canonical`] into bytes: keys and scalars go straight to `serde_json`'s writer,
/// without building a `Value` or a `String` for each.
fn write_canonical_bytes(v: &Value, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail, and serde_json cannot fail on a `Value` or a `str`.
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Already in order when serde_json keeps maps sorted; not with `preserve_order`.
            if !entries.windows(2).all(|w| w[0].0 <= w[1].0) {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k.as_str());
                out.push(b':');
                write_canonical_bytes(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_bytes(item, out);
            }
            out.push(b']');
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = Attrs::from_value(&json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 1}], "c": "é"}})).unwrap();
        assert_eq!(a.as_str(), r#"{"a":{"c":"é","z":[1,{"x":1,"y":2}]},"b":1}"#);
    }

    /// The canonical text is part of every stored checksum: this pins it, byte for byte,
    /// as synclog has written it since format 1 (escapes, numbers, key order by UTF-8 bytes).
    #[test]
    fn canonical_text_is_unchanged_for_every_kind_of_value() {
        let v = json!({
            "z": [1.5, -3, 18446744073709551615u64, 1e300, null, true, "a\"b\\c\nd\u{1}é✓"],
            "a": {"y": {}, "x": []},
            "é": "",
            "A": 0.1
        });
        assert_eq!(
            Attrs::from_value(&v).unwrap().as_str(),
            r#"{"A":0.1,"a":{"x":[],"y":{}},"z":[1.5,-3,18446744073709551615,1e+300,null,true,"a\"b\\c\nd\u0001é✓"],"é":""}"#
        );
        let mut text = String::new();
        write_canonical(&v["z"], &mut text);
        assert_eq!(
            text,
            r#"[1.5,-3,18446744073709551615,1e+300,null,true,"a\"b\\c\nd\u0001é✓"]"#
        );
    }

    #[test]
    fn attrs_reject_non_objects() {
        for v in [json!([1]), json!("x"), json!(3), json!(null)] {
            assert_eq!(
                Attrs::from_value(&v).unwrap_err().kind(),
                crate::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn checksum_matches_crc32c_of_encoded_bytes() {
        let v = RecordView {
            id: 7,
            recorded_at: 1,
            job: "j",
            status: 2,
            started_at: 0,
            finished_at: Some(5),
            items_seen: 3,
            items_written: 2,
            items_failed: 1,
            message: "m",
            attrs: "{}",
            run: None,
            idempotency_key: None,
        };
        assert_eq!(v.checksum(), Checksum(crc32c::crc32c(&v.encode())));
        let changed = RecordView { message: "n", ..v };
        assert_ne!(v.checksum(), changed.checksum());
        let absent = RecordView {
            finished_at: None,
            ..v
        };
        assert_ne!(v.checksum(), absent.checksum());
    }

    /// The checksum gathers pieces in a 512-byte buffer: fields that fill it, and one
    /// longer than it, must give the CRC of the whole encoding all the same.
    #[test]
    fn checksum_of_long_fields_matches_crc32c_of_encoded_bytes() {
        let (job, message, attrs) = (
            "j".repeat(300),
            "m".repeat(700),
            format!("{{\"a\":\"{}\"}}", "x".repeat(500)),
        );
        for (job, message, attrs) in [
            (job.as_str(), "short", "{}"),
            (job.as_str(), "m".repeat(250).as_str(), "{}"),
            ("j", message.as_str(), "{}"),
            (job.as_str(), message.as_str(), attrs.as_str()),
        ] {
            let v = RecordView {
                id: 1,
                recorded_at: 2,
                job,
                status: 1,
                started_at: 3,
                finished_at: None,
                items_seen: 4,
                items_written: 5,
                items_failed: 6,
                message,
                attrs,
                run: None,
                idempotency_key: None,
            };
            let keyed = RecordView {
                run: Some(job),
                idempotency_key: Some(message),
                ..v
            };
            assert_eq!(
                keyed.checksum(),
                Checksum(crc32c::crc32c(&keyed.encode())),
                "keyed, {} bytes",
                keyed.encode().len()
            );
            assert_ne!(keyed.checksum(), v.checksum(), "the keys are covered");
            let bytes = keyed.encode();
            let back = decode(&bytes).unwrap();
            assert_eq!((back.run, back.idempotency_key), (Some(job), Some(message)));
            assert_eq!(
                v.checksum(),
                Checksum(crc32c::crc32c(&v.encode())),
                "{} bytes",
                v.encode().len()
            );
        }
    }

    #[test]
    fn decode_reads_back_what_encode_wrote_and_refuses_damage() {
        let v = RecordView {
            id: 9,
            recorded_at: -5,
            job: "jöb",
            status: 4,
            started_at: 1,
            finished_at: None,
            items_seen: 1,
            items_written: 2,
            items_failed: 3,
            message: "m",
            attrs: "{\"a\":1}",
            run: None,
            idempotency_key: None,
        };
        let bytes = v.encode();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.checksum(), v.checksum());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn checksum_text_round_trips() {
        let c = Checksum(0x0a1b_2c3d);
        assert_eq!(c.to_string(), "0a1b2c3d");
        assert_eq!("0a1b2c3d".parse::<Checksum>().unwrap(), c);
        assert!("xyz".parse::<Checksum>().is_err());
        for c in [
            Checksum(0),
            Checksum(0x0a1b_2c3d),
            Checksum(0xfedc_ba98),
            Checksum(u32::MAX),
        ] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
            assert_eq!(c.hex(), c.to_string().as_bytes());
            assert_eq!(serde_json::from_str::<Checksum>(&format!("\"{c}\"")).unwrap(), c);
        }
    }
}
