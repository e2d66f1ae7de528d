//! JSON Lines, plain or compressed: blocks of whole lines are read (and decompressed) on a
//! thread per file while the previous block is parsed on the pool. Files after the one being
//! read start decompressing early ([`Lookahead`]), one file per pool thread, so a corpus of many
//! compressed shards is not held to the speed of one decompressing thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use rayon::prelude::*;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{CountingReader, Document, Format, ReadOptions, ReadReport, Skip, SkipReason, json_text, sniff_format};
use crate::error::{Error, Result};

fn open(path: &Path, format: Format, bytes_read: Option<&Arc<AtomicU64>>) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file: Box<dyn Read + Send> = match bytes_read {
        Some(count) => Box::new(CountingReader { inner: file, count: count.clone() }),
        None => Box::new(file),
    };
    let file = BufReader::with_capacity(1 << 16, file);
    Ok(match format {
        Format::Jsonl => Box::new(file),
        Format::GzipJsonl => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::ZstdJsonl => Box::new(zstd::Decoder::with_buffer(file).map_err(|e| Error::io(path, e))?),
        Format::Parquet => unreachable!("Parquet is not read as lines"),
    })
}

/// Whole lines, and the 1-based number of the first.
struct Block {
    /// The lines are `buffer[..len]`; the rest is room kept for when the buffer is reused.
    buffer: Vec<u8>,
    len: usize,
    first_line: u64,
}

impl Block {
    fn bytes(&self) -> &[u8] {
        &self.buffer[..self.len]
    }
}

/// Block buffers handed back by the reader for the decoders to fill again. A reused buffer
/// keeps its length, so it is neither zeroed nor mapped in again (both showed in profiles).
#[derive(Clone, Default)]
struct SpareBuffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl SpareBuffers {
    /// Spare buffers beyond this many are freed.
    const MAX_KEPT: usize = 16;

    fn take(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut spare = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < Self::MAX_KEPT {
            spare.push(buffer);
        }
    }
}

/// Cuts a stream into blocks of about `target` bytes that end at a line break (the last block
/// may end without one); an enormous line is kept whole.
struct BlockReader {
    reader: Box<dyn Read + Send>,
    target: usize,
    /// The start of a line that the last block cut off.
    carry: Vec<u8>,
    next_line: u64,
    eof: bool,
}

impl BlockReader {
    fn new(reader: Box<dyn Read + Send>, target: usize) -> Self {
        BlockReader { reader, target, carry: Vec::new(), next_line: 1, eof: false }
    }

    /// The next block, in `buffer` (its contents are overwritten; it grows as needed).
    fn next_block(&mut self, mut buffer: Vec<u8>) -> std::io::Result<Option<Block>> {
        while !self.eof {
            let mut filled = self.carry.len();
            if buffer.len() < filled {
                buffer.resize(filled, 0);
            }
            buffer[..filled].copy_from_slice(&self.carry);
            self.carry.clear();
            // The carried bytes hold no line break; only new bytes are searched for one, so an
            // enormous line costs one pass.
            let mut has_line_break = false;
            loop {
                if filled >= self.target && has_line_break {
                    break;
                }
                // Up to `target` bytes, then (a line longer than that) 64 KiB at a time.
                let end = if filled < self.target { self.target } else { filled + (1 << 16) };
                if buffer.len() < end {
                    buffer.resize(end.max(2 * buffer.len()), 0);
                }
                match self.reader.read(&mut buffer[filled..end]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        has_line_break = has_line_break || memchr::memchr(b'\n', &buffer[filled..filled + n]).is_some();
                        filled += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let len = match self.eof {
                true => filled,
                false => memchr::memrchr(b'\n', &buffer[..filled]).expect("loop exits with a line break") + 1,
            };
            self.carry.extend_from_slice(&buffer[len..filled]);
            if len == 0 {
                continue;
            }
            let bytes = &buffer[..len];
            let lines = memchr::memchr_iter(b'\n', bytes).count() as u64 + u64::from(bytes[len - 1] != b'\n');
            let block = Block { buffer, len, first_line: self.next_line };
            self.next_line += lines;
            return Ok(Some(block));
        }
        Ok(None)
    }
}

/// Sends the blocks of `blocks` down `tx`, in buffers taken from `spare`, until the stream ends,
/// fails, or the receiver hangs up.
fn produce_blocks(mut blocks: BlockReader, spare: SpareBuffers, tx: mpsc::SyncSender<std::io::Result<Block>>) {
    loop {
        let block = match blocks.next_block(spare.take()) {
            Ok(Some(block)) => Ok(block),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let failed = block.is_err();
        if tx.send(block).is_err() || failed {
            return;
        }
    }
}

/// Calls `consume(line number, line)` for every line of a JSONL file (1-based, without its line
/// break), without parsing any.
pub(super) fn for_each_line(
    path: &Path,
    format: Format,
    block_bytes: usize,
    consume: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut blocks = BlockReader::new(open(path, format, None)?, block_bytes);
    let mut buffer = Vec::new();
    while let Some(block) = blocks.next_block(buffer).map_err(|e| Error::io(path, e))? {
        for (i, line) in split_lines(block.bytes()).into_iter().enumerate() {
            consume(block.first_line + i as u64, line)?;
        }
        buffer = block.buffer;
    }
    Ok(())
}

/// A JSONL file read and decompressed on a thread of its own, at most two blocks ahead of the
/// caller.
pub(super) struct Decoder {
    blocks: Option<mpsc::Receiver<std::io::Result<Block>>>,
    thread: Option<JoinHandle<()>>,
}

impl Decoder {
    fn start(path: &Path, format: Format, options: &ReadOptions, spare: &SpareBuffers) -> Result<Self> {
        let blocks = BlockReader::new(open(path, format, options.bytes_read.as_ref())?, options.block_bytes);
        let (tx, rx) = mpsc::sync_channel(2);
        let spare = spare.clone();
        let thread = std::thread::Builder::new()
            .name("tokensieve-decoder".into())
            .spawn(move || produce_blocks(blocks, spare, tx))
            .map_err(|e| Error::io(path, e))?;
        Ok(Decoder { blocks: Some(rx), thread: Some(thread) })
    }

    /// The next block, `None` at the end of the file.
    fn next_block(&self) -> Option<std::io::Result<Block>> {
        self.blocks.as_ref()?.recv().ok()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // Hanging up stops the thread at its next block; waiting for it closes the file.
        self.blocks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The decoders of a read's JSONL files: the file being read has one, and so do up to
/// `ahead - 1` of the JSONL files after it, decompressing into their queues meanwhile (up to
/// four blocks each in memory: two queued, one being filled, one being parsed).
pub(super) struct Lookahead<'a> {
    paths: &'a [PathBuf],
    options: &'a ReadOptions,
    ahead: usize,
    started: BTreeMap<usize, Decoder>,
    /// The first file not yet considered for an early start.
    next: usize,
    spare: SpareBuffers,
}

impl<'a> Lookahead<'a> {
    pub(super) fn new(paths: &'a [PathBuf], options: &'a ReadOptions, ahead: usize) -> Self {
        Lookahead {
            paths,
            options,
            ahead: ahead.max(1),
            started: BTreeMap::new(),
            next: 0,
            spare: SpareBuffers::default(),
        }
    }

    /// The decoder of file `index`, a JSONL file of `format` (started now unless it already
    /// is), after starting those of the next JSONL files.
    fn take(&mut self, index: usize, format: Format) -> Result<Decoder> {
        let decoder = match self.started.remove(&index) {
            Some(decoder) => decoder,
            None => Decoder::start(&self.paths[index], format, self.options, &self.spare)?,
        };
        self.next = self.next.max(index + 1);
        while self.started.len() + 1 < self.ahead && self.next < self.paths.len() {
            let path = &self.paths[self.next];
            // A file that cannot be opened now is left for its turn, which reports the error in
            // file order; Parquet files are read in their turn.
            if let Ok(format @ (Format::Jsonl | Format::GzipJsonl | Format::ZstdJsonl)) = sniff_format(path)
                && let Ok(decoder) = Decoder::start(path, format, self.options, &self.spare)
            {
                self.started.insert(self.next, decoder);
            }
            self.next += 1;
        }
        Ok(decoder)
    }
}

/// Reads file `index` of `lookahead`, a JSONL file of `format`: each block's lines are parsed on
/// `pool`, counted in `report` under `source`, and its documents handed to `consume`.
pub(super) fn read(
    lookahead: &mut Lookahead<'_>,
    index: usize,
    format: Format,
    source: u32,
    pool: &rayon::ThreadPool,
    report: &mut ReadReport,
    consume: &mut dyn FnMut(&[Document<'_>]) -> Result<()>,
) -> Result<()> {
    let (path, options) = (&lookahead.paths[index], lookahead.options);
    let decoder = lookahead.take(index, format)?;
    while let Some(block) = decoder.next_block() {
        let block = block.map_err(|e| {
            let at = format!("{e} (after line {})", report.sources[source as usize].records);
            Error::io(path, std::io::Error::new(e.kind(), at))
        })?;
        let lines: Vec<&[u8]> = split_lines(block.bytes());
        let parsed: Vec<_> =
            pool.install(|| lines.par_iter().map(|line| parse_line(line, &options.text_field)).collect());
        let mut docs = Vec::with_capacity(parsed.len());
        report.collect(source, block.first_line, parsed, options.on_error, &mut docs)?;
        for doc in &mut docs {
            doc.raw = lines[(doc.line - block.first_line) as usize];
        }
        if !docs.is_empty() {
            consume(&docs)?;
        }
        lookahead.spare.give_back(block.buffer);
    }
    Ok(())
}

/// The lines of a block, without their `\n` (or `\r\n`).
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    fn without_cr(line: &[u8]) -> &[u8] {
        line.strip_suffix(b"\r").unwrap_or(line)
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut lines = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body) {
        lines.push(without_cr(&body[start..end]));
        start = end + 1;
    }
    lines.push(without_cr(&body[start..]));
    lines
}

/// Extracts the text field of one JSON line.
/// Whether a line is empty or all ASCII whitespace: a blank line, skipped without parsing.
pub(super) fn is_blank(line: &[u8]) -> bool {
    line.trim_ascii().is_empty()
}

pub(super) fn parse_line<'a>(line: &'a [u8], field: &str) -> std::result::Result<Cow<'a, str>, Skip> {
    if is_blank(line) {
        return Err(Skip::new(SkipReason::BlankLine, ""));
    }
    let line = std::str::from_utf8(line)
        .map_err(|e| Skip::new(SkipReason::InvalidUtf8, format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    match json_text::text_field(line, field) {
        Some(text) => Ok(text),
        None => parse_with_serde(line, field),
    }
}

/// The verdict on one JSON Lines record (a line without its line break) as every reader
/// judges it (`parse_line`), and for a document the value of `id_field` as an id: a string
/// as it is, an integer as its decimal digits; `None` for any other value (a float, a boolean,
/// an object) and for a record without the field. For readers that hand records to Python with
/// their ids (`tokensieve.io.DocumentReader`).
pub fn parse_record<'a>(
    line: &'a [u8],
    text_field: &str,
    id_field: Option<&str>,
) -> (std::result::Result<Cow<'a, str>, Skip>, Option<String>) {
    let text = parse_line(line, text_field);
    let id = match (&text, id_field) {
        // parse_line accepted the line: it is UTF-8 and one JSON object
        (Ok(_), Some(field)) => std::str::from_utf8(line).ok().and_then(|line| record_id(line, field)),
        _ => None,
    };
    (text, id)
}

fn record_id(line: &str, field: &str) -> Option<String> {
    if let Some(text) = json_text::text_field(line, field) {
        return Some(text.into_owned());
    }
    let mut de = serde_json::Deserializer::from_str(line);
    match (FieldSeed { field }).deserialize(&mut de) {
        Ok(FieldValue::Text(text)) => Some(text.into_owned()),
        Ok(FieldValue::Integer(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// [`parse_line`] of a UTF-8 line by serde_json: every record the fast path declines, each
/// malformed one included, gets its verdict and message here.
pub(super) fn parse_with_serde<'a>(line: &'a str, field: &str) -> std::result::Result<Cow<'a, str>, Skip> {
    let mut de = serde_json::Deserializer::from_str(line);
    let value = FieldSeed { field }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match value {
        Ok(FieldValue::Text(text)) => Ok(text),
        Ok(FieldValue::Missing) => Err(Skip::new(SkipReason::MissingField, format!("no {field:?} field"))),
        Ok(FieldValue::Null) => Err(Skip::new(SkipReason::MissingField, format!("{field:?} is null"))),
        Ok(FieldValue::Integer(_)) => Err(Skip::new(SkipReason::NotAString, format!("{field:?} is a number"))),
        Ok(FieldValue::Other(kind)) => Err(Skip::new(SkipReason::NotAString, format!("{field:?} is {kind}"))),
        Ok(FieldValue::NotAnObject) => Err(Skip::new(SkipReason::MalformedJson, "the line is not a JSON object")),
        Err(e) => {
            let message = e.to_string();
            let reason = if message.contains("surrogate") || message.contains("hex escape") {
                SkipReason::LoneSurrogate
            } else {
                SkipReason::MalformedJson
            };
            Err(Skip::new(reason, message))
        }
    }
}

enum FieldValue<'a> {
    Text(Cow<'a, str>),
    Integer(i128),
    Missing,
    Null,
    Other(&'static str),
    NotAnObject,
}

/// Deserialises a JSON value, keeping only one key of a top-level object.
struct FieldSeed<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = FieldValue<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = FieldValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let mut found = FieldValue::Missing;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.field))? {
            if is_field {
                // Like Python's json.loads, the last of repeated keys wins.
                found = map.next_value_seed(TextSeed)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::NotAnObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::NotAnObject)
    }
}

/// Deserialises a key into "is it the text field?" without allocating.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> std::result::Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Deserialises the text field's value, borrowing the string when it has no escapes.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = FieldValue<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed {
    type Value = FieldValue<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(s)))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Integer(n.into()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Integer(n.into()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Other("a number"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(self.step).min(self.bytes.len() - self.at);
            out[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// The blocks of `bytes`, each buffer reused for the next block when `reuse`.
    fn blocks(bytes: &[u8], target: usize, step: usize, reuse: bool) -> Vec<(u64, Vec<u8>)> {
        let trickle = Trickle { bytes: bytes.to_vec(), at: 0, step };
        let mut reader = BlockReader::new(Box::new(trickle), target);
        let mut out = Vec::new();
        // A reused buffer may be larger than the target and hold old bytes.
        let mut buffer = vec![b'x'; 3 * target];
        while let Some(block) = reader.next_block(buffer).unwrap() {
            out.push((block.first_line, block.bytes().to_vec()));
            buffer = if reuse { block.buffer } else { Vec::new() };
        }
        out
    }

    #[test]
    fn blocks_are_whole_lines_numbered_and_lose_nothing() {
        let enormous = "y".repeat(100_000);
        let text = format!("a\n\nbb\nccc\n{enormous}\nd\r\neee\nlast without a break");
        let lines: Vec<&str> = text.split('\n').collect();
        for target in [1, 2, 5, 64, 1 << 20] {
            for step in [1, 3, 4096, usize::MAX] {
                if step == 1 && target == 1 << 20 {
                    continue;
                }
                for reuse in [false, true] {
                    let got = blocks(text.as_bytes(), target, step, reuse);
                    let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
                    assert_eq!(joined, text.as_bytes(), "target={target} step={step}");
                    let mut line = 1;
                    for (i, (first, bytes)) in got.iter().enumerate() {
                        assert_eq!(*first, line);
                        assert!(i + 1 == got.len() || bytes.ends_with(b"\n"));
                        // Only an enormous line makes a block much larger than the target.
                        assert!(bytes.len() < target + 100_010);
                        line += memchr::memchr_iter(b'\n', bytes).count() as u64;
                    }
                    assert_eq!(line, lines.len() as u64);
                }
            }
        }
    }

    #[test]
    fn records_give_their_ids_as_strings_or_integers() {
        let id = |line: &str| parse_record(line.as_bytes(), "text", Some("id")).1;
        assert_eq!(id(r#"{"text": "a", "id": "doc-1"}"#).as_deref(), Some("doc-1"));
        assert_eq!(id(r#"{"id": "esc\u00e9\"q", "text": "a"}"#).as_deref(), Some("esc\u{e9}\"q"));
        assert_eq!(id(r#"{"text": "a", "id": 42}"#).as_deref(), Some("42"));
        assert_eq!(id(r#"{"text": "a", "id": -7}"#).as_deref(), Some("-7"));
        assert_eq!(id(r#"{"text": "a", "id": 18446744073709551615}"#).as_deref(), Some("18446744073709551615"));
        assert_eq!(id(r#"{"text": "a", "id": 1, "id": "last"}"#).as_deref(), Some("last"));
        for other in ["1.5", "1e3", "true", "null", "[1]", r#"{"id": "nested"}"#] {
            assert_eq!(id(&format!(r#"{{"text": "a", "id": {other}}}"#)), None, "{other}");
        }
        assert_eq!(id(r#"{"text": "a", "meta": {"id": "nested"}}"#), None);
        // a record that is not a document has no id; the text's verdict is the readers'
        let (text, no_id) = parse_record(br#"{"text": 5, "id": "x"}"#, "text", Some("id"));
        assert_eq!((text.unwrap_err().reason, no_id), (SkipReason::NotAString, None));
        assert_eq!(parse_record(br#"{"text": "a", "id": "x"}"#, "text", None).1, None);
        // nesting deeper than any recursion limit is read, the id with it
        let deep = format!(r#"{{"a": {}{}, "id": 3, "text": "deep"}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let (text, deep_id) = parse_record(deep.as_bytes(), "text", Some("id"));
        assert_eq!((text.unwrap().as_ref(), deep_id.as_deref()), ("deep", Some("3")));
    }
}
