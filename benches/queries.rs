//! Criterion: the questions of `synclog bench --only queries` on 100,000 logs, answered by
//! SQLite from its indexes against the JSON-lines store reading its records (what an engine
//! without secondary indexes does). `cargo bench --bench queries`.

use criterion::{criterion_group, criterion_main, Criterion};
use synclog::query::{AttrEq, TimeRange};
use synclog::{Filter, LogStore, Scan, Status};

fn queries(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a benchmark directory");
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let now = chrono::Utc::now();
    let stores: Vec<(&str, std::sync::Arc<dyn LogStore>)> = rt.block_on(async {
        let mut out = Vec::new();
        for (name, url) in [
            ("sqlite", format!("sqlite://{}/q.db", tmp.path().display())),
            ("json", format!("json://{}/q.jsonl", tmp.path().display())),
        ] {
            let store = synclog::open_url(&url).await.expect("open");
            synclog::bench::fill_query_store(&*store, 100_000, now, &|_| {})
                .await
                .expect("fill");
            out.push((name, store));
        }
        out
    });
    let failed_day = Scan {
        filter: Filter::status(Status::Failed).started(TimeRange::since(now - chrono::Duration::hours(24))),
        limit: 50,
        descending: true,
        ..Scan::default()
    };
    let tenant = Scan {
        filter: Filter::default().attr(AttrEq::new("tenant", "t-7")),
        limit: 50,
        descending: true,
        ..Scan::default()
    };
    let week = Filter::status(Status::Failed).recorded(TimeRange::since(now - chrono::Duration::days(7)));
    let mut g = c.benchmark_group("queries_of_100k");
    g.sample_size(10);
    for (name, store) in &stores {
        g.bench_function(format!("{name}/newest_50_failed_in_24h"), |b| {
            b.iter(|| rt.block_on(store.scan(&failed_day)).expect("scan"))
        });
        g.bench_function(format!("{name}/newest_50_of_a_tenant"), |b| {
            b.iter(|| rt.block_on(store.scan(&tenant)).expect("scan"))
        });
        g.bench_function(format!("{name}/count_failed_in_a_week"), |b| {
            b.iter(|| rt.block_on(store.count(&week)).expect("count"))
        });
        g.bench_function(format!("{name}/summary_of_100_jobs"), |b| {
            b.iter(|| rt.block_on(store.summary(&Filter::default())).expect("summary"))
        });
    }
    g.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
