//! `synclog serve` against its baseline, side by side in one run: 64 concurrent clients
//! each appending one log at a time to a guarded SQLite + JSON-lines pair, over HTTP on
//! loopback (keep-alive) and in-process through `Guarded::append_batch`. The issue's
//! target: HTTP ≥ 0.5× the in-process records/s.
//!
//! `cargo bench --bench serve`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synclog::{Durability, Guarded, LogStore, NewLog, Status};

const CLIENTS: usize = 64;
const EACH: usize = 8;

struct Pair {
    guarded: Arc<Guarded>,
    _dir: tempfile::TempDir,
}

async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let p = format!("sqlite://{}", dir.path().join("p.db").display());
    let b = format!("json://{}", dir.path().join("b.jsonl").display());
    let guarded = Arc::new(synclog::open_guarded(&p, &b, Default::default()).await.unwrap());
    Pair { guarded, _dir: dir }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("serve_64_clients");
    group.throughput(Throughput::Elements((CLIENTS * EACH) as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));

    let inproc = rt.block_on(pair());
    group.bench_function("in_process_guarded", |b| {
        b.iter_custom(|iters| {
            let g = inproc.guarded.clone();
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..CLIENTS)
                        .map(|_| {
                            let g = g.clone();
                            tokio::spawn(async move {
                                for _ in 0..EACH {
                                    g.append_batch(
                                        vec![NewLog::new("bench", Status::Succeeded)],
                                        Durability::PowerLoss,
                                    )
                                    .await
                                    .unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });

    let served = rt.block_on(pair());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1/logs", listener.local_addr().unwrap());
    let store: Arc<dyn LogStore> = served.guarded.clone();
    let server = rt.spawn(synclog_server::serve(
        listener,
        store,
        Some(served.guarded.clone()),
        synclog_server::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    group.bench_function("http_loopback_keepalive", |b| {
        b.iter_custom(|iters| {
            let (client, url) = (client.clone(), url.clone());
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..CLIENTS)
                        .map(|_| {
                            let (client, url) = (client.clone(), url.clone());
                            tokio::spawn(async move {
                                for _ in 0..EACH {
                                    let r = client
                                        .post(&url)
                                        .body(r#"{"job":"bench","status":"succeeded"}"#)
                                        .send()
                                        .await
                                        .unwrap();
                                    assert_eq!(r.status().as_u16(), 201);
                                    r.bytes().await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
    rt.block_on(served.guarded.close()).unwrap();
    rt.block_on(inproc.guarded.close()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
