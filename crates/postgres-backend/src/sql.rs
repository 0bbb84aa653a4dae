//! The SQL, for one configurable schema.

/// Statements for a schema (its name already validated and quoted).
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub create: String,
    pub version: String,
    pub insert: String,
    pub import: String,
    pub checksums_of: String,
    pub get: String,
    pub page: String,
    pub last_id: String,
    pub id_checksums: String,
    pub sync: String,
    pub next_id: String,
    pub table: String,
}

pub(crate) const COLUMNS: &str = "id, recorded_at, job, status, started_at, finished_at, \
    items_seen, items_written, items_failed, message, attrs, checksum";

const UNNEST: &str = "SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], \
    $5::timestamptz[], $6::timestamptz[], $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], \
    $11::text[], $12::bigint[])";

/// `name` quoted as an identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Sql {
        let s = quote(schema);
        let table = format!("{s}.logs");
        Sql {
            create: format!(
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
            version: format!("SELECT value FROM {s}.meta WHERE key = 'schema_version'"),
            // The insert also raises the high-water mark (in the transaction) and keeps the
            // identity sequence ahead of every id (for inserts made outside synclog).
            // $13 is the first id: rows go in only if no stored id and no high-water mark has
            // reached it (another process may have written since this writer last did).
            insert: format!(
                "WITH ins AS (INSERT INTO {table} ({COLUMNS}) OVERRIDING SYSTEM VALUE {UNNEST} \
                              WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE id >= $13) \
                              AND coalesce((SELECT value FROM {s}.meta WHERE key = 'high_water'), 0) < $13 \
                              RETURNING id), \
                 hw AS (INSERT INTO {s}.meta (key, value) SELECT 'high_water', max(id) FROM ins HAVING count(*) > 0 \
                        ON CONFLICT (key) DO UPDATE SET value = GREATEST({s}.meta.value, EXCLUDED.value)), \
                 sq AS (SELECT setval(pg_get_serial_sequence('{table_lit}', 'id'), max(id)) FROM ins HAVING count(*) > 0) \
                 SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM sq)",
                table_lit = table.replace('\'', "''")
            ),
            import: format!(
                "WITH ins AS (INSERT INTO {table} ({COLUMNS}) OVERRIDING SYSTEM VALUE {UNNEST} \
                              ON CONFLICT (id) DO NOTHING RETURNING id), \
                 hw AS (INSERT INTO {s}.meta (key, value) SELECT 'high_water', max(id) FROM ins HAVING count(*) > 0 \
                        ON CONFLICT (key) DO UPDATE SET value = GREATEST({s}.meta.value, EXCLUDED.value)), \
                 sq AS (SELECT setval(pg_get_serial_sequence('{table_lit}', 'id'), max(id)) FROM ins HAVING count(*) > 0) \
                 SELECT id, (SELECT count(*) FROM sq) FROM ins",
                table_lit = table.replace('\'', "''")
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
            table,
        }
    }
}
