//! The in-memory index of a JSON-lines store: id → which file and where in it its line is,
//! and its checksum.
//!
//! A vector sorted by id (24 bytes a record; a `BTreeMap` took about twice that). Appends
//! come in id order and are pushed; imports of older ids are merged in one pass.

use std::ops::Range;

use synclog_core::Checksum;

/// Where a record's line is (which file of the store, at which offset), and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The file's number in the high 16 bits, the offset in the low 48 (this keeps an
    /// entry at 24 bytes with its id).
    at: u64,
    /// Length without the newline.
    pub len: u32,
    pub checksum: Checksum,
}

/// The largest offset an entry can hold (256 TiB).
pub(crate) const MAX_OFFSET: u64 = (1 << 48) - 1;

impl Entry {
    /// A line of file number `file` at `offset` (at most [`MAX_OFFSET`], which loading
    /// and writing check first).
    pub fn new(file: u16, offset: u64, len: u32, checksum: Checksum) -> Entry {
        debug_assert!(offset <= MAX_OFFSET);
        Entry {
            at: (u64::from(file) << 48) | (offset & MAX_OFFSET),
            len,
            checksum,
        }
    }

    /// The number of the file holding the line.
    pub fn file(&self) -> u16 {
        (self.at >> 48) as u16
    }

    /// The line's byte offset in its file.
    pub fn offset(&self) -> u64 {
        self.at & MAX_OFFSET
    }

    /// Where the line ends, newline included.
    pub fn end(&self) -> u64 {
        self.offset() + u64::from(self.len) + 1
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    items: Vec<(u64, Entry)>,
}

impl Index {
    /// From entries already sorted by id, without repeats.
    pub fn from_sorted(items: Vec<(u64, Entry)>) -> Index {
        debug_assert!(items.windows(2).all(|w| w[0].0 < w[1].0));
        Index { items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    fn position(&self, id: u64) -> Result<usize, usize> {
        self.items.binary_search_by_key(&id, |(k, _)| *k)
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.position(id).ok().map(|i| &self.items[i].1)
    }

    pub fn last_id(&self) -> Option<u64> {
        self.items.last().map(|(k, _)| *k)
    }

    /// The entries with ids in `range`, in id order.
    pub fn range(&self, range: Range<u64>) -> &[(u64, Entry)] {
        let lo = self.items.partition_point(|(k, _)| *k < range.start);
        let hi = self.items.partition_point(|(k, _)| *k < range.end);
        &self.items[lo..hi.max(lo)]
    }

    /// Every entry, in id order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().map(|(_, e)| e)
    }

    /// Adds entries for ids not yet indexed (the caller checked), in any order.
    pub fn insert_many(&mut self, mut new: Vec<(u64, Entry)>) {
        new.sort_unstable_by_key(|(k, _)| *k);
        match (self.items.last(), new.first()) {
            (_, None) => {}
            (None, _) => self.items = new,
            (Some((last, _)), Some((first, _))) if first > last => self.items.extend(new),
            _ => {
                let old = std::mem::take(&mut self.items);
                let mut merged = Vec::with_capacity(old.len() + new.len());
                let (mut a, mut b) = (old.into_iter().peekable(), new.into_iter().peekable());
                while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
                    if x.0 <= y.0 {
                        merged.extend(a.next());
                    } else {
                        merged.extend(b.next());
                    }
                }
                merged.extend(a);
                merged.extend(b);
                self.items = merged;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u64) -> Entry {
        Entry::new((n % 3) as u16, n * 10, 5, Checksum(n as u32))
    }

    #[test]
    fn an_entry_keeps_its_file_and_offset_apart() {
        let e = Entry::new(65_535, MAX_OFFSET, 7, Checksum(1));
        assert_eq!(
            (e.file(), e.offset(), e.end()),
            (65_535, MAX_OFFSET, MAX_OFFSET + 8)
        );
        let e = Entry::new(3, 12_345, 7, Checksum(1));
        assert_eq!((e.file(), e.offset()), (3, 12_345));
        assert_eq!(std::mem::size_of::<(u64, Entry)>(), 24);
    }

    #[test]
    fn appends_and_merges_keep_id_order() {
        let mut ix = Index::default();
        ix.insert_many(vec![(5, e(5)), (7, e(7))]);
        ix.insert_many(vec![(9, e(9))]);
        ix.insert_many(vec![(6, e(6)), (1, e(1))]);
        let ids: Vec<u64> = ix.range(0..u64::MAX).iter().map(|(k, _)| *k).collect();
        assert_eq!(ids, vec![1, 5, 6, 7, 9]);
        assert_eq!(ix.get(6), Some(&e(6)));
        assert_eq!(ix.get(8), None);
        assert_eq!(ix.last_id(), Some(9));
        let mid: Vec<u64> = ix.range(5..9).iter().map(|(k, _)| *k).collect();
        assert_eq!(mid, vec![5, 6, 7]);
        assert!(ix.range(8..8).is_empty());
    }
}
