//! Writing selected documents: JSONL lines copied byte for byte from the input (other records
//! as `{"<text field>": text}`), plain or zstd-compressed, each shard written under a temporary
//! name and renamed into place once complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Document, Format, ReadOptions, jsonl, read_files, sniff_format};
use crate::error::{Error, Result};

/// How output shards are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Jsonl,
    JsonlZstd,
}

impl OutputFormat {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "jsonl" => Ok(OutputFormat::Jsonl),
            "jsonl.zst" => Ok(OutputFormat::JsonlZstd),
            other => Err(Error::invalid(format!("output format must be \"jsonl\" or \"jsonl.zst\", got {other:?}"))),
        }
    }

    /// The file name suffix, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::JsonlZstd => "jsonl.zst",
        }
    }
}

enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

/// One output file, invisible under its final name until [`ShardWriter::finish`].
pub struct ShardWriter {
    path: PathBuf,
    temporary: PathBuf,
    sink: Sink,
    documents: u64,
}

impl ShardWriter {
    /// Starts writing `path` (through `path` + `.tmp`, replacing any leftover of a killed run).
    pub fn create(path: &Path, format: OutputFormat) -> Result<Self> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let file = BufWriter::with_capacity(1 << 20, File::create(&temporary).map_err(|e| Error::io(&temporary, e))?);
        let sink = match format {
            OutputFormat::Jsonl => Sink::Plain(file),
            OutputFormat::JsonlZstd => Sink::Zstd(zstd::Encoder::new(file, 3).map_err(|e| Error::io(&temporary, e))?),
        };
        Ok(ShardWriter { path: path.to_owned(), temporary, sink, documents: 0 })
    }

    /// Appends `copies` copies of `doc`: its original line, or a JSON object holding its text.
    pub fn write(&mut self, doc: &Document<'_>, copies: u32, text_field: &str) -> Result<()> {
        if !doc.raw.is_empty() {
            return self.write_line(doc.raw, copies);
        }
        let mut object = serde_json::Map::new();
        object.insert(text_field.to_owned(), serde_json::Value::String(doc.text.to_string()));
        self.write_line(&serde_json::to_vec(&object).expect("a JSON object of one string serialises"), copies)
    }

    /// Appends `copies` copies of a line (given without its line break).
    pub fn write_line(&mut self, bytes: &[u8], copies: u32) -> Result<()> {
        let out: &mut dyn Write = match &mut self.sink {
            Sink::Plain(w) => w,
            Sink::Zstd(w) => w,
        };
        for _ in 0..copies {
            out.write_all(bytes).and_then(|()| out.write_all(b"\n")).map_err(|e| Error::io(&self.temporary, e))?;
        }
        self.documents += u64::from(copies);
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
        };
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.temporary, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.documents)
    }
}

/// What the scoring read found in one input file.
#[derive(Clone, Debug)]
pub struct ScoredFile {
    pub path: PathBuf,
    pub documents: u64,
    /// The lines of the file's skipped records other than blank lines, ascending, if all are
    /// known: a JSONL file is then copied line by line without parsing any JSON.
    pub skipped_lines: Option<Vec<u64>>,
}

/// Writes `copies[k]` copies of the k-th document of `files` (documents numbered in read order,
/// as a read with the same `options` numbers them) to one shard per input file that has any,
/// `out_dir/part-NNNNN.<ext>` with NNNNN the file's position. A file that now yields another
/// number of documents than when it was scored is an error (and leaves no shard behind).
/// Returns `(file index, shard path, documents written)` per shard.
pub fn write_selected_files(
    files: &[ScoredFile],
    copies: &[u32],
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    out_dir: &Path,
    format: OutputFormat,
) -> Result<Vec<(usize, PathBuf, u64)>> {
    if files.iter().map(|f| f.documents).sum::<u64>() != copies.len() as u64 {
        return Err(Error::invalid("copies do not match the documents of the files"));
    }
    let mut shards = Vec::new();
    let mut first = 0usize;
    for (index, file) in files.iter().enumerate() {
        let file_copies = &copies[first..first + file.documents as usize];
        first += file.documents as usize;
        if file_copies.iter().all(|&c| c == 0) {
            continue;
        }
        let shard = out_dir.join(format!("part-{index:05}.{}", format.extension()));
        let mut writer = ShardWriter::create(&shard, format)?;
        if let Err(e) = copy_selected(file, file_copies, options, pool, &mut writer) {
            writer.abandon();
            return Err(e);
        }
        shards.push((index, shard, writer.finish()?));
    }
    Ok(shards)
}

/// Copies the selected documents of one file into `writer`: line by line when every skipped
/// line of a JSONL file is known, else through a full read.
fn copy_selected(
    file: &ScoredFile,
    copies: &[u32],
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    writer: &mut ShardWriter,
) -> Result<()> {
    let mut seen = 0usize;
    let mut take = || {
        seen += 1;
        copies.get(seen - 1).copied().unwrap_or(0)
    };
    let input_format = sniff_format(&file.path)?;
    match (&file.skipped_lines, input_format) {
        (Some(skipped_lines), Format::Jsonl | Format::GzipJsonl | Format::ZstdJsonl) => {
            let mut skipped = skipped_lines.iter().copied().peekable();
            jsonl::for_each_line(&file.path, input_format, options.block_bytes, &mut |line_no, line| {
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
                for doc in docs {
                    match take() {
                        0 => {}
                        n => writer.write(doc, n, &options.text_field)?,
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
