//! Per-document bucket ids spilled to a file while a corpus is counted, so that a second pass
//! over the same documents (DSIR's weights) reads compact ids instead of reading, parsing and
//! featurising the corpus again.
//!
//! Layout: for each document in read order, its feature count as a little-endian `u32`, then its
//! bucket ids in emission order, little-endian, as `u16` when every bucket fits one (at most
//! 65,536 buckets) and as `u32` otherwise. The file is private to one run: no header, no version.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes of one bucket id in a spill for `buckets` buckets.
fn id_width(buckets: u32) -> usize {
    if buckets <= 1 << 16 { 2 } else { 4 }
}

/// Appends documents' bucket ids to a spill file.
pub struct SpillWriter {
    path: PathBuf,
    out: BufWriter<File>,
    width: usize,
    documents: u64,
}

impl SpillWriter {
    pub fn create(path: &Path, buckets: u32) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let out = BufWriter::with_capacity(1 << 20, file);
        Ok(SpillWriter { path: path.to_owned(), out, width: id_width(buckets), documents: 0 })
    }

    /// Writes the documents whose ids are `ids`, cut after each of `lengths`.
    pub fn write_documents(&mut self, ids: &[u32], lengths: &[u32]) -> Result<()> {
        let mut bytes = Vec::with_capacity(4 * lengths.len() + self.width * ids.len());
        let mut rest = ids;
        for &n in lengths {
            let (doc, tail) = rest.split_at(n as usize);
            rest = tail;
            bytes.extend_from_slice(&n.to_le_bytes());
            if self.width == 2 {
                bytes.extend(doc.iter().flat_map(|&b| (b as u16).to_le_bytes()));
            } else {
                bytes.extend(doc.iter().flat_map(|&b| b.to_le_bytes()));
            }
        }
        self.documents += lengths.len() as u64;
        self.out.write_all(&bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes the file; returns the documents written.
    pub fn finish(mut self) -> Result<u64> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.documents)
    }
}

/// Calls `consume` with batches of spilled documents (each a slice of bucket ids) in order, read
/// about `block_bytes` at a time.
pub fn for_each_spilled_batch(
    path: &Path,
    buckets: u32,
    block_bytes: usize,
    consume: &mut dyn FnMut(&[Vec<u32>]) -> Result<()>,
) -> Result<u64> {
    let width = id_width(buckets);
    let corrupt = |detail: &str| Error::Format { path: path.into(), detail: format!("feature spill: {detail}") };
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
    let mut batch: Vec<Vec<u32>> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut documents = 0u64;
    let mut count = [0u8; 4];
    let mut raw = Vec::new();
    loop {
        match reader.read_exact(&mut count) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(Error::io(path, e)),
        }
        let n = u32::from_le_bytes(count) as usize;
        raw.resize(n * width, 0);
        reader.read_exact(&mut raw).map_err(|_| corrupt("truncated document"))?;
        let ids: Vec<u32> = if width == 2 {
            raw.chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))).collect()
        } else {
            raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        };
        if ids.iter().any(|&b| b >= buckets) {
            return Err(corrupt("bucket id out of range"));
        }
        batch_bytes += raw.len() + 4;
        batch.push(ids);
        documents += 1;
        if batch_bytes >= block_bytes {
            consume(&batch)?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        consume(&batch)?;
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_in_order_at_both_widths() {
        for buckets in [10_000u32, 1 << 20] {
            let path = std::env::temp_dir().join(format!("tokensieve-spill-{}-{buckets}", std::process::id()));
            let docs: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![], vec![buckets - 1; 1000], vec![0]];
            let mut writer = SpillWriter::create(&path, buckets).unwrap();
            let (ids, lengths): (Vec<u32>, Vec<u32>) = (docs.concat(), docs.iter().map(|d| d.len() as u32).collect());
            writer.write_documents(&ids[..3], &lengths[..1]).unwrap();
            writer.write_documents(&ids[3..], &lengths[1..]).unwrap();
            assert_eq!(writer.finish().unwrap(), 4);
            let mut read = Vec::new();
            let n = for_each_spilled_batch(&path, buckets, 16, &mut |batch| {
                read.extend_from_slice(batch);
                Ok(())
            })
            .unwrap();
            assert_eq!((n, read), (4, docs));
            std::fs::write(&path, [5, 0, 0, 0, 1]).unwrap();
            assert!(for_each_spilled_batch(&path, buckets, 16, &mut |_| Ok(())).is_err());
            std::fs::remove_file(&path).unwrap();
        }
    }
}
