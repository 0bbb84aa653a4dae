//! The store's keys, in memory: idempotency key → id, run key → ids
//! ([`synclog_core::run::KeyBook`]), for the rules of runs and idempotency keys and for
//! their lookups (the files have no index of keys).
//!
//! The book is built lazily, the first time a keyed log is committed or a key is looked
//! up, by reading every record once (in file order, a chunk of the index at a time; a
//! line without keys is skipped after a byte search, without being decoded). Opening does
//! not build it, and a commit without keys never touches it. Once built:
//!
//! - the records a keyed commit writes are noted by the writer, which holds the book
//!   from planning to noting;
//! - the records the writer's catch-up reads from other processes, and the records an
//!   import writes, are only listed by id ([`Shared::behind`](crate::writer::Shared),
//!   under the index's lock, as they are indexed), and read and noted the next time the
//!   book is used, so that neither a catch-up nor an import pays for a book that is not
//!   used;
//! - when the files are loaded afresh (another process rotated, compacted or replaced
//!   the active file; a damaged side file), the fresh index has no list, which tells the
//!   next use to build the book again. So does a list that grew past [`MAX_BEHIND`] ids.
//!   This process's own rotation keeps the index, and its own compaction hands the list
//!   on (the same records under the same ids): the book stays.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use memchr::memmem;
use synclog_core::run::KeyBook;
use synclog_core::{Error, LogId, LogRecord, Result};

use crate::format;
use crate::index::{Entry, Merged};
use crate::writer::{read_shared, write_shared, Files, SharedRef};

/// Ids other processes' appends and imports may leave to be noted before the book is
/// dropped instead (and built again when next needed): 8 MiB of ids.
pub(crate) const MAX_BEHIND: usize = 1 << 20;

/// Index entries whose lines are read at a time while the book is built.
const BUILD_CHUNK: usize = 1 << 16;

/// The book and whether it is built.
#[derive(Debug, Default)]
pub(crate) struct Book {
    keys: KeyBook,
    built: bool,
}

/// The book, shared by a store's handle and its writer.
pub(crate) type BookRef = Arc<Mutex<Book>>;

/// The book, up to date with the index, held: nobody else notes or builds meanwhile.
pub(crate) struct Ready<'a>(MutexGuard<'a, Book>);

impl Ready<'_> {
    /// The keys.
    pub(crate) fn keys(&self) -> &KeyBook {
        &self.0.keys
    }

    /// Notes a record the holder wrote.
    pub(crate) fn note(&mut self, rec: &LogRecord) {
        self.0.keys.note(rec);
    }
}

/// The book, brought up to date with the store's index: built if it is not (or no longer)
/// valid, else the records listed in [`Shared::behind`](crate::writer::Shared) read and
/// noted. On an error the book is dropped (built again when next needed).
pub(crate) fn ready<'a>(book: &'a BookRef, shared: &SharedRef, name: &str) -> Result<Ready<'a>> {
    let mut guard = book.lock().unwrap_or_else(|p| p.into_inner());
    let result = bring_up_to_date(&mut guard, shared, name);
    if result.is_err() {
        *guard = Book::default();
    }
    result.map(|()| Ready(guard))
}

fn bring_up_to_date(book: &mut Book, shared: &SharedRef, name: &str) -> Result<()> {
    // Under the index's lock, at once: take the list (or start one), and, to build, take
    // a snapshot of the index. Whatever is indexed after this is listed.
    let (behind, snapshot) = {
        let mut s = write_shared(shared);
        match (book.built, s.behind.as_mut()) {
            (true, Some(behind)) => (std::mem::take(behind), None),
            _ => {
                s.behind = Some(Vec::new());
                let snapshot = (
                    s.index.disk.clone(),
                    s.index.mem.items().to_vec(),
                    s.files.clone(),
                );
                (Vec::new(), Some(snapshot))
            }
        }
    };
    if let Some((disk, mem, files)) = snapshot {
        // The old book's memory goes before the new one's is taken.
        *book = Book::default();
        let mut chunk = Vec::with_capacity(
            BUILD_CHUNK.min(1 + mem.len() + disk.as_ref().map_or(0, |d| d.len() as usize)),
        );
        for item in Merged::new(disk, &mem) {
            chunk.push(item?);
            if chunk.len() == BUILD_CHUNK {
                note_lines(&mut book.keys, &files, &mut chunk, name)?;
            }
        }
        note_lines(&mut book.keys, &files, &mut chunk, name)?;
        book.built = true;
        return Ok(());
    }
    if behind.is_empty() {
        return Ok(());
    }
    let (mut entries, files) = {
        let s = read_shared(shared);
        let mut entries = Vec::with_capacity(behind.len());
        for id in behind {
            if let Some(e) = s.index.get(id)? {
                entries.push((id, e));
            }
        }
        (entries, s.files.clone())
    };
    note_lines(&mut book.keys, &files, &mut entries, name)
}

/// Whether a record line may carry a key: it holds `"run"` or `"idempotency_key"`, or an
/// escape (`\u…`, by which a field's name could be spelled otherwise). Lines without are
/// not decoded while the book is built.
fn may_have_keys(line: &[u8]) -> bool {
    memmem::find(line, b"\"run\"").is_some()
        || memmem::find(line, b"\"idempotency_key\"").is_some()
        || memmem::find(line, b"\\u").is_some()
}

/// Notes the keys of the records at `entries` (sorted here by file and offset, so the
/// files are read in order), and empties `entries`.
fn note_lines(book: &mut KeyBook, files: &Files, entries: &mut Vec<(u64, Entry)>, name: &str) -> Result<()> {
    entries.sort_unstable_by_key(|(_, e)| (e.file(), e.offset()));
    read_lines(files, entries, name, |_, line, _, _| {
        if !may_have_keys(line) {
            return Ok(());
        }
        match format::Line::parse(line) {
            Some(l) if l.run.is_none() && l.idempotency_key.is_none() => {}
            Some(l) => book.note(&l.to_record()),
            None => book.note(&format::decode(line).map_err(|e| Error::Corrupt {
                location: name.to_string(),
                detail: "a record no longer decodes; the file changed behind the store".into(),
                source: Some(Box::new(e)),
            })?),
        }
        Ok(())
    })?;
    entries.clear();
    Ok(())
}

/// Reads the lines at `entries` (sorted by file and offset: lines that follow each other
/// in a file are read at once) and hands each to `each` with its id, its file and its
/// offset.
pub(crate) fn read_lines(
    files: &Files,
    entries: &[(u64, Entry)],
    name: &str,
    mut each: impl FnMut(u64, &[u8], &Path, u64) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        // A run of lines that follow each other in one file.
        let first = entries[i].1;
        let mut j = i + 1;
        while j < entries.len()
            && entries[j].1.file() == first.file()
            && entries[j].1.offset() == entries[j - 1].1.end()
            && buf_len(first, entries[j].1) <= 1 << 22
        {
            j += 1;
        }
        let file = files.get(&first.file()).ok_or_else(|| Error::Backend {
            engine: "json",
            context: format!("reading {name}"),
            source: format!("the index names file number {}, which is not open", first.file()).into(),
        })?;
        let start = first.offset();
        let len = (entries[j - 1].1.end() - 1 - start) as usize;
        buf.resize(len, 0);
        file.reader
            .read_exact_at(&mut buf, start)
            .map_err(|e| Error::io(format!("reading {}", file.path.display()), e))?;
        for (id, e) in &entries[i..j] {
            let from = (e.offset() - start) as usize;
            each(*id, &buf[from..from + e.len as usize], &file.path, e.offset())?;
        }
        i = j;
    }
    Ok(())
}

/// Bytes from the start of `first` to the end of `last` (lines of one file).
fn buf_len(first: Entry, last: Entry) -> u64 {
    last.end() - first.offset()
}

/// Reads and decodes the records at `entries`, sorted by file and offset.
pub(crate) fn read_records(files: &Files, entries: &[(u64, Entry)], name: &str) -> Result<Vec<LogRecord>> {
    let mut out = Vec::with_capacity(entries.len());
    read_lines(files, entries, name, |id, line, path, offset| {
        let rec = format::decode(line).map_err(|err| Error::Corrupt {
            location: format!("{} at byte {offset}", path.display()),
            detail: format!("log {id} no longer decodes; the file changed behind the store"),
            source: Some(Box::new(err)),
        })?;
        // Lines moved behind the store's back (two swapped) still decode: never serve
        // another record under the id asked for.
        if rec.id.get() != id {
            return Err(Error::corrupt(
                format!("{} at byte {offset}", path.display()),
                format!(
                    "the line the index gives for log {id} holds log {}; the file changed behind the store",
                    rec.id
                ),
            ));
        }
        out.push(rec);
        Ok(())
    })?;
    Ok(out)
}

/// The records with `ids` that the index holds, in id order.
pub(crate) fn get_many(shared: &SharedRef, name: &str, ids: &[LogId]) -> Result<Vec<LogRecord>> {
    let (mut entries, files) = {
        let s = read_shared(shared);
        let mut entries = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = s.index.get(id.get())? {
                entries.push((id.get(), e));
            }
        }
        (entries, s.files.clone())
    };
    entries.sort_unstable_by_key(|(_, e)| (e.file(), e.offset()));
    let mut records = read_records(&files, &entries, name)?;
    records.sort_by_key(|r| r.id);
    Ok(records)
}

/// The record with `id`, if the index holds it.
pub(crate) fn get(shared: &SharedRef, name: &str, id: LogId) -> Result<Option<LogRecord>> {
    Ok(get_many(shared, name, &[id])?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFs;
    use crate::{JsonOptions, JsonStore};
    use synclog_core::{Durability, LogStore, LogStoreExt, NewLog, Status};

    fn built(store: &JsonStore) -> bool {
        store.inner.book.lock().unwrap().built
    }

    /// Opening does not build the book, nor does a commit without keys (however many);
    /// the first key does, and a reopen starts without one again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_book_is_built_by_the_first_key_not_by_opening_or_plain_commits() {
        let fs = Arc::new(SimFs::new());
        let open = || JsonStore::open_with("/sim/logs.jsonl", JsonOptions::default(), fs.clone()).unwrap();
        let store = open();
        for n in 0..50 {
            let log = NewLog::new("plain", Status::Succeeded).counts(n, n, 0);
            store
                .commit(vec![log.clone(), log], Durability::PowerLoss)
                .await
                .unwrap();
        }
        store.scan(&synclog_core::Scan::all(1000)).await.unwrap();
        assert!(!built(&store), "no key yet");
        assert!(store.inner.shared.read().unwrap().behind.is_none());
        let keyed = NewLog::new("keyed", Status::Succeeded).idempotency_key("k");
        let first = store.append(keyed.clone()).await.unwrap();
        assert!(built(&store));
        // Its own compaction keeps the same records under the same ids: the book stays.
        store.compact().await.unwrap();
        assert!(store.inner.shared.read().unwrap().behind.is_some());
        let again = store.append_report(keyed, Durability::PowerLoss).await.unwrap();
        assert!(again.repeat && again.record == first);
        store.close().await.unwrap();
        drop(store);

        let store = open();
        assert!(!built(&store));
        assert_eq!(store.find_idempotent("k").await.unwrap(), Some(first));
        assert!(built(&store));
        store.close().await.unwrap();
    }

    #[test]
    fn a_line_with_a_key_is_never_skipped() {
        assert!(may_have_keys(br#"{"id":1,"attrs":{},"run":"r","checksum":"0"}"#));
        assert!(may_have_keys(
            br#"{"id":1,"attrs":{},"idempotency_key":"k","checksum":"0"}"#
        ));
        assert!(may_have_keys(
            br#"{"id":1,"attrs":{},"\u0072un":"r","checksum":"0"}"#
        ));
        assert!(!may_have_keys(
            br#"{"id":1,"message":"say \"run\": now","attrs":{},"checksum":"0"}"#
        ));
        assert!(!may_have_keys(
            br#"{"id":1,"job":"runner","attrs":{"running":1},"checksum":"0"}"#
        ));
    }
}
