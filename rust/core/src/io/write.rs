//! Writing selected documents, each shard under a temporary name renamed into place once
//! complete. JSONL output copies JSONL lines byte for byte (other records become
//! `{"<text field>": text}`), plain or zstd-compressed; Parquet output copies Parquet rows with
//! all their columns (other records become rows of one text column).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{Document, Format, ReadOptions, jsonl, parquet as parquet_input, read_files, sniff_format};
use crate::error::{Error, Result};

/// How output shards are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Jsonl,
    JsonlZstd,
    Parquet,
}

impl OutputFormat {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "jsonl" => Ok(OutputFormat::Jsonl),
            "jsonl.zst" => Ok(OutputFormat::JsonlZstd),
            "parquet" => Ok(OutputFormat::Parquet),
            other => Err(Error::invalid(format!(
                "output format must be \"jsonl\", \"jsonl.zst\" or \"parquet\", got {other:?}"
            ))),
        }
    }

    /// The file name suffix, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::JsonlZstd => "jsonl.zst",
            OutputFormat::Parquet => "parquet",
        }
    }
}

/// Rows of texts gathered before they are written as one Parquet record batch.
const PARQUET_BATCH_ROWS: usize = 8192;

/// A Parquet shard: the writer starts with the first batch, whose schema it takes.
struct ParquetSink {
    file: Option<File>,
    writer: Option<ArrowWriter<File>>,
    /// Records that are not Parquet rows, for a table of their text (and, for chunks, where
    /// each comes from): text, line, chunk.
    texts: Vec<(String, u64, Option<u32>)>,
}

impl ParquetSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        if self.writer.is_none() {
            let file = self.file.take().expect("the file is kept until the writer starts");
            let properties =
                WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
            self.writer = Some(ArrowWriter::try_new(file, batch.schema(), Some(properties))?);
        }
        self.writer.as_mut().expect("started above").write(batch)
    }

    fn flush_texts(&mut self, text_field: &str, source: &str) -> parquet::errors::Result<()> {
        let Some(&(_, _, first_chunk)) = self.texts.first() else { return Ok(()) };
        let rows = std::mem::take(&mut self.texts);
        let mut fields = vec![Field::new(text_field, DataType::Utf8, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0)))];
        if first_chunk.is_some() {
            fields.extend([
                Field::new("source", DataType::Utf8, false),
                Field::new("line", DataType::UInt64, false),
                Field::new("chunk", DataType::UInt32, false),
            ]);
            columns.push(Arc::new(StringArray::from(vec![source; rows.len()])));
            columns.push(Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))));
            columns.push(Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.2.unwrap_or(0)))));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        self.write_batch(&batch)
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
    Parquet(Box<ParquetSink>),
}

/// One output file, invisible under its final name until [`ShardWriter::finish`].
pub struct ShardWriter {
    path: PathBuf,
    temporary: PathBuf,
    sink: Sink,
    text_field: String,
    /// The input's name, written beside each chunk.
    source: String,
    documents: u64,
}

impl ShardWriter {
    /// Starts writing `path` (through `path` + `.tmp`, replacing any leftover of a killed run);
    /// records that are not lines or rows are written as their text under `text_field`, chunks
    /// with the input's name `source`, their line and their position.
    pub fn create(path: &Path, format: OutputFormat, text_field: &str, source: &str) -> Result<Self> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let file = File::create(&temporary).map_err(|e| Error::io(&temporary, e))?;
        let sink = match format {
            OutputFormat::Jsonl => Sink::Plain(BufWriter::with_capacity(1 << 20, file)),
            OutputFormat::JsonlZstd => Sink::Zstd(
                zstd::Encoder::new(BufWriter::with_capacity(1 << 20, file), 3).map_err(|e| Error::io(&temporary, e))?,
            ),
            OutputFormat::Parquet => {
                Sink::Parquet(Box::new(ParquetSink { file: Some(file), writer: None, texts: Vec::new() }))
            }
        };
        Ok(ShardWriter {
            path: path.to_owned(),
            temporary,
            sink,
            text_field: text_field.to_owned(),
            source: source.to_owned(),
            documents: 0,
        })
    }

    /// Whether whole JSONL lines can be copied into this shard.
    pub fn takes_lines(&self) -> bool {
        !matches!(self.sink, Sink::Parquet(_))
    }

    /// Appends `copies` copies of `doc`: its original line if it has one and the shard takes
    /// lines, else its text (for a chunk, with where it comes from).
    pub fn write(&mut self, doc: &Document<'_>, copies: u32) -> Result<()> {
        if !doc.raw.is_empty() && self.takes_lines() {
            return self.write_line(doc.raw, copies);
        }
        if let Sink::Parquet(sink) = &mut self.sink {
            let row = (doc.text.to_string(), doc.line, doc.chunk);
            sink.texts.extend(std::iter::repeat_n(row, copies as usize));
            self.documents += u64::from(copies);
            if sink.texts.len() >= PARQUET_BATCH_ROWS {
                sink.flush_texts(&self.text_field, &self.source).map_err(|e| parquet_error(&self.temporary, e))?;
            }
            return Ok(());
        }
        let mut object = serde_json::Map::new();
        object.insert(self.text_field.clone(), doc.text.as_ref().into());
        if let Some(chunk) = doc.chunk {
            object.insert("source".into(), self.source.as_str().into());
            object.insert("line".into(), doc.line.into());
            object.insert("chunk".into(), chunk.into());
        }
        self.write_line(&serde_json::to_vec(&object).expect("a JSON object of strings and numbers serialises"), copies)
    }

    /// Appends `copies` copies of a JSONL line (given without its line break).
    pub fn write_line(&mut self, bytes: &[u8], copies: u32) -> Result<()> {
        let out: &mut dyn Write = match &mut self.sink {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
            Sink::Parquet(_) => return Err(Error::invalid("a Parquet shard takes rows, not lines")),
        };
        for _ in 0..copies {
            out.write_all(bytes).and_then(|()| out.write_all(b"\n")).map_err(|e| Error::io(&self.temporary, e))?;
        }
        self.documents += u64::from(copies);
        Ok(())
    }

    /// Appends the rows `rows` of `batch` (a row listed twice is written twice) to a Parquet
    /// shard, every column kept.
    pub fn write_rows(&mut self, batch: &RecordBatch, rows: &[u32]) -> Result<()> {
        let Sink::Parquet(sink) = &mut self.sink else {
            return Err(Error::invalid("only a Parquet shard takes rows"));
        };
        let taken = arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows.to_vec()))
            .map_err(|e| parquet_error(&self.temporary, e))?;
        sink.write_batch(&taken).map_err(|e| parquet_error(&self.temporary, e))?;
        self.documents += rows.len() as u64;
        Ok(())
    }

    /// Gives up on the shard: its temporary file is removed.
    pub fn abandon(self) {
        let ShardWriter { temporary, sink, .. } = self;
        drop(sink);
        let _ = std::fs::remove_file(temporary);
    }

    /// Flushes, syncs and renames the shard into place; returns the documents written.
    pub fn finish(self) -> Result<u64> {
        let io = |e| Error::io(&self.temporary, e);
        let file = match self.sink {
            Sink::Plain(w) => w.into_inner().map_err(|e| io(e.into_error()))?,
            Sink::Zstd(w) => w.finish().map_err(io)?.into_inner().map_err(|e| io(e.into_error()))?,
            Sink::Parquet(mut sink) => {
                sink.flush_texts(&self.text_field, &self.source).map_err(|e| parquet_error(&self.temporary, e))?;
                match sink.writer {
                    Some(writer) => writer.into_inner().map_err(|e| parquet_error(&self.temporary, e))?,
                    None => return Err(Error::invalid("a Parquet shard needs at least one row")),
                }
            }
        };
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.temporary, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.documents)
    }
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format { path: path.into(), detail: format!("writing Parquet: {e}") }
}

/// What the scoring read found in one input file.
#[derive(Clone, Debug)]
pub struct ScoredFile {
    pub path: PathBuf,
    /// Documents, or chunks when the read cuts documents into chunks.
    pub documents: u64,
    /// The lines of the file's skipped records other than blank lines, ascending, if all are
    /// known: a JSONL file is then copied line by line without parsing any JSON.
    pub skipped_lines: Option<Vec<u64>>,
}

/// How many times each document is written, one entry per document: a byte each where no
/// document is written more than 255 times (a selection without replacement, whose copies are
/// 0 or 1, costs one byte per document instead of four).
#[derive(Clone, Copy, Debug)]
pub enum Copies<'a> {
    U8(&'a [u8]),
    U32(&'a [u32]),
}

impl<'a> Copies<'a> {
    pub fn len(&self) -> usize {
        match self {
            Copies::U8(c) => c.len(),
            Copies::U32(c) => c.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The copies of document `index`; 0 past the end.
    pub fn get(&self, index: usize) -> u32 {
        match self {
            Copies::U8(c) => c.get(index).map_or(0, |&n| u32::from(n)),
            Copies::U32(c) => c.get(index).copied().unwrap_or(0),
        }
    }

    /// The entries of documents `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Copies<'a> {
        match self {
            Copies::U8(c) => Copies::U8(&c[range]),
            Copies::U32(c) => Copies::U32(&c[range]),
        }
    }

    /// Whether no document is written at all.
    pub fn none_written(&self) -> bool {
        match self {
            Copies::U8(c) => c.iter().all(|&n| n == 0),
            Copies::U32(c) => c.iter().all(|&n| n == 0),
        }
    }
}

/// Writes `copies[k]` copies of the k-th document of `files` (documents numbered in read order,
/// as a read with the same `options` numbers them) to one shard per input file that has any,
/// `out_dir/part-NNNNN.<ext>` with NNNNN the file's position. A file that now yields another
/// number of documents than when it was scored is an error (and leaves no shard behind).
/// Returns `(file index, shard path, documents written)` per shard.
///
/// `between_batches` is called on the calling thread every batch of records or so (a Python
/// binding runs the signal handlers there); an error from it stops the writing, the shard being
/// written is removed and the error returned.
pub fn write_selected_files(
    files: &[ScoredFile],
    copies: Copies<'_>,
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    out_dir: &Path,
    format: OutputFormat,
    between_batches: &mut dyn FnMut() -> Result<()>,
) -> Result<Vec<(usize, PathBuf, u64)>> {
    if files.iter().map(|f| f.documents).sum::<u64>() != copies.len() as u64 {
        return Err(Error::invalid("copies do not match the documents of the files"));
    }
    let mut shards = Vec::new();
    let mut first = 0usize;
    for (index, file) in files.iter().enumerate() {
        let file_copies = copies.slice(first..first + file.documents as usize);
        first += file.documents as usize;
        if file_copies.none_written() {
            continue;
        }
        let shard = out_dir.join(format!("part-{index:05}.{}", format.extension()));
        let mut writer = ShardWriter::create(&shard, format, &options.text_field, &file.path.to_string_lossy())?;
        if let Err(e) = copy_selected(file, file_copies, options, pool, &mut writer, between_batches) {
            writer.abandon();
            return Err(e);
        }
        shards.push((index, shard, writer.finish()?));
    }
    Ok(shards)
}

/// Copies the selected documents of one file into `writer`: Parquet rows with all their
/// columns into Parquet, JSONL line by line when every skipped line is known, else through a
/// full read.
fn copy_selected(
    file: &ScoredFile,
    copies: Copies<'_>,
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    writer: &mut ShardWriter,
    between_batches: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    /// Lines copied between two calls of `between_batches` on the line-by-line path.
    const LINES_PER_BATCH: u64 = 4096;
    let mut seen = 0usize;
    let mut take = || {
        seen += 1;
        copies.get(seen - 1)
    };
    let input_format = sniff_format(&file.path)?;
    let whole_records = options.chunk_words.is_none();
    match (&file.skipped_lines, input_format) {
        (_, Format::Parquet) if whole_records && !writer.takes_lines() => {
            parquet_input::for_each_batch(&file.path, &options.text_field, &mut |batch, texts| {
                between_batches()?;
                let mut rows = Vec::new();
                for (row, text) in texts.iter().enumerate() {
                    if text.is_ok() {
                        rows.extend(std::iter::repeat_n(row as u32, take() as usize));
                    }
                }
                if rows.is_empty() { Ok(()) } else { writer.write_rows(batch, &rows) }
            })?;
        }
        (Some(skipped_lines), Format::Jsonl | Format::GzipJsonl | Format::ZstdJsonl)
            if whole_records && writer.takes_lines() =>
        {
            let mut skipped = skipped_lines.iter().copied().peekable();
            jsonl::for_each_line(&file.path, input_format, options.block_bytes, &mut |line_no, line| {
                if line_no % LINES_PER_BATCH == 0 {
                    between_batches()?;
                }
                if jsonl::is_blank(line) || skipped.next_if_eq(&line_no).is_some() {
                    return Ok(());
                }
                match take() {
                    0 => Ok(()),
                    n => writer.write_line(line, n),
                }
            })?;
        }
        _ => {
            read_files(std::slice::from_ref(&file.path), options, pool, &mut |docs| {
                between_batches()?;
                for doc in docs {
                    match take() {
                        0 => {}
                        n => writer.write(doc, n)?,
                    }
                }
                Ok(())
            })?;
        }
    }
    if seen as u64 != file.documents {
        return Err(Error::Format {
            path: file.path.clone(),
            detail: format!("changed while selecting: {seen} documents now, {} when scored", file.documents),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Copies;

    #[test]
    fn byte_and_word_copies_read_alike() {
        let bytes = [0u8, 1, 0, 255];
        let words = [0u32, 1, 0, 255];
        for copies in [Copies::U8(&bytes), Copies::U32(&words)] {
            assert_eq!((0..5).map(|i| copies.get(i)).collect::<Vec<_>>(), [0, 1, 0, 255, 0]);
            assert_eq!(copies.len(), 4);
            assert!(copies.slice(0..1).none_written() && copies.slice(2..3).none_written());
            assert!(!copies.slice(1..3).none_written());
            assert_eq!(copies.slice(3..4).get(0), 255);
        }
    }
}
