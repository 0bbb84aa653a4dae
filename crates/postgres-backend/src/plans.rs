//! Every statement the store sends is answered from an index, never a scan of `logs` or
//! `runs`: checked with `EXPLAIN` over a schema of 100,000 logs (40,000 of them in 10,000
//! runs, 10,000 with an idempotency key), the prepared statements under the generic plan
//! PostgreSQL switches to after their fifth run. A server is needed:
//! `SYNCLOG_TEST_POSTGRES_URL`; without it the test prints a notice and returns.

use synclog_core::{LogId, LogStore, RunScan, Status};
use tokio_postgres::NoTls;

use crate::sql::Sql;
use crate::{runs_query, PgOptions, PgStore};

/// 100,000 logs; each tenth id starts a run of 4 records (started, progress, progress,
/// then a terminal one, or progress for each hundredth run: still running), every log
/// `5 mod 10` has an idempotency key.
fn fill(s: &str) -> String {
    format!(
        "INSERT INTO {s}.logs (id, recorded_at, job, status, started_at, finished_at, items_seen, items_written,
                               items_failed, message, attrs, checksum, run_key, idempotency_key)
         OVERRIDING SYSTEM VALUE
         SELECT g, now(), 'job-' || ((g / 10) % 50),
                CASE WHEN g % 10 >= 4 THEN 'succeeded'
                     WHEN g % 10 = 0 THEN 'started'
                     WHEN g % 10 IN (1, 2) THEN 'progress'
                     WHEN (g / 10) % 100 = 0 THEN 'progress'
                     ELSE (ARRAY['succeeded', 'failed', 'partial', 'abandoned'])[1 + (g / 10) % 4] END,
                timestamptz '2025-01-01' + ((g / 10) || ' minutes')::interval, NULL, 1, 1, 0, 'm', '{{}}', 0,
                CASE WHEN g % 10 < 4 THEN 'run-' || (g / 10) END,
                CASE WHEN g % 10 = 5 THEN 'ik-' || g END
         FROM generate_series(10, 100009) g;
         INSERT INTO {s}.meta (key, value) VALUES ('high_water', 100009)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
         ANALYZE {s}.logs;
         ANALYZE {s}.runs;"
    )
}

/// The plan's lines that scan `logs` or `runs` whole.
fn scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|l| l.contains("Seq Scan on logs") || l.contains("Seq Scan on runs"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_answered_from_an_index() {
    let url = match std::env::var("SYNCLOG_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; skipping this PostgreSQL test");
            return;
        }
    };
    let schema = format!("synclog_plans_{}_{}", std::process::id(), fastrand::u32(..));
    let store = PgStore::connect(
        &url,
        PgOptions {
            schema: schema.clone(),
            pool_size: 1,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let s = format!("\"{schema}\"");
    client.batch_execute(&fill(&s)).await.unwrap();
    let sql = Sql::new(&schema);
    let mut failures = Vec::new();

    // Runs queries go as unnamed statements: planned with their values.
    let cutoff = chrono::DateTime::parse_from_rfc3339("2025-01-20T00:00:00Z")
        .unwrap()
        .to_utc();
    let id = |i: u64| LogId::new(i);
    let run_scans = [
        RunScan::default(),
        RunScan {
            descending: true,
            limit: 50,
            ..RunScan::default()
        },
        RunScan {
            after: id(50_000),
            ..RunScan::default()
        },
        RunScan {
            job: Some("job-7".into()),
            ..RunScan::default()
        },
        RunScan {
            job: Some("job-7".into()),
            before: id(90_000),
            descending: true,
            limit: 10,
            ..RunScan::default()
        },
        RunScan {
            unfinished: true,
            ..RunScan::default()
        },
        RunScan::stale(cutoff),
        RunScan {
            status: Some(Status::Failed),
            ..RunScan::default()
        },
        RunScan {
            status: Some(Status::Progress),
            job: Some("job-0".into()),
            ..RunScan::default()
        },
    ];
    for scan in &run_scans {
        let (text, params) = runs_query(&sql, scan).unwrap();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {text}"), &refs)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !scans(&plan).is_empty() {
            failures.push(format!("runs {scan:?}:\n{}", plan.join("\n")));
        }
        assert!(
            !store.runs(scan).await.unwrap().is_empty() || scan.status.is_some(),
            "{scan:?}"
        );
    }

    // The writer's and the readers' prepared statements, under their generic plans.
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let one_row = "ARRAY[200000]::bigint[], ARRAY[now()], ARRAY['j'], ARRAY['succeeded'], ARRAY[now()], \
                   ARRAY[NULL::timestamptz], ARRAY[1]::bigint[], ARRAY[1]::bigint[], ARRAY[1]::bigint[], ARRAY['m'], \
                   ARRAY['{}'], ARRAY[1]::bigint[], ARRAY['run-7'], ARRAY['ik-new']";
    let prepared = [
        ("insert", sql.insert.clone(), format!("{one_row}, 200000")),
        ("import", sql.import.clone(), one_row.to_string()),
        ("next_id", sql.next_id.clone(), String::new()),
        ("last_id", sql.last_id.clone(), String::new()),
        ("get", sql.get.clone(), "5".into()),
        ("page", sql.page.clone(), "500, 1000".into()),
        ("id_checksums", sql.id_checksums.clone(), "500, 1000".into()),
        (
            "checksums_of",
            sql.checksums_of.clone(),
            "ARRAY[5, 6]::bigint[]".into(),
        ),
        (
            "by_idempotency_keys",
            sql.by_idempotency_keys.clone(),
            "ARRAY['ik-55', 'ik-65']".into(),
        ),
        (
            "by_idempotency_key",
            sql.by_idempotency_key.clone(),
            "'ik-55'".into(),
        ),
        (
            "run_ends",
            sql.run_ends.clone(),
            "ARRAY['run-5', 'run-9', 'none']".into(),
        ),
        ("run_records", sql.run_records.clone(), "'run-5'".into()),
    ];
    for (name, text, args) in prepared {
        client
            .batch_execute(&format!("PREPARE plan_{name} AS {text}"))
            .await
            .unwrap();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({args})")
        };
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE plan_{name}{args}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !scans(&plan).is_empty() {
            failures.push(format!("{name}:\n{}", plan.join("\n")));
        }
    }
    store.close().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "whole-table scans:\n\n{}",
        failures.join("\n\n")
    );
}
