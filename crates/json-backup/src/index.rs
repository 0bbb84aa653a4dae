//! The index of a JSON-lines store: id → which file and where in it its line is, and its
//! checksum.
//!
//! Two parts ([`StoreIndex`]): what the index side file (`<file>.idx`, see
//! [`crate::sidefile`]) holds, read from disk by positioned reads, and the entries added
//! since it was written, in memory: a vector sorted by id (24 bytes a record; a `BTreeMap`
//! took about twice that). Appends come in id order and are pushed; imports of older ids
//! are merged in one pass. The two parts never hold the same id.

use std::ops::Range;
use std::sync::Arc;

use synclog_core::{Checksum, Result};

use crate::sidefile::DiskIndex;

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

    /// Every entry with its id, in id order.
    pub fn items(&self) -> &[(u64, Entry)] {
        &self.items
    }

    /// Removes the entries whose ids are in `folded` (sorted by id).
    pub fn remove_sorted(&mut self, folded: &[(u64, Entry)]) {
        let mut f = folded.iter().map(|(k, _)| *k).peekable();
        self.items.retain(|(k, _)| {
            while f.next_if(|x| x < k).is_some() {}
            f.peek() != Some(k)
        });
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

/// The whole index: the side file's part on disk, and the part added since in memory.
#[derive(Debug, Default)]
pub(crate) struct StoreIndex {
    pub disk: Option<Arc<DiskIndex>>,
    pub mem: Index,
}

impl StoreIndex {
    /// Records indexed.
    pub fn len(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| d.len()) + self.mem.len() as u64
    }

    pub fn last_id(&self) -> Option<u64> {
        let disk = self.disk.as_ref().and_then(|d| d.last_id());
        disk.max(self.mem.last_id())
    }

    /// The entry of `id`; reading the side file can fail.
    pub fn get(&self, id: u64) -> Result<Option<Entry>> {
        if let Some(e) = self.mem.get(id) {
            return Ok(Some(*e));
        }
        match &self.disk {
            Some(d) if d.last_id().is_some_and(|l| id <= l) => d.get(id),
            _ => Ok(None),
        }
    }

    /// Adds entries for ids not yet indexed (the caller checked), in any order.
    pub fn insert_many(&mut self, new: Vec<(u64, Entry)>) {
        self.mem.insert_many(new);
    }

    /// Whether the side file in use was found damaged when a block of it was read.
    pub fn side_damaged(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.is_damaged())
    }

    /// Entries of file number `file`.
    pub fn count_in(&self, file: u16) -> u64 {
        let disk = self.disk.as_ref().map_or(0, |d| d.count_in(file));
        disk + self.mem.items().iter().filter(|(_, e)| e.file() == file).count() as u64
    }

    /// Up to `limit` entries with ids in `range`, from its low end up (or with
    /// `descending`, from its high end down).
    pub fn take(&self, range: Range<u64>, descending: bool, limit: usize) -> Result<Vec<(u64, Entry)>> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mem = self.mem.range(range.clone());
        let mem: Vec<(u64, Entry)> = match descending {
            false => mem.iter().take(limit).copied().collect(),
            true => mem.iter().rev().take(limit).copied().collect(),
        };
        let disk = match &self.disk {
            Some(d) => disk_take(d, &range, descending, limit)?,
            None => Vec::new(),
        };
        if disk.is_empty() {
            return Ok(mem);
        }
        let mut out = Vec::with_capacity(limit.min(mem.len() + disk.len()));
        let (mut a, mut b) = (disk.into_iter().peekable(), mem.into_iter().peekable());
        while out.len() < limit {
            let first = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => (x.0 < y.0) != descending,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if first { a.next() } else { b.next() });
        }
        Ok(out)
    }

    /// Every entry in id order, the side file's part read block by block.
    pub fn iter(&self) -> Merged<'_> {
        Merged::new(self.disk.clone(), self.mem.items())
    }
}

/// Up to `limit` entries of the side file with ids in `range`, in order.
fn disk_take(d: &DiskIndex, range: &Range<u64>, descending: bool, limit: usize) -> Result<Vec<(u64, Entry)>> {
    let mut out = Vec::new();
    if !descending {
        let mut b = d.block_of(range.start).unwrap_or(0);
        while b < d.blocks() && out.len() < limit {
            let block = d.block(b)?;
            for &(k, e) in block.iter() {
                if k >= range.end || out.len() == limit {
                    return Ok(out);
                }
                if k >= range.start {
                    out.push((k, e));
                }
            }
            b += 1;
        }
    } else {
        let Some(mut b) = d.block_of(range.end - 1) else {
            return Ok(out);
        };
        loop {
            let block = d.block(b)?;
            for &(k, e) in block.iter().rev() {
                if k < range.start || out.len() == limit {
                    return Ok(out);
                }
                if k < range.end {
                    out.push((k, e));
                }
            }
            if b == 0 || out.len() == limit {
                break;
            }
            b -= 1;
        }
    }
    Ok(out)
}

/// Every entry of a side file and of entries in memory (sorted, other ids), in id order.
pub(crate) struct Merged<'a> {
    disk: Option<Arc<DiskIndex>>,
    block: Arc<[(u64, Entry)]>,
    next_block: usize,
    at: usize,
    mem: std::iter::Peekable<std::iter::Copied<std::slice::Iter<'a, (u64, Entry)>>>,
    failed: bool,
}

impl<'a> Merged<'a> {
    pub(crate) fn new(disk: Option<Arc<DiskIndex>>, mem: &'a [(u64, Entry)]) -> Merged<'a> {
        Merged {
            disk,
            block: Arc::from(Vec::new()),
            next_block: 0,
            at: 0,
            mem: mem.iter().copied().peekable(),
            failed: false,
        }
    }

    /// The next entry of the side file, without taking it.
    fn peek_disk(&mut self) -> Result<Option<(u64, Entry)>> {
        while self.at == self.block.len() {
            let Some(d) = &self.disk else { return Ok(None) };
            if self.next_block == d.blocks() {
                return Ok(None);
            }
            self.block = d.block(self.next_block)?;
            self.next_block += 1;
            self.at = 0;
        }
        Ok(Some(self.block[self.at]))
    }
}

impl Iterator for Merged<'_> {
    type Item = Result<(u64, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let disk = match self.peek_disk() {
            Ok(d) => d,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        match (disk, self.mem.peek()) {
            (Some(d), Some(m)) if m.0 < d.0 => self.mem.next().map(Ok),
            (Some(d), _) => {
                self.at += 1;
                Some(Ok(d))
            }
            (None, _) => self.mem.next().map(Ok),
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
