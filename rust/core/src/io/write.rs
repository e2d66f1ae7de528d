//! Writing selected documents: JSONL lines copied byte for byte from the input (other records
//! as `{"<text field>": text}`), plain or zstd-compressed, each shard written under a temporary
//! name and renamed into place once complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Document, ReadOptions, read_files};
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
        let line = if doc.raw.is_empty() {
            let mut object = serde_json::Map::new();
            object.insert(text_field.to_owned(), serde_json::Value::String(doc.text.to_string()));
            Some(serde_json::to_vec(&object).expect("a JSON object of one string serialises"))
        } else {
            None
        };
        let bytes = line.as_deref().unwrap_or(doc.raw);
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

/// Writes `copies[k]` copies of the k-th document of `paths` (documents numbered in read order,
/// as a read with the same `options` numbers them) to one shard per input file that has any,
/// `out_dir/part-NNNNN.<ext>` with NNNNN the file's position. `documents_per_file` are the
/// counts the scoring read found; a file that now yields a different count is an error.
/// Returns `(file index, shard path, documents written)` per shard.
pub fn write_selected_files(
    paths: &[PathBuf],
    documents_per_file: &[u64],
    copies: &[u32],
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    out_dir: &Path,
    format: OutputFormat,
) -> Result<Vec<(usize, PathBuf, u64)>> {
    if paths.len() != documents_per_file.len() || documents_per_file.iter().sum::<u64>() != copies.len() as u64 {
        return Err(Error::invalid("copies and documents_per_file do not match the files"));
    }
    let mut shards = Vec::new();
    let mut first = 0usize;
    for (index, (path, &expected)) in paths.iter().zip(documents_per_file).enumerate() {
        let file_copies = &copies[first..first + expected as usize];
        first += expected as usize;
        if file_copies.iter().all(|&c| c == 0) {
            continue;
        }
        let shard = out_dir.join(format!("part-{index:05}.{}", format.extension()));
        let mut writer = ShardWriter::create(&shard, format)?;
        let mut next = 0usize;
        let report = read_files(std::slice::from_ref(path), options, pool, &mut |docs| {
            for doc in docs {
                let copies = file_copies.get(next).copied().unwrap_or(0);
                next += 1;
                if copies > 0 {
                    writer.write(doc, copies, &options.text_field)?;
                }
            }
            Ok(())
        })?;
        if report.documents() != expected {
            return Err(Error::Format {
                path: path.clone(),
                detail: format!(
                    "changed while selecting: {} documents now, {expected} when scored",
                    report.documents()
                ),
            });
        }
        shards.push((index, shard.clone(), writer.finish()?));
    }
    Ok(shards)
}
