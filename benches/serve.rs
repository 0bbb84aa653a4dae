//! `synclog serve` against its baselines, side by side in one run (`cargo bench --bench
//! serve`):
//! - `serve_64_clients`: 64 concurrent clients each appending one log at a time to a
//!   guarded SQLite + JSON-lines pair, in-process through `Guarded::append_batch`, over
//!   HTTP on loopback (keep-alive), and over HTTP with 1,000 idle event streams open
//!   (following a job nobody appends to). Targets: HTTP ≥ 0.5× in-process; the idle
//!   streams cost ≤ 10%. Each request's latency is kept; p50 and p99 are printed at the
//!   end.
//! - `dashboard`: `GET /` with 100 jobs over `SYNCLOG_BENCH_DASHBOARD_LOGS` logs (default
//!   1,000,000), beside `GET /v1/summary` over the same store. Target: ≤ 50 ms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synclog::{Durability, Guarded, LogStore, NewLog, Status};

const CLIENTS: usize = 64;
const EACH: usize = 8;
const IDLE_STREAMS: usize = 1000;

struct Served {
    guarded: Arc<Guarded>,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn pair() -> (Arc<Guarded>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = format!("sqlite://{}", dir.path().join("p.db").display());
    let b = format!("json://{}", dir.path().join("b.jsonl").display());
    let guarded = Arc::new(synclog::open_guarded(&p, &b, Default::default()).await.unwrap());
    (guarded, dir)
}

async fn serve() -> Served {
    let (guarded, dir) = pair().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store: Arc<dyn LogStore> = guarded.clone();
    let server = tokio::spawn(synclog_server::serve(
        listener,
        store,
        Some(guarded.clone()),
        synclog_server::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));
    Served {
        guarded,
        base,
        stop: Some(stop),
        server,
        _dir: dir,
    }
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap().unwrap();
        self.guarded.close().await.unwrap();
    }
}

type Latencies = Arc<Mutex<Vec<Duration>>>;

/// `CLIENTS` tasks, each running `one` `EACH` times; every call's latency into `lat`.
async fn round<F, Fut>(one: F, lat: &Latencies)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (one, lat) = (one.clone(), lat.clone());
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    let t = Instant::now();
                    one().await;
                    mine.push(t.elapsed());
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The pair's mean commit group since `before` (taken at `since`): its size, the time it
/// held the pair, and the share of the wall time the pair spent committing. With the pair
/// busy part of the time only, the rest is the round trip of the clients a group answered
/// (they send their next appends only then).
fn mean_group(name: &str, g: &Guarded, before: synclog::guarded::GuardStats, since: Instant) {
    let wall = since.elapsed();
    let now = g.stats();
    let groups = (now.groups - before.groups).max(1);
    let busy = (now.commit_nanos - before.commit_nanos) as f64 / 1e9;
    println!(
        "groups {name}: {:.1} logs per commit group, {:.2} ms committing each, pair busy {:.0}% of {:.1} s",
        (now.logs - before.logs) as f64 / groups as f64,
        busy * 1e3 / groups as f64,
        busy * 100.0 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
}

fn percentiles(name: &str, lat: &Latencies) {
    let mut l = lat.lock().unwrap().clone();
    if l.is_empty() {
        return;
    }
    l.sort_unstable();
    let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
    println!(
        "latency {name}: p50 {:.2} ms, p99 {:.2} ms over {} appends",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        l.len()
    );
}

/// One keep-alive HTTP/1.1 connection per client (hyper's own client connection: the
/// clients share the machine with the server, so they should cost it little).
type Conn = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Conn {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// `CLIENTS` connections to the server at `base` (`http://ADDR`).
async fn connect_all(base: &str) -> Vec<Conn> {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut c = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        c.push(connect(addr).await);
    }
    c
}

/// Benchmarks `name`: rounds of [`http_round`] over `conns`; the pair's mean commit group
/// printed after.
fn bench_http(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    served: &Served,
    lat: &Latencies,
) {
    let mut conns = rt.block_on(connect_all(&served.base));
    let (before, since) = (served.guarded.stats(), Instant::now());
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    http_round(&mut conns, lat).await;
                }
                start.elapsed()
            })
        })
    });
    mean_group(name, &served.guarded, before, since);
}

const BODY: &[u8] = br#"{"job":"bench","status":"succeeded"}"#;

/// `CLIENTS` clients, each on its own connection, each appending `EACH` logs one at a time.
async fn http_round(conns: &mut Vec<Conn>, lat: &Latencies) {
    let tasks: Vec<_> = conns
        .drain(..)
        .map(|mut conn| {
            let lat = lat.clone();
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(EACH);
                for _ in 0..EACH {
                    let t = Instant::now();
                    conn.ready().await.unwrap();
                    let req = hyper::Request::post("/v1/logs")
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(BODY)))
                        .unwrap();
                    let resp = conn.send_request(req).await.unwrap();
                    assert_eq!(resp.status().as_u16(), 201);
                    http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
                    mine.push(t.elapsed());
                }
                lat.lock().unwrap().extend(mine);
                conn
            })
        })
        .collect();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("serve_64_clients");
    group.throughput(Throughput::Elements((CLIENTS * EACH) as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));

    let (inproc, _dir) = rt.block_on(pair());
    let lat_inproc: Latencies = Arc::default();
    let (before, since) = (inproc.stats(), Instant::now());
    group.bench_function("in_process_guarded", |b| {
        b.iter_custom(|iters| {
            let g = inproc.clone();
            rt.block_on(async {
                let one = move || {
                    let g = g.clone();
                    async move {
                        g.append_batch(
                            vec![NewLog::new("bench", Status::Succeeded)],
                            Durability::PowerLoss,
                        )
                        .await
                        .unwrap();
                    }
                };
                let start = Instant::now();
                for _ in 0..iters {
                    round(one.clone(), &lat_inproc).await;
                }
                start.elapsed()
            })
        })
    });

    mean_group("in_process_guarded", &inproc, before, since);
    let served = rt.block_on(serve());
    let lat_http: Latencies = Arc::default();
    bench_http(&mut group, "http_loopback_keepalive", &rt, &served, &lat_http);
    rt.block_on(served.stop());

    // The same on a fresh pair (a store as small as the one above started), with 1,000
    // streams open following a job nobody appends to: they share that job's channel of
    // the hub, which no batch reaches (a batch goes to the channels of the jobs in it).
    let served = rt.block_on(serve());
    let streams: Vec<reqwest::Response> = rt.block_on(async {
        let sse = reqwest::Client::new();
        let mut open = Vec::with_capacity(IDLE_STREAMS);
        for _ in 0..IDLE_STREAMS {
            let r = sse
                .get(format!("{}/v1/stream?job=nobody", served.base))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            open.push(r);
        }
        open
    });
    let lat_idle: Latencies = Arc::default();
    bench_http(
        &mut group,
        "http_loopback_keepalive_1000_idle_streams",
        &rt,
        &served,
        &lat_idle,
    );
    group.finish();
    drop(streams);
    percentiles("in_process_guarded", &lat_inproc);
    percentiles("http_loopback_keepalive", &lat_http);
    percentiles("http_loopback_keepalive_1000_idle_streams", &lat_idle);
    rt.block_on(served.stop());
    rt.block_on(inproc.close()).unwrap();
}

fn dashboard(c: &mut Criterion) {
    let logs: usize = std::env::var("SYNCLOG_BENCH_DASHBOARD_LOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let served = rt.block_on(serve());
    let fill = Instant::now();
    rt.block_on(async {
        let day = chrono::Duration::days(1);
        let now = chrono::Utc::now();
        let mut i = 0usize;
        while i < logs {
            let n = (logs - i).min(10_000);
            let batch = (i..i + n)
                .map(|k| {
                    let status = if k % 7 == 0 {
                        Status::Failed
                    } else {
                        Status::Succeeded
                    };
                    // Spread over the last 30 days, oldest first.
                    let at = now - day * 30 + (day * 30) * (k as i32) / (logs as i32);
                    NewLog::new(format!("job-{:03}", k % 100), status)
                        .started(at)
                        .counts(10, 9, 1)
                })
                .collect();
            served
                .guarded
                .append_batch(batch, Durability::Process)
                .await
                .unwrap();
            i += n;
        }
    });
    println!(
        "dashboard: {logs} logs of 100 jobs written in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group(format!("dashboard_{logs}_logs_100_jobs"));
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, path) in [("page", "/"), ("summary_api", "/v1/summary")] {
        let url = format!("{}{path}", served.base);
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    r.bytes().await.unwrap()
                })
            })
        });
    }
    group.finish();
    rt.block_on(served.stop());
}

criterion_group!(benches, appends, dashboard);
criterion_main!(benches);
