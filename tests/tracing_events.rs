//! What the library tells an app through `tracing`: recovery is never silent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use synclog::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One event as an app's subscriber sees it.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields,
        });
    }
}

#[test]
fn restoring_a_deleted_primary_emits_a_warn_event_with_the_restored_id_range() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    // Global: the pair's work runs on the runtime's threads, not only this one.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let primary = dir.path().join("logs.db");
    let (p, b) = (
        format!("sqlite://{}", primary.display()),
        format!("json://{}", dir.path().join("logs.jsonl").display()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = synclog::open_guarded(&p, &b, Default::default()).await.unwrap();
        for i in 0..95 {
            store
                .append(NewLog::new(format!("job-{}", i % 3), Status::Succeeded))
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    });
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", primary.display());
        if std::path::Path::new(&file).exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
    recorder.0.lock().unwrap().clear();

    runtime.block_on(async {
        let store = synclog::open_guarded(&p, &b, Default::default()).await.unwrap();
        assert_eq!(store.open_report().restored_to_primary, 95);
        store.close().await.unwrap();
    });

    let seen = recorder.0.lock().unwrap().clone();
    let restores: Vec<&Seen> = seen
        .iter()
        .filter(|e| {
            e.fields
                .get("message")
                .is_some_and(|m| m.contains("restored records a copy lacked"))
        })
        .collect();
    assert_eq!(restores.len(), 1, "one restore event, got {seen:#?}");
    let restore = restores[0];
    assert_eq!(restore.level, Level::WARN);
    assert_eq!(restore.target, "synclog_core::guarded");
    assert_eq!(restore.fields["ids"], "1..=95");
    assert_eq!(restore.fields["restored"], "95");
    assert_eq!(restore.fields["side"], "primary");
    assert!(restore.fields["copy"].contains("logs.db"), "{restore:?}");

    // The open itself is reported at info, with what it found and how long it took.
    let opened = seen
        .iter()
        .find(|e| {
            e.fields
                .get("message")
                .is_some_and(|m| m == "opened the guarded pair")
        })
        .expect("an info event for the open");
    assert_eq!(opened.level, Level::INFO);
    assert_eq!(opened.fields["restored_to_primary"], "95");
    assert!(opened.fields.contains_key("elapsed_ms"));
}
