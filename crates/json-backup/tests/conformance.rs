//! The conformance suite against the JSON-lines engine.

mod harness;

synclog_conformance::conformance_main!(harness::JsonHarness {
    name: "json",
    rotate_after_bytes: None,
});
