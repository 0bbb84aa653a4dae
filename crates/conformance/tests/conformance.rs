//! The suite against the in-memory reference engine.
synclog_conformance::conformance_main!(synclog_conformance::memory::MemoryHarness);
