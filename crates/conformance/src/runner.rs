//! Turns a harness into named test trials (libtest-mimic), and dispatches crash children.
//!
//! libtest-mimic rather than `#[test]`: whether a case is supported is known only at run
//! time (from the engine's capabilities), and the standard harness cannot mark a test
//! ignored at run time. Here an unsupported case is listed as ignored with its reason,
//! and if forced to run (`--include-ignored`) it fails: it never shows as passed.

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::cases::{self, crash, Ctx, Need};
use crate::harness::Harness;

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            std::process::exit(2)
        }
    }
}

/// Why a case cannot run on this engine, or `None` when it can.
fn unsupported(need: Need, ctx: &Ctx) -> Option<String> {
    let faults = ctx.harness.faults();
    let name = ctx.harness.name();
    let (ok, why) = match need {
        Need::CrossProcess => (ctx.harness.cross_process(), "opening from another process"),
        Need::CorruptHook => (faults.corrupt_record, "the corrupt_record fault hook"),
        Need::RemoveHook => (faults.remove_record, "the remove_record fault hook"),
        Need::DestroyHook => (faults.destroy, "the destroy fault hook"),
        Need::Checkpoint => (ctx.caps.checkpoint, "checkpoints"),
        Need::Repair => (ctx.caps.repair, "replacing damaged records (repair)"),
        Need::Prune => (ctx.caps.prune, "pruning (retention)"),
        Need::SharedProcesses => (
            ctx.harness.cross_process() && ctx.caps.multi_process,
            "writing from another process while this one has the store open",
        ),
    };
    (!ok).then(|| format!("{name} does not support {why}"))
}

/// Runs the whole suite against `harness` and returns the process exit code.
/// Call it from `main` of a `harness = false` test target (see [`crate::conformance_main`]).
pub fn run<H: Harness>(harness: H) -> ExitCode {
    let rt = Arc::new(runtime());
    let harness: Arc<dyn Harness> = Arc::new(harness);
    if let Ok(address) = std::env::var(crash::CHILD_ENV) {
        rt.block_on(crash::child_main(&*harness, &address));
    }
    let args = Arguments::from_args();
    let caps = rt.block_on(async {
        let at = harness.create().await?;
        let store = harness.open(&at).await?;
        let caps = store.capabilities();
        store.close().await?;
        drop(store);
        harness.cleanup(&at).await?;
        Ok::<_, synclog_core::Error>(caps)
    });
    let caps = match caps {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: cannot open a probe store: {e}", harness.name());
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx { harness, caps };
    let trials = cases::all()
        .into_iter()
        .map(|case| {
            let name = format!("{}::{}", case.area, case.name);
            let reason = case.needs.iter().find_map(|n| unsupported(*n, &ctx));
            match reason {
                Some(why) => {
                    let kind = format!("unsupported: {why}");
                    Trial::test(name, move || Err(Failed::from(format!("unsupported: {why}"))))
                        .with_kind(kind)
                        .with_ignored_flag(true)
                }
                None => {
                    let ctx = ctx.clone();
                    let rt = rt.clone();
                    Trial::test(name, move || {
                        rt.block_on((case.run)(ctx));
                        Ok(())
                    })
                }
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Lists every case as ignored with `reason` (an engine whose server is not configured):
/// shown as skipped, never as passed.
pub fn run_skipped(reason: &str) -> ExitCode {
    let args = Arguments::from_args();
    let trials = cases::all()
        .into_iter()
        .map(|case| {
            let why = reason.to_string();
            Trial::test(format!("{}::{}", case.area, case.name), move || {
                Err(Failed::from(format!("skipped: {why}")))
            })
            .with_kind(format!("skipped: {reason}"))
            .with_ignored_flag(true)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Turns a harness into the suite's test binary: one named test per case.
///
/// In `tests/conformance.rs` of an engine (with `harness = false` for that target):
/// ```ignore
/// synclog_conformance::conformance_main!(MyHarness::new());
/// ```
#[macro_export]
macro_rules! conformance_main {
    ($harness:expr) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run($harness)
        }
    };
}
