//! Criterion benchmarks: each synclog figure next to its raw baseline, on the same disk,
//! in the same run. The measurements are `synclog::bench`'s, shared with `synclog bench`.
//!
//! `cargo bench --bench engines` (set `SYNCLOG_BENCH_DIR` to measure another disk;
//! `SYNCLOG_BENCH_POSTGRES_URL` adds PostgreSQL). Throughput is in records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use synclog::bench::{self, Timing};
use synclog::LogStore;

const APPENDS: u64 = 200;
const EACH: u64 = 50;
const RECORDS: u64 = 100_000;

fn dir() -> (tempfile::TempDir, PathBuf) {
    let base = std::env::var_os("SYNCLOG_BENCH_DIR").map(PathBuf::from);
    let tmp = match base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("a benchmark directory");
    let path = tmp.path().to_path_buf();
    (tmp, path)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Opens the store at `url`.
fn open(rt: &tokio::runtime::Runtime, url: &str) -> Arc<dyn LogStore> {
    rt.block_on(synclog::open_url(url))
        .unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Runs `f` once per batch of `iters` and reports the time per `ops` of its measurement.
fn per_op(iters: u64, mut f: impl FnMut() -> Timing) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = f();
        total += t.elapsed / t.ops.max(1) as u32;
    }
    total
}

fn one_writer(c: &mut Criterion) {
    let (_tmp, path) = dir();
    let rt = rt();
    let mut g = c.benchmark_group("one_writer_power_loss");
    g.sample_size(10).throughput(Throughput::Elements(1));
    g.bench_function("raw_fdatasync_loop", |b| {
        b.iter_custom(|iters| {
            per_op(iters, || {
                bench::raw_fdatasync_loop(&path, APPENDS).expect("raw loop")
            })
        })
    });
    // The raw baselines stay open across samples, as the engines' stores do.
    let mut raw_sqlite = bench::RawSqlite::open(&path).expect("raw rusqlite");
    g.bench_function("raw_rusqlite_one_row_per_tx", |b| {
        b.iter_custom(|iters| per_op(iters, || raw_sqlite.run(APPENDS).expect("raw rusqlite")))
    });
    drop(raw_sqlite);
    let mut raw_sled = bench::RawSled::open(&path).expect("raw sled");
    g.bench_function("raw_sled_insert_flush", |b| {
        b.iter_custom(|iters| per_op(iters, || raw_sled.run(APPENDS).expect("raw sled")))
    });
    drop(raw_sled);
    for engine in ["sqlite", "json", "sled"] {
        let store = open(&rt, &format!("{engine}://{}/one.{engine}", path.display()));
        g.bench_with_input(BenchmarkId::new("synclog", engine), &store, |b, store| {
            b.iter_custom(|iters| {
                per_op(iters, || {
                    rt.block_on(bench::one_appender(&**store, APPENDS))
                        .expect("append")
                })
            })
        });
        rt.block_on(store.close()).expect("close");
    }
    g.finish();
}

fn concurrent(c: &mut Criterion) {
    let (_tmp, path) = dir();
    let rt = rt();
    let mut g = c.benchmark_group("64_appenders_power_loss");
    g.sample_size(10).throughput(Throughput::Elements(1));
    for engine in ["sqlite", "json", "sled"] {
        let store = open(&rt, &format!("{engine}://{}/many.{engine}", path.display()));
        g.bench_with_input(BenchmarkId::new("synclog", engine), &store, |b, store| {
            b.iter_custom(|iters| {
                per_op(iters, || {
                    rt.block_on(bench::concurrent_appenders(store.clone(), 64, EACH))
                        .expect("append")
                })
            })
        });
        rt.block_on(store.close()).expect("close");
    }
    let guarded: Arc<dyn LogStore> = Arc::new(
        rt.block_on(bench::guarded_pair(&path, "guarded"))
            .expect("guarded"),
    );
    g.bench_function("guarded_sqlite_json_verified", |b| {
        b.iter_custom(|iters| {
            per_op(iters, || {
                rt.block_on(bench::concurrent_appenders(guarded.clone(), 64, EACH))
                    .expect("append")
            })
        })
    });
    rt.block_on(guarded.close()).expect("close");
    if let Ok(url) = std::env::var("SYNCLOG_BENCH_POSTGRES_URL") {
        g.bench_function("raw_tokio_postgres_autocommit", |b| {
            b.iter_custom(|iters| {
                per_op(iters, || {
                    rt.block_on(bench::raw_postgres_loop(&url, APPENDS))
                        .expect("raw pg")
                })
            })
        });
        let schema = format!("synclog_criterion_{}", std::process::id());
        let store = open(&rt, &format!("{url}?synclog_schema={schema}"));
        g.bench_function("synclog_postgres", |b| {
            b.iter_custom(|iters| {
                per_op(iters, || {
                    rt.block_on(bench::concurrent_appenders(store.clone(), 64, EACH))
                        .expect("append")
                })
            })
        });
        rt.block_on(store.close()).expect("close");
        rt.block_on(bench::drop_postgres_schema(&url, &schema))
            .expect("drop schema");
    }
    g.finish();
}

fn verify_and_restore(c: &mut Criterion) {
    let (_tmp, path) = dir();
    let rt = rt();
    let mut g = c.benchmark_group("bulk");
    g.sample_size(10).throughput(Throughput::Elements(RECORDS));
    let sqlite = open(&rt, &format!("sqlite://{}/bulk.db", path.display()));
    rt.block_on(bench::fill(&*sqlite, RECORDS)).expect("fill");
    g.bench_function("verify_sqlite", |b| {
        b.iter(|| rt.block_on(bench::verify_all(&*sqlite, RECORDS)).expect("verify"))
    });
    let json = open(&rt, &format!("json://{}/bulk.jsonl", path.display()));
    rt.block_on(bench::fill(&*json, RECORDS)).expect("fill");
    let mut round = 0;
    g.bench_function("restore_json_to_empty_sqlite", |b| {
        b.iter(|| {
            round += 1;
            let dst = open(&rt, &format!("sqlite://{}/restored-{round}.db", path.display()));
            rt.block_on(bench::restore_all(&*json, &*dst, RECORDS))
                .expect("restore");
            rt.block_on(dst.close()).expect("close");
        })
    });
    g.finish();
}

criterion_group!(benches, one_writer, concurrent, verify_and_restore);
criterion_main!(benches);
