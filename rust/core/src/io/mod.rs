//! Streaming corpus readers that account for every record.
//!
//! A *record* is a line of a JSONL file, a row of a Parquet file or Arrow array, or an item of an
//! in-memory list. Each record becomes a [`Document`] or is skipped with a [`SkipReason`]; the
//! [`ReadReport`] counts both, per source, so `records == documents + skipped` always holds.
//! With [`OnError::Raise`] the first bad record (blank lines aside) stops the read with
//! [`Error::BadRecord`] naming `file:line`.
//!
//! Formats are recognised by their first bytes: gzip, zstd and Parquet magic numbers; anything
//! else is read as plain JSONL. Memory stays bounded: JSONL is read in blocks of whole lines
//! (about [`ReadOptions::block_bytes`], up to four blocks per file being decompressed, one
//! file per pool thread), Parquet one record batch at a time.

mod arrow;
mod batches;
mod json_text;
mod jsonl;
mod parquet;
mod write;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use self::arrow::{arrow_records, push_arrow_documents};
pub use self::batches::{DocumentBatch, DocumentBatches};
pub use self::jsonl::parse_record;
pub use self::write::{Copies, OutputFormat, ScoredFile, ShardWriter, write_selected_files};

use crate::error::{Error, Result};

/// One document: where it came from and its text.
#[derive(Clone, Debug)]
pub struct Document<'a> {
    /// Index of the source (file, or in-memory input) in the read.
    pub source: u32,
    /// 1-based record number within the source: the line of a JSONL file, the row of a table.
    pub line: u64,
    pub text: Cow<'a, str>,
    /// The record's bytes as read, for JSONL a whole line without its line break; empty for
    /// records that are not lines (Parquet and Arrow rows, items of a list) and for chunks.
    pub raw: &'a [u8],
    /// For a piece of a record cut by [`chunk_documents`], its 0-based position in the record.
    pub chunk: Option<u32>,
}

impl AsRef<str> for Document<'_> {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Why a record did not become a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// An empty or all-whitespace line. Always skipped, never raised.
    BlankLine,
    InvalidUtf8,
    MalformedJson,
    /// A JSON string escape that encodes half of a UTF-16 surrogate pair.
    LoneSurrogate,
    /// The text field is absent or null.
    MissingField,
    /// The text field holds something other than a string.
    NotAString,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::BlankLine,
        SkipReason::InvalidUtf8,
        SkipReason::MalformedJson,
        SkipReason::LoneSurrogate,
        SkipReason::MissingField,
        SkipReason::NotAString,
    ];

    /// The public name used in reports and exceptions.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::BlankLine => "blank_line",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::MalformedJson => "malformed_json",
            SkipReason::LoneSurrogate => "lone_surrogate",
            SkipReason::MissingField => "missing_field",
            SkipReason::NotAString => "not_a_string",
        }
    }
}

/// A record that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    pub reason: SkipReason,
    pub detail: String,
}

impl Skip {
    pub fn new(reason: SkipReason, detail: impl Into<String>) -> Self {
        Skip { reason, detail: detail.into() }
    }
}

/// What to do with a bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Count it in the report and go on.
    Skip,
    /// Stop with [`Error::BadRecord`].
    Raise,
}

impl OnError {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "skip" => Ok(OnError::Skip),
            "raise" => Ok(OnError::Raise),
            other => Err(Error::invalid(format!("on_error must be \"skip\" or \"raise\", got {other:?}"))),
        }
    }
}

/// How to read a corpus.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The JSON key or table column holding the text.
    pub text_field: String,
    pub on_error: OnError,
    /// Approximate bytes of JSONL per block handed to the consumer.
    pub block_bytes: usize,
    /// When set, grows by the bytes of the files (as stored, compressed or not) read so far, for
    /// progress reports.
    pub bytes_read: Option<Arc<AtomicU64>>,
    /// When set, documents reach the consumer as pieces of this many words ([`chunk_documents`]).
    pub chunk_words: Option<usize>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            text_field: "text".into(),
            on_error: OnError::Skip,
            block_bytes: 4 << 20,
            bytes_read: None,
            chunk_words: None,
        }
    }
}

/// A reader that adds the bytes it reads to a shared counter.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts for one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceReport {
    /// File path, or a label such as `<list>` for in-memory input.
    pub name: String,
    /// Records seen (lines, rows or items).
    pub records: u64,
    pub documents: u64,
    /// UTF-8 bytes of the documents' texts.
    pub text_bytes: u64,
    /// Size on disk (compressed, if it is); 0 for in-memory input.
    pub bytes: u64,
    /// Pieces the documents were cut into ([`chunk_documents`]); 0 when they were not.
    pub chunks: u64,
}

/// One skipped record, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    pub source: u32,
    pub line: u64,
    pub reason: SkipReason,
    pub detail: String,
}

/// Skipped records kept with their location; counts beyond it stay exact.
pub const MAX_SKIPPED_LISTED: usize = 10_000;

/// Everything a read saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    pub sources: Vec<SourceReport>,
    /// Skipped records per reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first [`MAX_SKIPPED_LISTED`] skipped records, blank lines excluded, in read order.
    pub skipped_records: Vec<SkippedRecord>,
}

impl ReadReport {
    pub fn records(&self) -> u64 {
        self.sources.iter().map(|s| s.records).sum()
    }
    pub fn documents(&self) -> u64 {
        self.sources.iter().map(|s| s.documents).sum()
    }
    /// What readers handed on: chunks when documents were cut into chunks, else documents.
    pub fn units(&self) -> u64 {
        match self.sources.iter().map(|s| s.chunks).sum() {
            0 => self.documents(),
            chunks => chunks,
        }
    }
    pub fn text_bytes(&self) -> u64 {
        self.sources.iter().map(|s| s.text_bytes).sum()
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Starts a new source and returns its index.
    pub fn add_source(&mut self, name: impl Into<String>, bytes: u64) -> u32 {
        self.sources.push(SourceReport { name: name.into(), bytes, ..Default::default() });
        (self.sources.len() - 1) as u32
    }

    /// Records a good document of `text_bytes` bytes.
    pub fn count_document(&mut self, source: u32, text_bytes: usize) {
        let s = &mut self.sources[source as usize];
        s.records += 1;
        s.documents += 1;
        s.text_bytes += text_bytes as u64;
    }

    /// Records a skipped record, or returns [`Error::BadRecord`] when `on_error` says raise.
    pub fn count_skip(&mut self, source: u32, line: u64, skip: Skip, on_error: OnError) -> Result<()> {
        if on_error == OnError::Raise && skip.reason != SkipReason::BlankLine {
            return Err(Error::BadRecord {
                path: self.sources[source as usize].name.clone(),
                line,
                reason: skip.reason,
                detail: skip.detail,
            });
        }
        self.sources[source as usize].records += 1;
        *self.skipped.entry(skip.reason).or_default() += 1;
        if skip.reason != SkipReason::BlankLine && self.skipped_records.len() < MAX_SKIPPED_LISTED {
            self.skipped_records.push(SkippedRecord { source, line, reason: skip.reason, detail: skip.detail });
        }
        Ok(())
    }

    /// Accounts for parsed records in order and keeps the documents.
    pub fn collect<'a>(
        &mut self,
        source: u32,
        first_line: u64,
        parsed: Vec<std::result::Result<Cow<'a, str>, Skip>>,
        on_error: OnError,
        docs: &mut Vec<Document<'a>>,
    ) -> Result<()> {
        docs.reserve(parsed.len());
        for (i, record) in parsed.into_iter().enumerate() {
            let line = first_line + i as u64;
            if let Some(text) = self.account(source, line, record, on_error)? {
                docs.push(Document { source, line, text, raw: &[], chunk: None });
            }
        }
        Ok(())
    }

    /// Accounts for parsed records of an in-memory source and returns one text per record, an
    /// empty text standing for each skipped one, so that positions stay aligned with the input.
    pub fn collect_aligned<'a>(
        &mut self,
        source: u32,
        parsed: Vec<std::result::Result<Cow<'a, str>, Skip>>,
        on_error: OnError,
    ) -> Result<Vec<Cow<'a, str>>> {
        let mut texts = Vec::with_capacity(parsed.len());
        for (i, record) in parsed.into_iter().enumerate() {
            texts.push(self.account(source, i as u64 + 1, record, on_error)?.unwrap_or_default());
        }
        Ok(texts)
    }

    fn account<'a>(
        &mut self,
        source: u32,
        line: u64,
        record: std::result::Result<Cow<'a, str>, Skip>,
        on_error: OnError,
    ) -> Result<Option<Cow<'a, str>>> {
        match record {
            Ok(text) => {
                self.count_document(source, text.len());
                Ok(Some(text))
            }
            Err(skip) => self.count_skip(source, line, skip, on_error).map(|()| None),
        }
    }
}

/// The formats we read, told apart by magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jsonl,
    GzipJsonl,
    ZstdJsonl,
    Parquet,
}

fn sniff_format(path: &Path) -> Result<Format> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]).map_err(|e| Error::io(path, e))? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(match &magic[..filled] {
        [0x1f, 0x8b, ..] => Format::GzipJsonl,
        [0x28, 0xb5, 0x2f, 0xfd] => Format::ZstdJsonl,
        b"PAR1" => Format::Parquet,
        _ => Format::Jsonl,
    })
}

/// Streams the documents of `paths` (or their chunks, see [`ReadOptions::chunk_words`]), in
/// file order then record order, to `consume` in batches, parsing on `pool`. While one file is
/// read, up to `pool.current_num_threads() - 1` of the JSONL files after it decompress on threads
/// of their own; an error in one of them is still reported in its turn. Returns the report of
/// everything read.
pub fn read_files(
    paths: &[PathBuf],
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    consume: &mut dyn FnMut(&[Document<'_>]) -> Result<()>,
) -> Result<ReadReport> {
    if options.block_bytes == 0 || options.chunk_words == Some(0) {
        return Err(Error::invalid("block_bytes and chunk_words must be at least 1"));
    }
    let mut report = ReadReport::default();
    let mut chunks = vec![0u64; paths.len()];
    let mut consume_units = |docs: &[Document<'_>]| match options.chunk_words {
        None => consume(docs),
        Some(words) => {
            let pieces = chunk_documents(docs, words);
            for piece in &pieces {
                chunks[piece.source as usize] += 1;
            }
            consume(&pieces)
        }
    };
    let mut lookahead = jsonl::Lookahead::new(paths, options, pool.current_num_threads());
    for (index, path) in paths.iter().enumerate() {
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        let source = report.add_source(path.display().to_string(), bytes);
        match sniff_format(path)? {
            Format::Parquet => parquet::read(path, source, options, &mut report, &mut consume_units)?,
            format => jsonl::read(&mut lookahead, index, format, source, pool, &mut report, &mut consume_units)?,
        }
    }
    for (source, count) in report.sources.iter_mut().zip(chunks) {
        source.chunks = count;
    }
    Ok(report)
}

/// Cuts each document into pieces of `words` words, as the DSIR paper did (128 words): the
/// text is split on single spaces and every `words` of them make a piece, so a piece is the
/// substring between two cuts and the pieces joined by one space give the text back. Each piece
/// keeps its document's source and line, and its position in [`Document::chunk`]. A document
/// always gives at least one piece (an empty text, one empty piece).
pub fn chunk_documents<'a>(docs: &'a [Document<'_>], words: usize) -> Vec<Document<'a>> {
    assert!(words > 0, "chunks need at least one word");
    let mut pieces = Vec::with_capacity(docs.len());
    for doc in docs {
        let text: &'a str = &doc.text;
        let mut start = 0;
        let cuts = memchr::memchr_iter(b' ', text.as_bytes()).skip(words - 1).step_by(words);
        for (index, cut) in cuts.chain(std::iter::once(text.len())).enumerate() {
            let (text, chunk) = (Cow::Borrowed(&text[start..cut]), Some(index as u32));
            pieces.push(Document { source: doc.source, line: doc.line, text, raw: &[], chunk });
            start = cut + 1;
        }
    }
    pieces
}

#[cfg(test)]
mod tests;
