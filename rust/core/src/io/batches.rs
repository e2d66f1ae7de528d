//! The documents of corpus files in Arrow batches, pulled one at a time while a thread of their
//! own reads ahead: the shape an iterating caller (a Python iterator) needs from the push-style
//! [`read_files`].

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use arrow_array::LargeStringArray;

use super::{Document, ReadOptions, ReadReport, read_files};
use crate::error::{Error, Result};

/// Documents of one source, in read order.
pub struct DocumentBatch {
    /// Index of the file in the read.
    pub source: u32,
    /// The 1-based line (JSON Lines) or row (Parquet) of each document's record.
    pub lines: Vec<u64>,
    pub texts: LargeStringArray,
}

impl DocumentBatch {
    fn new(docs: &[Document<'_>]) -> Self {
        DocumentBatch {
            source: docs[0].source,
            lines: docs.iter().map(|d| d.line).collect(),
            texts: docs.iter().map(|d| Some(d.text.as_ref())).collect(),
        }
    }
}

/// Reads files on a thread of its own, at most two batches ahead of the caller.
pub struct DocumentBatches {
    batches: Option<mpsc::Receiver<DocumentBatch>>,
    reader: Option<JoinHandle<Result<ReadReport>>>,
}

impl DocumentBatches {
    /// Starts reading `paths` as [`read_files`] does (parsing on `pool`), in batches of at most
    /// `rows` documents of one source.
    pub fn start(paths: Vec<PathBuf>, options: ReadOptions, pool: Arc<rayon::ThreadPool>, rows: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::invalid("batches need at least 1 row"));
        }
        let (sender, batches) = mpsc::sync_channel(2);
        let reader = std::thread::Builder::new()
            .name("tokensieve-reader".into())
            .spawn(move || {
                read_files(&paths, &options, &pool, &mut |docs| {
                    for same_source in docs.chunk_by(|a, b| a.source == b.source) {
                        for piece in same_source.chunks(rows) {
                            // The receiver is gone: the caller stopped iterating.
                            sender.send(DocumentBatch::new(piece)).map_err(|_| Error::Stopped)?;
                        }
                    }
                    Ok(())
                })
            })
            .map_err(|e| Error::io("<reader thread>", e))?;
        Ok(DocumentBatches { batches: Some(batches), reader: Some(reader) })
    }

    /// The next batch, or `None` once the read has ended; [`finish`](Self::finish) then tells
    /// how.
    pub fn next_batch(&mut self) -> Option<DocumentBatch> {
        self.batches.as_ref()?.recv().ok()
    }

    /// Waits for the reading thread and returns its report, or the error that ended the read.
    /// Called before the batches ran out, it stops the read ([`Error::Stopped`]).
    pub fn finish(&mut self) -> Result<ReadReport> {
        self.batches = None;
        match self.reader.take() {
            Some(reader) => reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Err(Error::invalid("the read has already finished")),
        }
    }
}

impl Drop for DocumentBatches {
    fn drop(&mut self) {
        if self.reader.is_some() {
            // Stops the reading thread at its next batch and waits for it; its outcome is moot.
            let _ = self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;

    use super::*;

    fn write(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    fn pool() -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap())
    }

    #[test]
    fn batches_hold_the_documents_of_one_source_in_order_and_the_report_counts_the_rest() {
        let dir = std::env::temp_dir().join(format!("tokensieve-batches-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = write(&dir, "a.jsonl", "{\"text\": \"one\"}\nnot json\n{\"text\": \"two\"}\n{\"text\": \"three\"}\n");
        let b = write(&dir, "b.jsonl", "{\"text\": \"four\"}\n");
        let mut reader = DocumentBatches::start(vec![a, b], ReadOptions::default(), pool(), 2).unwrap();
        let mut seen = Vec::new();
        while let Some(batch) = reader.next_batch() {
            assert!(batch.texts.len() <= 2);
            let texts = batch.texts.iter().map(|t| t.unwrap().to_owned());
            seen.extend(texts.zip(batch.lines.iter()).map(|(t, &line)| (batch.source, line, t)));
        }
        let expected = [(0, 1, "one"), (0, 3, "two"), (0, 4, "three"), (1, 1, "four")];
        assert_eq!(seen, expected.map(|(s, l, t)| (s, l, t.to_owned())));
        let report = reader.finish().unwrap();
        assert_eq!(report.documents(), 4);
        assert_eq!(report.skipped_total(), 1);
        assert!(matches!(reader.finish(), Err(Error::InvalidArgument(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stopping_early_ends_the_reading_thread() {
        let dir = std::env::temp_dir().join(format!("tokensieve-batches-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body: String = (0..10_000).map(|i| format!("{{\"text\": \"document {i}\"}}\n")).collect();
        let path = write(&dir, "many.jsonl", &body);
        let options = ReadOptions { block_bytes: 1024, ..Default::default() };
        let mut reader = DocumentBatches::start(vec![path.clone()], options, pool(), 10).unwrap();
        assert!(reader.next_batch().is_some());
        assert!(matches!(reader.finish(), Err(Error::Stopped)));
        // A missing file ends the read with its error.
        let mut missing =
            DocumentBatches::start(vec![dir.join("nope.jsonl")], ReadOptions::default(), pool(), 10).unwrap();
        assert!(missing.next_batch().is_none());
        assert!(matches!(missing.finish(), Err(Error::Io { .. })));
        assert!(DocumentBatches::start(vec![path], ReadOptions::default(), pool(), 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
