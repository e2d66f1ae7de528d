//! Per-document bucket ids spilled to a file while a corpus is counted, so that a second pass
//! over the same documents (DSIR's weights) reads compact ids instead of reading, parsing and
//! featurising the corpus again.
//!
//! Layout: for each document in read order, its feature count as a little-endian `u32`, then its
//! bucket ids in emission order, little-endian, as `u16` when every bucket fits one (at most
//! 65,536 buckets) and as `u32` otherwise. The file is private to one run: no header, no version.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::mpsc;

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
}

impl SpillBuffer {
    /// Appends one document's bucket ids, `width` bytes each (see [`id_width`]).
    pub fn push_document(&mut self, buckets: &[u32], width: usize) {
        self.bytes.extend_from_slice(&(buckets.len() as u32).to_le_bytes());
        let start = self.bytes.len();
        self.bytes.resize(start + buckets.len() * width, 0);
        let out = &mut self.bytes[start..];
        // One loop per width, so that each id is a fixed-size store rather than a copy call.
        if width == 2 {
            for (slot, &b) in out.chunks_exact_mut(2).zip(buckets) {
                slot.copy_from_slice(&(b as u16).to_le_bytes());
            }
        } else {
            for (slot, &b) in out.chunks_exact_mut(4).zip(buckets) {
                slot.copy_from_slice(&b.to_le_bytes());
            }
        }
        self.documents += 1;
    }
}

/// Appends documents' bucket ids to a spill file on a thread of its own, so that the counting
/// threads do not wait for the file system; at most `SPILL_QUEUE` buffers wait to be written.
pub struct SpillWriter {
    queue: Option<mpsc::SyncSender<SpillBuffer>>,
    writer: Option<std::thread::JoinHandle<Result<u64>>>,
}

/// Buffers handed to the writing thread and not yet written.
const SPILL_QUEUE: usize = 8;

impl SpillWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let (queue, buffers) = mpsc::sync_channel::<SpillBuffer>(SPILL_QUEUE);
        let path = path.to_owned();
        let writer = std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut documents = 0;
            for buffer in buffers {
                out.write_all(&buffer.bytes).map_err(|e| Error::io(&path, e))?;
                documents += buffer.documents;
            }
            out.flush().map_err(|e| Error::io(&path, e))?;
            Ok(documents)
        });
        Ok(SpillWriter { queue: Some(queue), writer: Some(writer) })
    }

    /// Queues the documents of `buffer` to be appended.
    pub fn write(&mut self, buffer: SpillBuffer) -> Result<()> {
        let sent = self.queue.as_ref().is_some_and(|queue| queue.send(buffer).is_ok());
        // The writing thread hangs up only when a write failed: `finish` reports why.
        if sent { Ok(()) } else { self.finish_writing().map(|_| ()) }
    }

    /// Waits for every queued buffer to be written and the file flushed; returns the documents
    /// written.
    pub fn finish(mut self) -> Result<u64> {
        self.finish_writing()
    }

    fn finish_writing(&mut self) -> Result<u64> {
        self.queue = None;
        match self.writer.take() {
            Some(writer) => writer.join().expect("the spill writer panicked"),
            None => Err(Error::invalid("the feature spill was already closed after a failed write")),
        }
    }
}

impl Drop for SpillWriter {
    fn drop(&mut self) {
        // An early return (an error elsewhere) still stops the writing thread.
        let _ = self.finish_writing();
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

    /// The largest bucket id, if any (a loop the compiler vectorises).
    pub fn max_bucket(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        Some(if self.width == 2 {
            self.ids.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).fold(0, u16::max).into()
        } else {
            self.ids.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).fold(0, u32::max)
        })
    }
}

/// Calls `consume` with batches of spilled documents in order, read about `block_bytes` at a
/// time. The consumer checks the ids against the bucket count ([`SpilledDocument::max_bucket`],
/// on its own threads). Returns the documents read.
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
                    buffer.push_document(doc, width);
                }
                writer.write(buffer).unwrap();
            }
            assert_eq!(writer.finish().unwrap(), 4);
            for block_bytes in [1, 16, 1 << 20] {
                let mut read = Vec::new();
                let n = for_each_spilled_batch(&path, buckets, block_bytes, &mut |batch| {
                    read.extend(batch.iter().map(|d| {
                        let mut id = [0u8; 4];
                        d.ids
                            .chunks_exact(d.width)
                            .map(|b| {
                                id[..b.len()].copy_from_slice(b);
                                u32::from_le_bytes(id)
                            })
                            .collect::<Vec<u32>>()
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
