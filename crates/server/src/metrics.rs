//! `GET /metrics`: Prometheus text (OpenMetrics) of appends, groups, commit latency, the
//! pair's counters, the last verify, and per job the last status, the age of the last
//! success and the failures since.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use synclog_core::guarded::Copies;
use synclog_core::query::Summary;

use crate::app::VerifyOutcome;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The counters the server keeps (cheap to clone: every metric is shared).
#[derive(Clone)]
pub struct Metrics {
    appended: Family<Labels, Counter>,
    append_failures: Family<Labels, Counter>,
    request_logs: Histogram,
    commit_seconds: Histogram,
    one_copy: Counter,
    refused_connections: Counter,
    group_logs: Histogram,
    group_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            appended: Family::default(),
            append_failures: Family::default(),
            request_logs: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            one_copy: Counter::default(),
            refused_connections: Counter::default(),
            group_logs: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            group_seconds: Histogram::new(exponential_buckets(0.000_125, 2.0, 16)),
        }
    }
}

impl Metrics {
    /// An append request of `logs` logs that took `elapsed` and stored `fresh` new records
    /// (the rest were repeats); `copies`: where a guarded pair holds them.
    pub fn appended(&self, logs: usize, fresh: usize, elapsed: Duration, copies: Option<Copies>) {
        self.request_logs.observe(logs as f64);
        self.commit_seconds.observe(elapsed.as_secs_f64());
        let label = |v: &str| vec![("outcome".to_string(), v.to_string())];
        self.appended.get_or_create(&label("stored")).inc_by(fresh as u64);
        self.appended
            .get_or_create(&label("repeat"))
            .inc_by((logs - fresh.min(logs)) as u64);
        if copies.is_some_and(|c| !(c.primary && c.backup)) {
            self.one_copy.inc();
        }
    }

    /// What the guarded pair calls for each group it acknowledges (see
    /// [`synclog_core::guarded::Guarded::observe_groups`]): its size and commit time go to
    /// the `pair_group_logs` and `pair_group_commit_seconds` histograms.
    pub fn group_observer(&self) -> synclog_core::guarded::GroupObserver {
        let (logs, seconds) = (self.group_logs.clone(), self.group_seconds.clone());
        std::sync::Arc::new(move |n: usize, took: Duration| {
            logs.observe(n as f64);
            seconds.observe(took.as_secs_f64());
        })
    }

    /// A connection answered 503 and closed: the connection limit was reached.
    pub fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    /// An append request that failed with error `kind` (nothing acknowledged).
    pub fn append_failed(&self, kind: &str) {
        self.append_failures
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
    }

    /// The text of one scrape: the counters so far, `pair` (the guarded store's counters,
    /// if it is one), the last verify, and per job figures from `summary`.
    pub fn render(
        &self,
        pair: Option<synclog_core::guarded::GuardStats>,
        verify: Option<&VerifyOutcome>,
        summary: Option<&Summary>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let mut r = Registry::with_prefix("synclog");
        r.register(
            "appended_logs",
            "Logs acknowledged by the write endpoints (logs, starts, finishes, abandons), by outcome (stored, repeat)",
            self.appended.clone(),
        );
        r.register(
            "append_failures",
            "Write requests (appends, starts, finishes, abandons) refused or failed, by error kind: bad input, auth, limits and the store's failures (nothing acknowledged)",
            self.append_failures.clone(),
        );
        r.register(
            "append_request_logs",
            "Logs per append request",
            self.request_logs.clone(),
        );
        r.register(
            "append_commit_seconds",
            "Time from the request's body to its durable, read-back receipt",
            self.commit_seconds.clone(),
        );
        r.register(
            "refused_connections",
            "Connections refused at the connection limit (answered 503 and closed, or closed unanswered beyond 32 refusals at once)",
            self.refused_connections.clone(),
        );
        r.register(
            "receipts_one_copy",
            "Append receipts durable in one copy of the pair only",
            self.one_copy.clone(),
        );
        if let Some(s) = pair {
            let gauge = |v: u64| {
                let g: Gauge = Gauge::default();
                g.set(v as i64);
                g
            };
            let counter = |v: u64| {
                let c: Counter = Counter::default();
                c.inc_by(v);
                c
            };
            r.register(
                "pair_groups",
                "Commit groups the pair wrote (requests share them: logs / groups is the mean group)",
                counter(s.groups),
            );
            r.register("pair_logs", "Logs the pair wrote", counter(s.logs));
            r.register(
                "pair_group_logs",
                "Logs per commit group the pair wrote, since the server started",
                self.group_logs.clone(),
            );
            r.register(
                "pair_group_commit_seconds",
                "Time each commit group held the pair (key lookups, both copies' writes and syncs, read-backs), since the server started",
                self.group_seconds.clone(),
            );
            let busy: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
            busy.inc_by(s.commit_nanos as f64 / 1e9);
            r.register(
                "pair_commit_seconds",
                "Time the pair spent writing the groups it acknowledged (its rate is the share of time the pair is busy)",
                busy,
            );
            r.register(
                "pair_restored_records",
                "Records restored into the primary from the backup",
                counter(s.restored_to_primary),
            );
            r.register(
                "pair_copied_records",
                "Records copied into the backup from the primary",
                counter(s.copied_to_backup),
            );
            r.register(
                "pair_primary_failures",
                "Groups the primary failed to take",
                counter(s.primary_failures),
            );
            r.register(
                "pair_backup_failures",
                "Groups the backup failed to take",
                counter(s.backup_failures),
            );
            r.register(
                "pair_damaged_served",
                "Reads served from the other copy because one held the record damaged",
                counter(s.damaged_served),
            );
            r.register(
                "pair_pending_primary",
                "Records waiting for the primary",
                gauge(s.pending_primary),
            );
            r.register(
                "pair_pending_backup",
                "Records waiting for the backup",
                gauge(s.pending_backup),
            );
        }
        if let Some(v) = verify {
            let ok: Gauge = Gauge::default();
            ok.set(i64::from(v.clean));
            r.register(
                "last_verify_ok",
                "1 when the last verify found every record intact",
                ok,
            );
            let at: FloatGauge = Gauge::default();
            at.set(v.at.timestamp_millis() as f64 / 1000.0);
            r.register(
                "last_verify_timestamp_seconds",
                "When the last verify finished",
                at,
            );
        }
        if let Some(summary) = summary {
            let status: Family<Labels, Gauge> = Family::default();
            let age: Family<Labels, FloatGauge> = Family::default();
            let failures: Family<Labels, Gauge> = Family::default();
            for j in &summary.jobs {
                let job = vec![("job".to_string(), j.job.clone())];
                if let Some(last) = j.latest_finished.as_ref() {
                    let mut l = job.clone();
                    l.push(("status".to_string(), last.status.as_str().to_string()));
                    status.get_or_create(&l).set(1);
                }
                if let Some(ok) = j.latest_success.as_ref() {
                    let secs = (now - ok.recorded_at).num_milliseconds() as f64 / 1000.0;
                    age.get_or_create(&job).set(secs.max(0.0));
                }
                failures.get_or_create(&job).set(j.consecutive_failures as i64);
            }
            r.register("job_last_status", "1 for each job's last finished status", status);
            r.register(
                "job_last_success_age_seconds",
                "Seconds since each job's last success",
                age,
            );
            r.register(
                "job_consecutive_failures",
                "Failed or abandoned runs since each job's last success",
                failures,
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}
