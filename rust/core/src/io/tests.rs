use std::io::Write;

use super::*;
use crate::pool;

/// (source, line, text) of each document read.
type Located = Vec<(u32, u64, String)>;

fn read_all(paths: &[PathBuf], on_error: OnError, block_bytes: usize) -> Result<(Located, ReadReport)> {
    let options = ReadOptions { on_error, block_bytes, ..Default::default() };
    let mut docs = Vec::new();
    let report = read_files(paths, &options, &pool::thread_pool(2), &mut |batch| {
        docs.extend(batch.iter().map(|d| (d.source, d.line, d.text.to_string())));
        Ok(())
    })?;
    Ok((docs, report))
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tokensieve-core-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

const MIXED: &[u8] = b"{\"text\": \"one\"}\n\
\n\
{\"text\": \"two\\nlines\", \"meta\": {\"a\": [1, 2]}}\r\n\
not json\n\
{\"title\": \"no text\"}\n\
{\"text\": 5}\n\
{\"text\": null}\n\
{\"text\": \"\\ud800 lone\"}\n\
{\"text\": \"bad \xff byte\"}\n\
[1, 2]\n\
{\"text\": \"last\", \"text\": \"wins\"}";

#[test]
fn every_line_is_accounted_for_with_its_reason() {
    let path = temp_file("mixed.jsonl", MIXED);
    for block_bytes in [1, 7, 1 << 20] {
        let (docs, report) = read_all(std::slice::from_ref(&path), OnError::Skip, block_bytes).unwrap();
        assert_eq!(
            docs,
            [(0, 1, "one".to_string()), (0, 3, "two\nlines".to_string()), (0, 11, "wins".to_string())],
            "block_bytes={block_bytes}"
        );
        assert_eq!(report.records(), 11);
        assert_eq!(report.documents(), 3);
        let reasons: Vec<(u64, SkipReason)> = report.skipped_records.iter().map(|r| (r.line, r.reason)).collect();
        assert_eq!(
            reasons,
            [
                (4, SkipReason::MalformedJson),
                (5, SkipReason::MissingField),
                (6, SkipReason::NotAString),
                (7, SkipReason::MissingField),
                (8, SkipReason::LoneSurrogate),
                (9, SkipReason::InvalidUtf8),
                (10, SkipReason::MalformedJson),
            ]
        );
        assert_eq!(report.skipped[&SkipReason::BlankLine], 1);
        assert_eq!(report.skipped_total() + report.documents(), report.records());
    }
}

#[test]
fn raise_names_the_file_and_line() {
    let path = temp_file("raise.jsonl", MIXED);
    let err = read_all(std::slice::from_ref(&path), OnError::Raise, 1 << 20).unwrap_err();
    match err {
        Error::BadRecord { path: p, line, reason, .. } => {
            assert_eq!((line, reason), (4, SkipReason::MalformedJson));
            assert!(p.ends_with("raise.jsonl"));
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn compressed_files_read_like_plain_ones() {
    let plain = b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n".repeat(1000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let paths = [
        temp_file("p.jsonl", &plain),
        temp_file("g.jsonl.gz", &gz.finish().unwrap()),
        temp_file("z.jsonl.zst", &zstd::encode_all(&plain[..], 3).unwrap()),
    ];
    let (docs, report) = read_all(&paths, OnError::Raise, 100).unwrap();
    assert_eq!(docs.len(), 6000);
    assert_eq!(report.sources.iter().map(|s| s.documents).collect::<Vec<_>>(), [2000, 2000, 2000]);
    assert_eq!(docs[2001], (1, 2, "b".to_string()));
}

#[test]
fn truncated_compressed_file_is_an_io_error_naming_it() {
    let plain = b"{\"text\": \"abc\"}\n".repeat(10_000);
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let path = temp_file("cut.jsonl.zst", &zst[..zst.len() / 2]);
    match read_all(std::slice::from_ref(&path), OnError::Skip, 1 << 10) {
        Err(Error::Io { path: p, .. }) => assert!(p.ends_with("cut.jsonl.zst")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let missing = std::env::temp_dir().join("tokensieve-no-such-file.jsonl");
    assert!(matches!(read_all(&[missing], OnError::Skip, 1 << 10), Err(Error::Io { .. })));
}

#[test]
fn empty_file_has_no_records() {
    let path = temp_file("empty.jsonl", b"");
    let (docs, report) = read_all(std::slice::from_ref(&path), OnError::Raise, 1 << 10).unwrap();
    assert!(docs.is_empty());
    assert_eq!(report.records(), 0);
}

#[test]
fn chunks_are_runs_of_words_split_on_single_spaces() {
    let texts = ["", "one", "a b", "a b ", "a  b c d e", " lead and trail ", "w1 w2 w3 w4 w5 w6 w7"];
    for words in 1..5 {
        let docs: Vec<Document<'_>> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Document { source: 0, line: i as u64 + 1, text: (*t).into(), raw: &[], chunk: None })
            .collect();
        let pieces = chunk_documents(&docs, words);
        for (i, text) in texts.iter().enumerate() {
            // Python: [" ".join(ws[k:k + words]) for k in range(0, len(ws), words)], ws = text.split(" ")
            let ws: Vec<&str> = text.split(' ').collect();
            let expected: Vec<String> = ws.chunks(words).map(|c| c.join(" ")).collect();
            let got: Vec<&Document<'_>> = pieces.iter().filter(|p| p.line == i as u64 + 1).collect();
            assert_eq!(got.iter().map(|p| p.text.as_ref()).collect::<Vec<_>>(), expected, "{text:?} by {words}");
            assert!(got.iter().enumerate().all(|(k, p)| p.chunk == Some(k as u32) && p.raw.is_empty()));
        }
    }
}
