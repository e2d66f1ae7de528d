//! JSON Lines, plain or compressed: blocks of whole lines are read (and decompressed) on one
//! thread while the previous block is parsed on the pool.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::mpsc;

use rayon::prelude::*;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Document, Format, ReadOptions, ReadReport, Skip, SkipReason};
use crate::error::{Error, Result};

fn open(path: &Path, format: Format) -> Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| Error::io(path, e))?);
    Ok(match format {
        Format::Jsonl => Box::new(file),
        Format::GzipJsonl => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::ZstdJsonl => Box::new(zstd::Decoder::with_buffer(file).map_err(|e| Error::io(path, e))?),
        Format::Parquet => unreachable!("Parquet is not read as lines"),
    })
}

/// Whole lines, and the 1-based number of the first.
struct Block {
    bytes: Vec<u8>,
    first_line: u64,
}

/// Reads `reader` into blocks of about `target` bytes that end at a line break (the last block
/// may end without one) and sends them down `tx`.
fn produce_blocks(mut reader: Box<dyn Read + Send>, target: usize, tx: mpsc::SyncSender<std::io::Result<Block>>) {
    let mut carry = Vec::new();
    let mut next_line = 1u64;
    let mut eof = false;
    while !eof {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(target.saturating_sub(buf.len()));
        // Fill to the target, and further until a line break arrives (an enormous line is kept
        // whole).
        loop {
            let have = buf.len();
            if have >= target && memchr::memrchr(b'\n', &buf).is_some() {
                break;
            }
            // `read_to_end` fills spare capacity without zeroing it first.
            let want = target.saturating_sub(have).max(1 << 16) as u64;
            match reader.by_ref().take(want).read_to_end(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if !eof {
            let cut = memchr::memrchr(b'\n', &buf).expect("loop exits with a line break") + 1;
            carry = buf.split_off(cut);
        }
        if buf.is_empty() {
            continue;
        }
        let lines = memchr::memchr_iter(b'\n', &buf).count() as u64 + u64::from(buf.last() != Some(&b'\n'));
        let block = Block { bytes: buf, first_line: next_line };
        next_line += lines;
        if tx.send(Ok(block)).is_err() {
            return; // the consumer stopped
        }
    }
}

pub(super) fn read(
    path: &Path,
    format: Format,
    source: u32,
    options: &ReadOptions,
    pool: &rayon::ThreadPool,
    report: &mut ReadReport,
    consume: &mut dyn FnMut(&[Document<'_>]) -> Result<()>,
) -> Result<()> {
    let reader = open(path, format)?;
    let (tx, rx) = mpsc::sync_channel(2);
    std::thread::scope(|scope| {
        let target = options.block_bytes;
        scope.spawn(move || produce_blocks(reader, target, tx));
        // Dropping `rx` on an early return stops the producer at its next send.
        for block in rx {
            let block = block.map_err(|e| {
                let at = format!("{e} (after line {})", report.sources[source as usize].records);
                Error::io(path, std::io::Error::new(e.kind(), at))
            })?;
            let lines: Vec<&[u8]> = split_lines(&block.bytes);
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
        }
        Ok(())
    })
}

/// The lines of a block, without their `\n` (or `\r\n`).
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).collect()
}

/// Extracts the text field of one JSON line.
pub(super) fn parse_line<'a>(line: &'a [u8], field: &str) -> std::result::Result<Cow<'a, str>, Skip> {
    if line.trim_ascii().is_empty() {
        return Err(Skip::new(SkipReason::BlankLine, ""));
    }
    let line = std::str::from_utf8(line)
        .map_err(|e| Skip::new(SkipReason::InvalidUtf8, format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    let mut de = serde_json::Deserializer::from_str(line);
    let value = FieldSeed { field }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match value {
        Ok(FieldValue::Text(text)) => Ok(text),
        Ok(FieldValue::Missing) => Err(Skip::new(SkipReason::MissingField, format!("no {field:?} field"))),
        Ok(FieldValue::Null) => Err(Skip::new(SkipReason::MissingField, format!("{field:?} is null"))),
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
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(FieldValue::Other("a number"))
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
