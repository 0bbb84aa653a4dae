//! The SQL, for one configurable schema.
//!
//! # Schema versions (kept in `meta` under `schema_version`)
//!
//! 1. `logs` (identity ids, the record's fields, its checksum), `logs_by_job`, `meta`.
//! 2. Runs and idempotency keys: `logs.run_key` and `logs.idempotency_key` (NULL for
//!    records without them, so rows of version 1 need no backfill); a unique index on
//!    the idempotency key and one on `(run_key, id)`, both partial (keyed rows only); and
//!    `runs`, one row per run (its first and latest record, the latest status, whether
//!    it has ended, when it started), kept by row triggers on `logs` that fire only for
//!    rows with a run key, in the transaction of every insert (commit, import, repair),
//!    delete or update, in any id order.
//!
//! 3. Queries: indexes on `recorded_at`, `started_at`, `finished_at` and `(status, id)`,
//!    and on `runs (started_at)`;
//!    `attrs`, one row per top-level attribute of each record (key, the value's canonical
//!    JSON text, id), written by the engine in the statement that inserts the record (the
//!    canonical text is computed in Rust, so `1` and `1.0` stay different) and backfilled
//!    from Rust on upgrade; `job_stats`, one row per (job, status) with the count, sums of
//!    the counters, earliest start, latest record time and largest id, kept by statement
//!    triggers on `logs` (insert adds, delete and update recompute the groups they touch,
//!    truncate clears), so a summary reads at most 7 rows per job. Delete and update
//!    triggers also drop the `attrs` rows of the ids they touch (a record changed outside
//!    synclog then matches no attribute condition; `verify` reports it as damaged).
//!
//! 4. Retention: `prune_markers`, one row per prune (see [`synclog_core::retention`]): a
//!    sequence number giving their order, the marker's digest (unique: a marker is stored
//!    once) and its JSON (`PruneMarker::encode`), written in the transaction that deletes
//!    the records it covers.
//!
//! A new schema is made by the same steps as an upgraded one: the version 1 DDL, then
//! every step after it ([`Sql::upgrades`]), so both end up identical.

/// Statements for a schema (its name already validated and quoted).
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    /// Version 1, as the previous release created it (idempotent).
    pub create_v1: String,
    /// `(version, DDL)`: the step that brings a schema from `version - 1` to `version`.
    pub upgrades: Vec<(i64, String)>,
    /// Whether the `meta` table exists: `$1` is its qualified name.
    pub meta_exists: String,
    pub version: String,
    pub set_version: String,
    pub insert: String,
    pub import: String,
    pub checksums_of: String,
    pub get: String,
    pub page: String,
    pub last_id: String,
    pub id_checksums: String,
    pub sync: String,
    pub next_id: String,
    /// The records stored under any of the idempotency keys `$1`.
    pub by_idempotency_keys: String,
    /// The first and the latest record of each of the runs `$1`.
    pub run_ends: String,
    /// The record stored under idempotency key `$1`.
    pub by_idempotency_key: String,
    /// Every record of run `$1`, in id order.
    pub run_records: String,
    /// The head of a runs query (see `PgStore::runs`): filters and order follow.
    pub runs_head: String,
    pub table: String,
    /// `"schema".meta`, unquoted for `to_regclass`.
    pub meta_name: String,
    /// `"schema".attrs`.
    pub attrs: String,
    /// `"schema".job_stats`.
    pub job_stats: String,
    /// The NOTIFY channel of the store: its schema's name.
    pub channel: String,
    /// Records (id, attrs) from `$1` on, in id order, `$2` of them: the upgrade's backfill.
    pub attrs_page: String,
    /// Adds `attrs` rows: `$1` ids, `$2` keys, `$3` values.
    pub attrs_insert: String,
    /// The prune markers after sequence number `$1`, oldest first: `(seq, body)`.
    pub markers_after: String,
    /// Stores a marker (`$1` digest, `$2` body) unless one with its digest is stored: the
    /// rows inserted.
    pub marker_insert: String,
    /// Deletes the records whose ids are in the ranges `$1` (firsts) to `$2` (lasts).
    pub prune_delete: String,
    /// Whether any record is in the ranges `$1` (firsts) to `$2` (lasts).
    pub prune_left: String,
    /// Raises the high-water mark and the identity sequence to `$1` at least.
    pub raise_high_water: String,
    /// The tables a prune frees space in, for `VACUUM`.
    pub vacuum: String,
    /// The bytes of every table of the schema, with their indexes and TOAST: `$1` the
    /// schema's name.
    pub storage_bytes: String,
}

/// Every column, in the order `decode` reads them.
pub(crate) const COLUMNS: &str = "id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum, run_key, idempotency_key";

const UNNEST: &str = "SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], \
    $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], \
    $11::text[], $12::bigint[], $13::text[], $14::text[])";

/// Statuses that do not end a run (every other one does, see `Status::is_terminal`).
const RUNNING: &str = "('started', 'progress')";

/// `name` quoted as an identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Sql {
        let s = quote(schema);
        let table = format!("{s}.logs");
        let table_lit = table.replace('\'', "''");
        let channel_lit = schema.replace('\'', "''");
        Sql {
            create_v1: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {table} (
                     id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     recorded_at   timestamptz NOT NULL,
                     job           text        NOT NULL,
                     status        text        NOT NULL,
                     started_at    timestamptz NOT NULL,
                     finished_at   timestamptz,
                     items_seen    bigint      NOT NULL,
                     items_written bigint      NOT NULL,
                     items_failed  bigint      NOT NULL,
                     message       text        NOT NULL,
                     attrs         text        NOT NULL, -- canonical JSON text, byte-exact
                     checksum      bigint      NOT NULL  -- CRC-32C of the canonical encoding
                 );
                 CREATE INDEX IF NOT EXISTS logs_by_job ON {table} (job, id);
                 CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value bigint NOT NULL);"
            ),
            upgrades: vec![(2, v2(&s, &table)), (3, v3(&s, &table)), (4, v4(&s))],
            meta_exists: "SELECT to_regclass($1) IS NOT NULL".into(),
            meta_name: format!("{s}.meta"),
            version: format!("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
            set_version: format!(
                "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            // The insert also raises the high-water mark (in the transaction) and keeps the
            // identity sequence ahead of every id (for inserts made outside synclog).
            // $15 is the first id: rows go in only if no stored id and no high-water mark has
            // reached it (another process may have written since this writer last did).
            // `max(id)` is one probe of the primary key whatever $15 is; `NOT EXISTS (… id >=
            // $15)` was planned generically (the statement is prepared) as a scan of the
            // whole table.
            insert: format!(
                "WITH ins AS (INSERT INTO {table} ({COLUMNS}) OVERRIDING SYSTEM VALUE {UNNEST} \
                              WHERE coalesce((SELECT max(id) FROM {table}), 0) < $15 \
                              AND coalesce((SELECT value FROM {s}.meta WHERE key = 'high_water'), 0) < $15 \
                              RETURNING id), \
                 hw AS (INSERT INTO {s}.meta (key, value) SELECT 'high_water', max(id) FROM ins HAVING count(*) > 0 \
                        ON CONFLICT (key) DO UPDATE SET value = GREATEST({s}.meta.value, EXCLUDED.value)), \
                 sq AS (SELECT setval(pg_get_serial_sequence('{table_lit}', 'id'), max(id)) FROM ins HAVING count(*) > 0), \
                 at AS (INSERT INTO {s}.attrs (id, key, value) \
                        SELECT * FROM UNNEST($16::bigint[], $17::text[], $18::text[]) \
                        WHERE (SELECT count(*) FROM ins) > 0 ON CONFLICT DO NOTHING), \
                 nt AS (SELECT pg_notify('{channel_lit}', max(id)::text) FROM ins HAVING count(*) > 0) \
                 SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM sq), (SELECT count(*) FROM nt)"
            ),
            // Any conflict skips the row: an id already stored (the caller compares
            // checksums), or an idempotency key stored under another id (the caller refuses
            // the import).
            import: format!(
                "WITH ins AS (INSERT INTO {table} ({COLUMNS}) OVERRIDING SYSTEM VALUE {UNNEST} \
                              ON CONFLICT DO NOTHING RETURNING id), \
                 hw AS (INSERT INTO {s}.meta (key, value) SELECT 'high_water', max(id) FROM ins HAVING count(*) > 0 \
                        ON CONFLICT (key) DO UPDATE SET value = GREATEST({s}.meta.value, EXCLUDED.value)), \
                 sq AS (SELECT setval(pg_get_serial_sequence('{table_lit}', 'id'), max(id)) FROM ins HAVING count(*) > 0), \
                 at AS (INSERT INTO {s}.attrs (id, key, value) \
                        SELECT a.* FROM UNNEST($15::bigint[], $16::text[], $17::text[]) a (id, key, value) \
                        WHERE a.id IN (SELECT id FROM ins) ON CONFLICT DO NOTHING), \
                 nt AS (SELECT pg_notify('{channel_lit}', max(id)::text) FROM ins HAVING count(*) > 0) \
                 SELECT id, (SELECT count(*) FROM sq), (SELECT count(*) FROM nt) FROM ins"
            ),
            next_id: format!(
                "SELECT GREATEST(coalesce((SELECT max(id) FROM {table}), 0), \
                 coalesce((SELECT value FROM {s}.meta WHERE key = 'high_water'), 0)) + 1"
            ),
            checksums_of: format!("SELECT id, checksum FROM {table} WHERE id = ANY($1)"),
            get: format!("SELECT {COLUMNS} FROM {table} WHERE id = $1"),
            page: format!("SELECT {COLUMNS} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"),
            last_id: format!("SELECT max(id) FROM {table}"),
            id_checksums: format!("SELECT id, checksum FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"),
            sync: format!(
                "INSERT INTO {s}.meta (key, value) VALUES ('syncs', 1) \
                 ON CONFLICT (key) DO UPDATE SET value = {s}.meta.value + 1"
            ),
            // logs_by_idempotency_key.
            by_idempotency_keys: format!("SELECT {COLUMNS} FROM {table} WHERE idempotency_key = ANY($1::text[])"),
            by_idempotency_key: format!("SELECT {COLUMNS} FROM {table} WHERE idempotency_key = $1"),
            // Two descents of logs_by_run per run (its first and its last entry), then the
            // primary key.
            run_ends: format!(
                "SELECT {COLUMNS} FROM {table} WHERE id IN ( \
                     SELECT (SELECT x.id FROM {table} x WHERE x.run_key = k ORDER BY x.id LIMIT 1) \
                     FROM unnest($1::text[]) k \
                     UNION \
                     SELECT (SELECT x.id FROM {table} x WHERE x.run_key = k ORDER BY x.id DESC LIMIT 1) \
                     FROM unnest($1::text[]) k)"
            ),
            // logs_by_run.
            run_records: format!("SELECT {COLUMNS} FROM {table} WHERE run_key = $1 ORDER BY id"),
            // runs (by one of its indexes), its latest record by primary key, and the ids of
            // its records from logs_by_run, for the page only.
            runs_head: format!(
                "SELECT r.run_key, r.job, r.status, r.started_at, l.finished_at, l.recorded_at, \
                        l.items_seen, l.items_written, l.items_failed, l.message, \
                        ARRAY(SELECT x.id FROM {table} x WHERE x.run_key = r.run_key ORDER BY x.id) \
                 FROM {s}.runs r JOIN {table} l ON l.id = r.last_id WHERE true"
            ),
            attrs: format!("{s}.attrs"),
            job_stats: format!("{s}.job_stats"),
            channel: schema.to_string(),
            attrs_page: format!("SELECT id, attrs FROM {table} WHERE id >= $1 ORDER BY id LIMIT $2"),
            attrs_insert: format!(
                "INSERT INTO {s}.attrs (id, key, value) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING"
            ),
            markers_after: format!("SELECT seq, body FROM {s}.prune_markers WHERE seq > $1 ORDER BY seq"),
            marker_insert: format!(
                "INSERT INTO {s}.prune_markers (digest, body) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING"
            ),
            // One descent of the primary key per range.
            prune_delete: format!(
                "DELETE FROM {table} l USING UNNEST($1::bigint[], $2::bigint[]) r (lo, hi) \
                 WHERE l.id BETWEEN r.lo AND r.hi"
            ),
            prune_left: format!(
                "SELECT EXISTS (SELECT 1 FROM UNNEST($1::bigint[], $2::bigint[]) r (lo, hi) \
                 WHERE EXISTS (SELECT 1 FROM {table} l WHERE l.id BETWEEN r.lo AND r.hi))"
            ),
            raise_high_water: format!(
                "WITH hw AS (INSERT INTO {s}.meta (key, value) VALUES ('high_water', $1) \
                             ON CONFLICT (key) DO UPDATE SET value = GREATEST({s}.meta.value, EXCLUDED.value)) \
                 SELECT setval(q.s, $1) FROM (SELECT pg_get_serial_sequence('{table_lit}', 'id')::regclass s) q \
                 WHERE coalesce(pg_sequence_last_value(q.s), 0) < $1"
            ),
            vacuum: format!("VACUUM {table}, {s}.attrs, {s}.job_stats, {s}.runs"),
            storage_bytes: "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')"
                .into(),
            table,
        }
    }
}

/// Version 1 → 2: run and idempotency keys, the runs table and the triggers that keep it.
/// Idempotent (`IF NOT EXISTS`, `OR REPLACE`, triggers dropped and made again): run on a
/// schema that already has part of it (made by hand), it completes it.
fn v2(s: &str, table: &str) -> String {
    format!(
        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS run_key text, ADD COLUMN IF NOT EXISTS idempotency_key text;
         CREATE UNIQUE INDEX IF NOT EXISTS logs_by_idempotency_key ON {table} (idempotency_key)
             WHERE idempotency_key IS NOT NULL;
         CREATE INDEX IF NOT EXISTS logs_by_run ON {table} (run_key, id) WHERE run_key IS NOT NULL;
         CREATE TABLE IF NOT EXISTS {s}.runs (
             run_key    text        PRIMARY KEY,
             job        text        NOT NULL, -- the first record's
             first_id   bigint      NOT NULL,
             last_id    bigint      NOT NULL,
             status     text        NOT NULL, -- the latest record's
             finished   boolean     NOT NULL, -- the latest record is terminal
             started_at timestamptz NOT NULL  -- the first record's
         );
         CREATE INDEX IF NOT EXISTS runs_by_first_id ON {s}.runs (first_id);
         CREATE INDEX IF NOT EXISTS runs_by_job ON {s}.runs (job, first_id);
         CREATE INDEX IF NOT EXISTS runs_open_by_first_id ON {s}.runs (first_id) WHERE NOT finished;
         CREATE INDEX IF NOT EXISTS runs_open_by_start ON {s}.runs (started_at) WHERE NOT finished;

         -- A record joins its run: in any id order (imports, repairs).
         CREATE OR REPLACE FUNCTION {s}.runs_note() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             INSERT INTO {s}.runs AS r (run_key, job, first_id, last_id, status, finished, started_at)
             VALUES (NEW.run_key, NEW.job, NEW.id, NEW.id, NEW.status, NEW.status NOT IN {RUNNING}, NEW.started_at)
             ON CONFLICT (run_key) DO UPDATE SET
                 job        = CASE WHEN EXCLUDED.first_id < r.first_id THEN EXCLUDED.job ELSE r.job END,
                 started_at = CASE WHEN EXCLUDED.first_id < r.first_id THEN EXCLUDED.started_at ELSE r.started_at END,
                 first_id   = LEAST(r.first_id, EXCLUDED.first_id),
                 status     = CASE WHEN EXCLUDED.last_id > r.last_id THEN EXCLUDED.status ELSE r.status END,
                 finished   = CASE WHEN EXCLUDED.last_id > r.last_id THEN EXCLUDED.finished ELSE r.finished END,
                 last_id    = GREATEST(r.last_id, EXCLUDED.last_id);
             RETURN NULL;
         END
         $fn$;

         -- A run's row made again from its records (after a delete or an update).
         CREATE OR REPLACE FUNCTION {s}.runs_refresh(key text) RETURNS void LANGUAGE plpgsql AS $fn$
         DECLARE
             lo bigint;
             hi bigint;
         BEGIN
             SELECT min(id), max(id) INTO lo, hi FROM {table} WHERE run_key = key;
             IF lo IS NULL THEN
                 DELETE FROM {s}.runs WHERE run_key = key;
                 RETURN;
             END IF;
             INSERT INTO {s}.runs AS r (run_key, job, first_id, last_id, status, finished, started_at)
             SELECT key, f.job, lo, hi, l.status, l.status NOT IN {RUNNING}, f.started_at
             FROM {table} f, {table} l WHERE f.id = lo AND l.id = hi
             ON CONFLICT (run_key) DO UPDATE SET
                 job = EXCLUDED.job, first_id = EXCLUDED.first_id, last_id = EXCLUDED.last_id,
                 status = EXCLUDED.status, finished = EXCLUDED.finished, started_at = EXCLUDED.started_at;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.runs_forget() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             PERFORM {s}.runs_refresh(OLD.run_key);
             RETURN NULL;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.runs_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             IF OLD.run_key IS NOT NULL THEN
                 PERFORM {s}.runs_refresh(OLD.run_key);
             END IF;
             IF NEW.run_key IS NOT NULL AND NEW.run_key IS DISTINCT FROM OLD.run_key THEN
                 PERFORM {s}.runs_refresh(NEW.run_key);
             END IF;
             RETURN NULL;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.runs_clear() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             DELETE FROM {s}.runs;
             RETURN NULL;
         END
         $fn$;

         -- Rows without a run key fire nothing.
         DROP TRIGGER IF EXISTS logs_note_run ON {table};
         CREATE TRIGGER logs_note_run AFTER INSERT ON {table}
             FOR EACH ROW WHEN (NEW.run_key IS NOT NULL) EXECUTE FUNCTION {s}.runs_note();
         DROP TRIGGER IF EXISTS logs_forget_run ON {table};
         CREATE TRIGGER logs_forget_run AFTER DELETE ON {table}
             FOR EACH ROW WHEN (OLD.run_key IS NOT NULL) EXECUTE FUNCTION {s}.runs_forget();
         DROP TRIGGER IF EXISTS logs_change_run ON {table};
         CREATE TRIGGER logs_change_run AFTER UPDATE OF id, run_key, job, status, started_at ON {table}
             FOR EACH ROW WHEN (OLD.run_key IS NOT NULL OR NEW.run_key IS NOT NULL)
             EXECUTE FUNCTION {s}.runs_change();
         DROP TRIGGER IF EXISTS logs_clear_runs ON {table};
         CREATE TRIGGER logs_clear_runs AFTER TRUNCATE ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.runs_clear();"
    )
}

/// Version 2 → 3: the indexes filters are answered from, the attribute table (filled by
/// the engine: the upgrade backfills it from Rust after this DDL) and the per-job
/// aggregates with the triggers that keep them (backfilled here). Idempotent.
fn v3(s: &str, table: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS logs_by_recorded ON {table} (recorded_at);
         CREATE INDEX IF NOT EXISTS logs_by_started ON {table} (started_at);
         CREATE INDEX IF NOT EXISTS logs_by_finished ON {table} (finished_at) WHERE finished_at IS NOT NULL;
         CREATE INDEX IF NOT EXISTS logs_by_status ON {table} (status, id);
         CREATE INDEX IF NOT EXISTS logs_by_status_recorded ON {table} (status, recorded_at);
         CREATE INDEX IF NOT EXISTS runs_by_start ON {s}.runs (started_at);
         CREATE TABLE IF NOT EXISTS {s}.attrs (
             key   text   NOT NULL,
             value text   NOT NULL, -- the value's canonical JSON text
             id    bigint NOT NULL,
             PRIMARY KEY (key, value, id)
         );
         CREATE INDEX IF NOT EXISTS attrs_by_id ON {s}.attrs (id);
         CREATE TABLE IF NOT EXISTS {s}.job_stats (
             job           text        NOT NULL,
             status        text        NOT NULL,
             n             bigint      NOT NULL,
             items_seen    numeric     NOT NULL,
             items_written numeric     NOT NULL,
             items_failed  numeric     NOT NULL,
             first_started timestamptz NOT NULL,
             last_recorded timestamptz NOT NULL,
             last_id       bigint      NOT NULL,
             PRIMARY KEY (job, status)
         );

         -- Inserted rows (commit, import, repair) add to their groups.
         CREATE OR REPLACE FUNCTION {s}.stats_add() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             INSERT INTO {s}.job_stats AS t
             SELECT job, status, count(*), sum(items_seen), sum(items_written), sum(items_failed),
                    min(started_at), max(recorded_at), max(id)
             FROM new_rows GROUP BY job, status
             ON CONFLICT (job, status) DO UPDATE SET
                 n = t.n + EXCLUDED.n,
                 items_seen = t.items_seen + EXCLUDED.items_seen,
                 items_written = t.items_written + EXCLUDED.items_written,
                 items_failed = t.items_failed + EXCLUDED.items_failed,
                 first_started = LEAST(t.first_started, EXCLUDED.first_started),
                 last_recorded = GREATEST(t.last_recorded, EXCLUDED.last_recorded),
                 last_id = GREATEST(t.last_id, EXCLUDED.last_id);
             RETURN NULL;
         END
         $fn$;

         -- The groups (job, status) named by `groups` made again from the records.
         CREATE OR REPLACE FUNCTION {s}.stats_refresh(groups jsonb) RETURNS void LANGUAGE plpgsql AS $fn$
         BEGIN
             DELETE FROM {s}.job_stats t USING jsonb_to_recordset(groups) g (job text, status text)
             WHERE t.job = g.job AND t.status = g.status;
             INSERT INTO {s}.job_stats
             SELECT l.job, l.status, count(*), sum(l.items_seen), sum(l.items_written), sum(l.items_failed),
                    min(l.started_at), max(l.recorded_at), max(l.id)
             FROM {table} l JOIN (SELECT DISTINCT * FROM jsonb_to_recordset(groups) g (job text, status text)) g
                  ON l.job = g.job AND l.status = g.status
             GROUP BY l.job, l.status;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.stats_forget() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             DELETE FROM {s}.attrs WHERE id IN (SELECT id FROM old_rows);
             PERFORM {s}.stats_refresh((SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('job', job, 'status', status)), '[]') FROM old_rows));
             RETURN NULL;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.stats_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             DELETE FROM {s}.attrs WHERE id IN (SELECT id FROM old_rows UNION SELECT id FROM new_rows);
             PERFORM {s}.stats_refresh((SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('job', job, 'status', status)), '[]')
                                        FROM (SELECT job, status FROM old_rows UNION SELECT job, status FROM new_rows) g));
             RETURN NULL;
         END
         $fn$;

         CREATE OR REPLACE FUNCTION {s}.stats_clear() RETURNS trigger LANGUAGE plpgsql AS $fn$
         BEGIN
             DELETE FROM {s}.job_stats;
             DELETE FROM {s}.attrs;
             RETURN NULL;
         END
         $fn$;

         DROP TRIGGER IF EXISTS logs_stats_add ON {table};
         CREATE TRIGGER logs_stats_add AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.stats_add();
         DROP TRIGGER IF EXISTS logs_stats_forget ON {table};
         CREATE TRIGGER logs_stats_forget AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.stats_forget();
         DROP TRIGGER IF EXISTS logs_stats_change ON {table};
         CREATE TRIGGER logs_stats_change AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.stats_change();
         DROP TRIGGER IF EXISTS logs_stats_clear ON {table};
         CREATE TRIGGER logs_stats_clear AFTER TRUNCATE ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION {s}.stats_clear();

         DELETE FROM {s}.job_stats;
         INSERT INTO {s}.job_stats
         SELECT job, status, count(*), sum(items_seen), sum(items_written), sum(items_failed),
                min(started_at), max(recorded_at), max(id)
         FROM {table} GROUP BY job, status;"
    )
}

/// Version 3 → 4: the prune markers. Idempotent.
fn v4(s: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.prune_markers (
             seq    bigserial PRIMARY KEY,
             digest text      UNIQUE NOT NULL, -- SHA-256 of the pruned (id, checksum) pairs
             body   text      NOT NULL         -- the marker's JSON, checksummed
         );"
    )
}
