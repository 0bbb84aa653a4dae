//! Criterion: opening a guarded pair of 100,000 records read-only and reading its newest
//! 20, against the same on its SQLite copy alone (in-process; `synclog bench --only
//! deployment` times whole processes). `cargo bench --bench open`.

use criterion::{criterion_group, criterion_main, Criterion};
use synclog::bench::DeploymentPair;
use synclog::{GuardedOptions, LogStore, OpenOptions, Scan};

fn open_newest_20(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a benchmark directory");
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pair = DeploymentPair::new(tmp.path());
    rt.block_on(pair.build(100_000)).expect("building the pair");
    let (p, b) = (pair.primary_url(), pair.backup_url());
    let ro = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let mut g = c.benchmark_group("open_newest_20_of_100k");
    g.sample_size(10);
    for guarded in [true, false] {
        g.bench_function(if guarded { "guarded" } else { "sqlite_alone" }, |bench| {
            bench.iter(|| {
                rt.block_on(async {
                    let s: std::sync::Arc<dyn LogStore> = match guarded {
                        true => std::sync::Arc::new(
                            synclog::open_guarded_with(&p, &b, GuardedOptions::default(), &ro)
                                .await
                                .expect("open"),
                        ),
                        false => synclog::open_url_with(&p, &ro).await.expect("open"),
                    };
                    let newest = Scan {
                        limit: 20,
                        descending: true,
                        ..Scan::default()
                    };
                    assert_eq!(s.scan(&newest).await.expect("scan").len(), 20);
                    s.close().await.expect("close");
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, open_newest_20);
criterion_main!(benches);
