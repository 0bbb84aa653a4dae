//! Opening by URL: no password printed, unknown parameters refused, paths that are not
//! what the engine keeps refused, and a guarded pair that is one storage twice refused,
//! each before anything is created or written.

use std::path::Path;
use std::time::Duration;

use synclog::{
    open_guarded, open_url, open_url_with, ErrorKind, GuardedOptions, LogStore, OpenOptions, StoreUrl,
};

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn open_err(url: &str) -> synclog::Error {
    match open_url(url).await {
        Ok(store) => {
            store.close().await.unwrap();
            panic!("{url} opened")
        }
        Err(e) => e,
    }
}

async fn guarded_err(primary: &str, backup: &str) -> synclog::Error {
    match open_guarded(primary, backup, GuardedOptions::default()).await {
        Ok(g) => {
            g.close().await.unwrap();
            panic!("{primary} guarded by {backup} opened")
        }
        Err(e) => e,
    }
}

// --- passwords -------------------------------------------------------------------------

#[test]
fn a_store_urls_debug_form_hides_the_postgres_password() {
    let url = StoreUrl::parse("postgres://app:s3cr3t-pw@db.example/logs").unwrap();
    let shown = format!("{url:?}");
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
}

#[test]
fn a_bad_rotate_mb_is_reported_without_the_password() {
    let err = StoreUrl::parse("json://u:s3cr3t-pw@h/b.jsonl?rotate_mb=x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!format!("{err} {err:?}").contains("s3cr3t-pw"), "{err}");
}

/// URL shapes with `{pw}` where a password goes; none may open (all fail fast).
const SHAPES: &[&str] = &[
    "postgres://user:{pw}@127.0.0.1:1/db",
    "postgresql://user:{pw}@127.0.0.1:1/db?sslmode=disable&synclog_schema=s",
    "postgres://127.0.0.1:1/db?user=u&password={pw}",
    "postgres://user:{pw}@127.0.0.1:1/db?password={pw}&foo=1",
    "postgres://user:password={pw}@127.0.0.1:1/db",
    "host=127.0.0.1 PASSWORD = {pw} dbname=test",
    "host=127.0.0.1 port=1 password='{pw}' user=u",
    "json://u:{pw}@h/b.jsonl?rotate_mb=x",
    "sqlite://u:{pw}@h/a.db?foo=1",
    "sled://u:{pw}@h/s?foo=1",
    "ftp://u:{pw}@h/x",
    "u:{pw}@127.0.0.1/db",
];

fn password() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        "[A-Za-z0-9]{1,3}",
        Just("/".to_string()),
        Just("?".to_string()),
        Just("#".to_string()),
        Just("@".to_string()),
        Just(":".to_string()),
        Just(" ".to_string()),
        "%[0-9A-F]{2}",
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|p| format!("Zq{}", p.concat()))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Neither `redact_url` nor any open error (Display or Debug) shows a password.
    #[test]
    fn no_open_error_shows_a_spliced_password(pw in password(), shape in 0..SHAPES.len()) {
        let url = SHAPES[shape].replace("{pw}", &pw);
        proptest::prop_assert!(!synclog::redact_url(&url).contains(&pw));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = OpenOptions { lock_wait: Duration::from_millis(200), ..OpenOptions::default() };
        match rt.block_on(open_url_with(&url, &options)) {
            Ok(_) => proptest::prop_assert!(false, "{} opened", synclog::redact_url(&url)),
            Err(e) => {
                let shown = format!("{e} | {e:?}");
                proptest::prop_assert!(!shown.contains(&pw), "{shown}");
                // Not even its start: "Zq" appears nowhere else in the shapes.
                proptest::prop_assert!(!shown.contains("Zq"), "{shown}");
            }
        }
    }
}

// --- parameters ------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_url_parameter_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for url in [
        format!("sqlite://{d}/a.db?foo=1"),
        format!("sqlite://{d}/sub/a.db?mode=ro"),
        format!("json://{d}/b.jsonl?foo=1"),
        format!("json://{d}/b.jsonl?rotate_mb=1&foo=2"),
        format!("json://{d}/b.jsonl?rotate_mb=1&rotate_mb=2"),
        format!("sled://{d}/s?cache_capacity=1"),
        "memory://m?x=1".to_string(),
    ] {
        assert_eq!(open_err(&url).await.kind(), ErrorKind::InvalidInput, "{url}");
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{url}");
    }
}

/// The message is the behaviour here: it names the parameters that do exist.
#[test]
fn an_unknown_parameter_error_lists_the_parameters_that_exist() {
    let json = StoreUrl::parse("json://b.jsonl?foo=1").unwrap_err().to_string();
    assert!(json.contains("rotate_mb"), "{json}");
    let sqlite = StoreUrl::parse("sqlite://a.db?foo=1").unwrap_err().to_string();
    assert!(sqlite.contains("no parameters"), "{sqlite}");
    let pg = StoreUrl::parse("postgres://u@h/db?foo=1")
        .unwrap_err()
        .to_string();
    assert!(pg.contains("synclog_schema") && pg.contains("sslmode"), "{pg}");
}

#[tokio::test]
async fn postgres_parameters_synclog_does_not_know_are_refused_before_connecting() {
    // Port 1: connecting would fail as I/O, not as invalid input.
    for url in [
        "postgres://postgres@127.0.0.1:1/test?foo=1",
        "postgres://postgres@127.0.0.1:1/test?sslrootcert=/etc/ca.pem",
        "postgres://postgres@127.0.0.1:1/test?synclog_schema=a&synclog_schema=b",
    ] {
        let err = StoreUrl::parse(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}");
        assert_eq!(open_err(url).await.kind(), ErrorKind::InvalidInput, "{url}");
    }
    StoreUrl::parse("postgres://u:p@h:5433/db?sslmode=disable&application_name=a&synclog_schema=s").unwrap();
}

// --- paths that are not what the engine keeps --------------------------------------------

#[tokio::test]
async fn a_json_store_on_a_directory_socket_or_device_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let before = entries(dir.path());
    for path in [dir.path().join("a-dir"), dir.path().join("sock")] {
        let url = format!("json://{}", path.display());
        assert_eq!(open_err(&url).await.kind(), ErrorKind::InvalidInput, "{url}");
        assert_eq!(entries(dir.path()), before, "{url}");
    }
    for url in [
        "sqlite:///dev/null/x.db",
        "json:///dev/null/x.jsonl",
        "sled:///dev/null/s",
    ] {
        assert_eq!(open_err(url).await.kind(), ErrorKind::InvalidInput, "{url}");
    }
    let lock_before = Path::new("/dev/null.lock").exists();
    assert_eq!(open_err("json:///dev/null").await.kind(), ErrorKind::InvalidInput);
    assert_eq!(Path::new("/dev/null.lock").exists(), lock_before);
}

#[tokio::test]
async fn a_sqlite_store_on_a_fifo_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.db");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let url = format!("sqlite://{}", fifo.display());
    assert_eq!(open_err(&url).await.kind(), ErrorKind::InvalidInput);
    assert_eq!(entries(dir.path()), vec!["pipe.db".to_string()]);
}

#[tokio::test]
async fn a_sled_store_on_a_regular_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"not a sled directory").unwrap();
    let url = format!("sled://{}", file.display());
    assert_eq!(open_err(&url).await.kind(), ErrorKind::InvalidInput);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a sled directory");
    assert_eq!(entries(dir.path()), vec!["notes.txt".to_string()]);
}

// --- a guarded pair is two storages ------------------------------------------------------

#[tokio::test]
async fn a_guarded_pair_naming_one_path_with_two_engines_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let err = guarded_err(&format!("sqlite://{d}/x"), &format!("json://{d}/x")).await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_guarded_pair_through_a_symlink_is_refused_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // --- step: a JSON store with one record, and a symlink to it
    let store = open_url(&format!("json://{d}/a.jsonl")).await.unwrap();
    synclog::LogStoreExt::append(&*store, synclog::NewLog::new("j", synclog::Status::Succeeded))
        .await
        .unwrap();
    store.close().await.unwrap();
    std::os::unix::fs::symlink(dir.path().join("a.jsonl"), dir.path().join("link.jsonl")).unwrap();
    let before = std::fs::read(dir.path().join("a.jsonl")).unwrap();
    let names = entries(dir.path());
    // --- step: the pair is refused
    let err = guarded_err(&format!("json://{d}/a.jsonl"), &format!("json://{d}/link.jsonl")).await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(std::fs::read(dir.path().join("a.jsonl")).unwrap(), before);
    assert_eq!(entries(dir.path()), names);
}

#[tokio::test]
async fn a_guarded_pair_through_a_hard_link_is_refused_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let store = open_url(&format!("sqlite://{d}/a.db")).await.unwrap();
    store.close().await.unwrap();
    std::fs::hard_link(dir.path().join("a.db"), dir.path().join("b.db")).unwrap();
    let before = std::fs::read(dir.path().join("a.db")).unwrap();
    let err = guarded_err(&format!("sqlite://{d}/a.db"), &format!("sqlite://{d}/b.db")).await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(std::fs::read(dir.path().join("a.db")).unwrap(), before);
    assert_eq!(entries(dir.path()), vec!["a.db".to_string(), "b.db".to_string()]);
}

#[tokio::test]
async fn a_guarded_pair_through_dot_dot_is_refused_before_any_directory_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let err = guarded_err(
        &format!("sqlite://{d}/sub/../x.db"),
        &format!("json://{d}/./x.db"),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(entries(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_guarded_pair_of_one_memory_store_is_refused() {
    let err = guarded_err("memory://open-rules-one", "memory://open-rules-one").await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_guarded_pair_of_one_postgres_schema_is_refused_without_connecting() {
    // Nothing listens on port 1; these are refused before any connection is tried.
    for (primary, backup) in [
        (
            "postgres://postgres@127.0.0.1:1/test?synclog_schema=one",
            "postgresql://postgres@localhost:1/test?synclog_schema=one&application_name=b",
        ),
        (
            "postgres://postgres@127.0.0.1:1/test",
            "postgres://other:pw@127.0.0.1:1/test?synclog_schema=synclog",
        ),
    ] {
        let err = guarded_err(primary, backup).await;
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{primary} {backup}");
    }
}

#[tokio::test]
async fn two_different_files_still_make_a_guarded_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let g = open_guarded(
        &format!("sqlite://{d}/a.db"),
        &format!("json://{d}/a.jsonl"),
        GuardedOptions::default(),
    )
    .await
    .unwrap();
    g.close().await.unwrap();
}

// --- the command -------------------------------------------------------------------------

fn synclog(dir: &Path, store: &str, backup: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_synclog"))
        .current_dir(dir)
        .env_remove("SYNCLOG_STORE")
        .env_remove("SYNCLOG_BACKUP")
        .args(["--store", store, "--backup", backup])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_exits_2_for_an_unknown_parameter_or_one_storage_twice_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for (store, backup) in [
        (format!("sqlite://{d}/s.db?foo=1"), format!("json://{d}/b.jsonl")),
        (
            format!("sqlite://{d}/s.db"),
            format!("json://{d}/b.jsonl?rotate=1"),
        ),
        (format!("sqlite://{d}/one"), format!("json://{d}/one")),
        // A file store's path that ends with `/` names a directory, not its file.
        (format!("sqlite://{d}/dir/"), format!("json://{d}/b.jsonl")),
        (format!("sqlite://{d}/s.db"), format!("json://{d}/dir/")),
    ] {
        let out = synclog(dir.path(), &store, &backup, &["list"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{store} {backup}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{store} {backup}");
    }
}
