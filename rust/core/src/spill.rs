//! Per-document bucket ids spilled to a file while a corpus is counted, so that a second pass
//! over the same documents (DSIR's weights) reads compact ids instead of reading, parsing and
//! featurising the corpus again.
//!
//! Layout: for each document in read order, its feature count as a little-endian `u32`, then its
//! bucket ids in emission order, little-endian, as `u16` when every bucket fits one (at most
//! 65,536 buckets) and as `u32` otherwise. The file is private to one run: no header, no version.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes of one bucket id in a spill for `buckets` buckets.
pub fn id_width(buckets: u32) -> usize {
    if buckets <= 1 << 16 { 2 } else { 4 }
}

/// Documents' bucket ids encoded as a spill holds them, built on any thread and handed to a
/// [`SpillWriter`] in document order.
#[derive(Default)]
pub struct SpillBuffer {
    bytes: Vec<u8>,
    documents: u64,
    /// Where the count of the document being pushed goes.
    open: usize,
}

impl SpillBuffer {
    /// Starts the next document.
    pub fn start_document(&mut self) {
        self.open = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        self.documents += 1;
    }

    /// Appends a bucket id of the current document, `width` bytes wide.
    #[inline]
    pub fn push(&mut self, bucket: u32, width: usize) {
        self.bytes.extend_from_slice(&bucket.to_le_bytes()[..width]);
    }

    /// Ends the current document, `width` bytes per id.
    pub fn end_document(&mut self, width: usize) {
        let count = ((self.bytes.len() - self.open - 4) / width) as u32;
        self.bytes[self.open..self.open + 4].copy_from_slice(&count.to_le_bytes());
    }
}

/// Appends documents' bucket ids to a spill file.
pub struct SpillWriter {
    path: PathBuf,
    out: BufWriter<File>,
    documents: u64,
}

impl SpillWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(SpillWriter { path: path.to_owned(), out: BufWriter::with_capacity(1 << 20, file), documents: 0 })
    }

    /// Appends the documents of `buffer`.
    pub fn write(&mut self, buffer: &SpillBuffer) -> Result<()> {
        self.documents += buffer.documents;
        self.out.write_all(&buffer.bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes the file; returns the documents written.
    pub fn finish(mut self) -> Result<u64> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.documents)
    }
}

/// One spilled document: its ids, `width` bytes each, little-endian.
#[derive(Clone, Copy)]
pub struct SpilledDocument<'a> {
    pub ids: &'a [u8],
    pub width: usize,
}

impl SpilledDocument<'_> {
    pub fn len(&self) -> usize {
        self.ids.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Calls `f` with each bucket id, in order.
    #[inline]
    pub fn for_each_bucket(&self, mut f: impl FnMut(u32)) {
        if self.width == 2 {
            self.ids.chunks_exact(2).for_each(|b| f(u32::from(u16::from_le_bytes([b[0], b[1]]))));
        } else {
            self.ids.chunks_exact(4).for_each(|b| f(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
    }

    fn max_bucket(&self) -> Option<u32> {
        let mut max = None;
        self.for_each_bucket(|b| max = max.max(Some(b)));
        max
    }
}

/// Calls `consume` with batches of spilled documents in order, read about `block_bytes` at a
/// time. Every id is checked against `buckets`. Returns the documents read.
pub fn for_each_spilled_batch(
    path: &Path,
    buckets: u32,
    block_bytes: usize,
    consume: &mut dyn FnMut(&[SpilledDocument<'_>]) -> Result<()>,
) -> Result<u64> {
    let width = id_width(buckets);
    let corrupt = |detail: &str| Error::Format { path: path.into(), detail: format!("feature spill: {detail}") };
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut block: Vec<u8> = Vec::new();
    let mut documents = 0u64;
    let mut eof = false;
    while !eof || !block.is_empty() {
        if !eof && block.len() < block_bytes {
            let before = block.len();
            (&mut file).take(block_bytes as u64).read_to_end(&mut block).map_err(|e| Error::io(path, e))?;
            eof = block.len() == before;
            continue;
        }
        // Whole documents at the front of the block.
        let mut docs = Vec::new();
        let mut at = 0;
        while let Some(count) = block.get(at..at + 4) {
            let n = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
            let Some(ids) = block.get(at + 4..at + 4 + n * width) else { break };
            docs.push(SpilledDocument { ids, width });
            at += 4 + n * width;
        }
        if docs.is_empty() {
            if eof {
                return Err(corrupt("truncated document"));
            }
            // A document longer than the block: read more.
            let before = block.len();
            (&mut file).take(block_bytes as u64).read_to_end(&mut block).map_err(|e| Error::io(path, e))?;
            eof = block.len() == before;
            continue;
        }
        if docs.iter().any(|d| d.max_bucket().is_some_and(|b| b >= buckets)) {
            return Err(corrupt("bucket id out of range"));
        }
        documents += docs.len() as u64;
        consume(&docs)?;
        block.drain(..at);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_in_order_at_both_widths() {
        for buckets in [10_000u32, 1 << 20] {
            let width = id_width(buckets);
            let path = std::env::temp_dir().join(format!("tokensieve-spill-{}-{buckets}", std::process::id()));
            let docs: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![], vec![buckets - 1; 1000], vec![0]];
            let mut writer = SpillWriter::create(&path).unwrap();
            for part in [&docs[..1], &docs[1..]] {
                let mut buffer = SpillBuffer::default();
                for doc in part {
                    buffer.start_document();
                    doc.iter().for_each(|&b| buffer.push(b, width));
                    buffer.end_document(width);
                }
                writer.write(&buffer).unwrap();
            }
            assert_eq!(writer.finish().unwrap(), 4);
            for block_bytes in [1, 16, 1 << 20] {
                let mut read = Vec::new();
                let n = for_each_spilled_batch(&path, buckets, block_bytes, &mut |batch| {
                    read.extend(batch.iter().map(|d| {
                        let mut ids = Vec::new();
                        d.for_each_bucket(|b| ids.push(b));
                        ids
                    }));
                    Ok(())
                })
                .unwrap();
                assert_eq!((n, &read), (4, &docs));
            }
            std::fs::write(&path, [5, 0, 0, 0, 1]).unwrap();
            assert!(for_each_spilled_batch(&path, buckets, 16, &mut |_| Ok(())).is_err());
            std::fs::remove_file(&path).unwrap();
        }
    }
}
