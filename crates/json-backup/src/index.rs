//! The in-memory index of a JSON-lines file: id → where its line is, and its checksum.
//!
//! A vector sorted by id (24 bytes a record; a `BTreeMap` took about twice that). Appends
//! come in id order and are pushed; imports of older ids are merged in one pass.

use std::ops::Range;

use synclog_core::Checksum;

/// Where a record's line is in the file, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub offset: u64,
    /// Length without the newline.
    pub len: u32,
    pub checksum: Checksum,
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
        Entry {
            offset: n * 10,
            len: 5,
            checksum: Checksum(n as u32),
        }
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
