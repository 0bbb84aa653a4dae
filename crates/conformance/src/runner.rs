//! Turns a harness into named test trials (libtest-mimic), and dispatches crash children.
//!
//! libtest-mimic rather than `#[test]`: whether a case is supported is known only at run
//! time (from the engine's capabilities), and the standard harness cannot mark a test
//! ignored at run time. Here an unsupported case is listed as ignored with its reason,
//! and if forced to run (`--include-ignored`) it fails: it never shows as passed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use synclog_core::Durability;

use crate::cases::{self, crash, Case, Ctx, Need};
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
        Need::PowerCut => {
            let engine = ctx.harness.cross_process()
                && ctx.files
                && ctx.caps.strongest_durability() == Durability::PowerLoss;
            if !engine {
                (
                    false,
                    "a simulated power cut (it needs create_in, opening from another process and PowerLoss)",
                )
            } else if let Some(why) = crate::powercut::available() {
                // Required (CI): the case runs and fails saying why.
                if std::env::var_os(crate::powercut::REQUIRE_ENV).is_some() {
                    return None;
                }
                return Some(format!("no power-cut case on this machine: {why}"));
            } else {
                (true, "")
            }
        }
    };
    (!ok).then(|| format!("{name} does not support {why}"))
}

/// How long one case may take before it fails as hung: [`DEADLINE_ENV`] in seconds, or
/// [`DEFAULT_DEADLINE`].
pub fn case_deadline() -> Duration {
    std::env::var(DEADLINE_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_DEADLINE)
}

/// The environment variable that sets [`case_deadline`], in seconds.
pub const DEADLINE_ENV: &str = "SYNCLOG_CASE_DEADLINE_SECS";

/// How long a case may take by default: far above the slowest case on a slow machine (the
/// crash loops), far below "forever".
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

/// Opens a probe store to learn the engine's capabilities.
fn probe(rt: &tokio::runtime::Runtime, harness: Arc<dyn Harness>) -> Result<Ctx, String> {
    let caps = rt.block_on(async {
        let at = harness.create().await?;
        let store = harness.open(&at).await?;
        let caps = store.capabilities();
        store.close().await?;
        drop(store);
        harness.cleanup(&at).await?;
        let dir =
            tempfile::tempdir().map_err(|e| synclog_core::Error::io("making a temporary directory", e))?;
        let files = match harness.create_in(dir.path()).await {
            Ok(at) => {
                harness.cleanup(&at).await?;
                true
            }
            Err(synclog_core::Error::Unsupported { .. }) => false,
            Err(e) => return Err(e),
        };
        Ok::<_, synclog_core::Error>((caps, files))
    });
    match caps {
        Ok((caps, files)) => Ok(Ctx { harness, caps, files }),
        Err(e) => Err(format!("{}: cannot open a probe store: {e}", harness.name())),
    }
}

/// Runs one case with a deadline: `Err` with the panic's message, or saying it hung.
fn run_case(rt: &tokio::runtime::Runtime, case: &Case, ctx: Ctx, deadline: Duration) -> Result<(), String> {
    let run = case.run;
    let outcome = rt.block_on(async move {
        // A task of its own: a panic is caught as a failure, and the deadline can drop it.
        let task = tokio::spawn(run(ctx));
        let abort = task.abort_handle();
        let outcome = tokio::time::timeout(deadline, task).await;
        abort.abort();
        outcome
    });
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            Err(msg)
        }
        Ok(Err(e)) => Err(format!("the case's task ended without finishing: {e}")),
        Err(_) => Err(format!(
            "did not finish within {:.0} s ({DEADLINE_ENV}): the engine hangs, or a loop of the case never ends",
            deadline.as_secs_f64()
        )),
    }
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
    let ctx = match probe(&rt, harness) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = case_deadline();
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
                        run_case(&rt, &case, ctx, deadline).map_err(Failed::from)
                    })
                }
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let trials_gone = Arc::try_unwrap(rt);
    stop(trials_gone.ok());
    conclusion.exit_code()
}

/// Stops the suite's runtime without waiting for its threads: a case that hung past its
/// deadline inside a blocking section still holds one, and waiting would hang the suite.
fn stop(rt: Option<tokio::runtime::Runtime>) {
    if let Some(rt) = rt {
        rt.shutdown_background();
    }
}

/// How one case ended under [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed, with the message of its failed assertion (or that it hung).
    Failed(String),
    /// It did not run: the engine does not support what it needs, or it needs other
    /// processes (which only the suite's own test binary can start).
    Skipped(String),
}

/// Runs every case against `harness` in this process, each with `deadline`, and says how
/// each ended, as `("area::case", outcome)`; `Err` when no probe store opens. For checking
/// the suite itself (its tests run deliberately broken engines through it) and for tools;
/// an engine's tests use [`run`]. Cases that start other processes are skipped.
pub fn check<H: Harness>(harness: H, deadline: Duration) -> Result<Vec<(String, Outcome)>, String> {
    check_where(Arc::new(harness), "", false, deadline)
}

/// Like [`check`], but only the cases whose name contains `filter`, and the cases that
/// start other processes run too. Call it from `main` of a `harness = false` test target:
/// started as a crash child, that binary becomes the child here (and never returns). The
/// power-cut case's own test checks a deliberately broken engine this way.
pub fn check_cases<H: Harness>(
    harness: H,
    filter: &str,
    deadline: Duration,
) -> Result<Vec<(String, Outcome)>, String> {
    let harness: Arc<dyn Harness> = Arc::new(harness);
    if let Ok(address) = std::env::var(crash::CHILD_ENV) {
        runtime().block_on(crash::child_main(&*harness, &address));
    }
    check_where(harness, filter, true, deadline)
}

fn check_where(
    harness: Arc<dyn Harness>,
    filter: &str,
    children: bool,
    deadline: Duration,
) -> Result<Vec<(String, Outcome)>, String> {
    let rt = runtime();
    let ctx = probe(&rt, harness)?;
    let outcomes = cases::all()
        .into_iter()
        .filter(|case| format!("{}::{}", case.area, case.name).contains(filter))
        .map(|case| {
            let name = format!("{}::{}", case.area, case.name);
            let other_processes = !children
                && case
                    .needs
                    .iter()
                    .any(|n| matches!(n, Need::CrossProcess | Need::SharedProcesses | Need::PowerCut));
            let outcome = match case.needs.iter().find_map(|n| unsupported(*n, &ctx)) {
                Some(why) => Outcome::Skipped(why),
                None if other_processes => Outcome::Skipped("it starts other processes".into()),
                None => match run_case(&rt, &case, ctx.clone(), deadline) {
                    Ok(()) => Outcome::Passed,
                    Err(msg) => Outcome::Failed(msg),
                },
            };
            (name, outcome)
        })
        .collect();
    stop(Some(rt));
    Ok(outcomes)
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
/// In `tests/conformance.rs` of an engine (with `harness = false` for that target), with
/// the engine's harness in place of the reference engine's:
/// ```no_run
/// use synclog_conformance::memory::MemoryHarness;
///
/// synclog_conformance::conformance_main!(MemoryHarness);
/// ```
#[macro_export]
macro_rules! conformance_main {
    ($harness:expr) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run($harness)
        }
    };
}
