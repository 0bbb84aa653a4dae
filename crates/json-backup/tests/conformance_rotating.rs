//! The conformance suite against the JSON-lines engine rotating every 2 KiB (about six
//! records), so every case runs across sealed segments, the crash case included.

mod harness;

synclog_conformance::conformance_main!(harness::JsonHarness {
    name: "json-rotating",
    rotate_after_bytes: Some(2048),
});
