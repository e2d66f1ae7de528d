use std::io::Write;

use super::*;
use crate::pool;

/// (source, line, text) of each document read.
type Located = Vec<(u32, u64, String)>;

fn read_all(paths: &[PathBuf], on_error: OnError, block_bytes: usize) -> Result<(Located, ReadReport)> {
    let mut docs = Vec::new();
    let report = read_into(paths, on_error, block_bytes, 2, &mut docs)?;
    Ok((docs, report))
}

/// Reads `paths` on a pool of `threads`, appending the documents to `docs` as they arrive (so
/// they are kept when the read fails).
fn read_into(
    paths: &[PathBuf],
    on_error: OnError,
    block_bytes: usize,
    threads: usize,
    docs: &mut Located,
) -> Result<ReadReport> {
    let options = ReadOptions { on_error, block_bytes, ..Default::default() };
    read_files(paths, &options, &pool::thread_pool(threads), &mut |batch| {
        docs.extend(batch.iter().map(|d| (d.source, d.line, d.text.to_string())));
        Ok(())
    })
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

/// Twelve files in three formats, the documents of file `f` being `"f:1"`, `"f:2"`, ...
fn numbered_files(prefix: &str) -> Vec<PathBuf> {
    (0..12)
        .map(|f| {
            let body: String = (1..=200 + 50 * f).map(|n| format!("{{\"text\": \"{f}:{n}\"}}\n")).collect();
            match f % 3 {
                0 => temp_file(&format!("{prefix}{f}.jsonl"), body.as_bytes()),
                1 => temp_file(&format!("{prefix}{f}.jsonl.zst"), &zstd::encode_all(body.as_bytes(), 3).unwrap()),
                _ => {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(body.as_bytes()).unwrap();
                    temp_file(&format!("{prefix}{f}.jsonl.gz"), &gz.finish().unwrap())
                }
            }
        })
        .collect()
}

#[test]
fn files_decompressed_ahead_arrive_in_file_order_for_any_thread_count() {
    let paths = numbered_files("ahead");
    let expected: Located =
        (0..12u32).flat_map(|f| (1..=200 + 50 * u64::from(f)).map(move |n| (f, n, format!("{f}:{n}")))).collect();
    for threads in [1, 2, 4, 7] {
        let mut docs = Vec::new();
        let report = read_into(&paths, OnError::Raise, 300, threads, &mut docs).unwrap();
        assert!(docs == expected, "threads={threads}");
        assert_eq!(report.sources.len(), 12);
    }
}

#[test]
fn a_bad_file_read_ahead_fails_in_its_turn() {
    let mut paths = numbered_files("turn");
    let zst = std::fs::read(&paths[4]).unwrap();
    paths[4] = temp_file("turn-cut.jsonl.zst", &zst[..zst.len() / 2]);
    paths[6] = std::env::temp_dir().join("tokensieve-no-such-file-6.jsonl");
    for threads in [1, 4] {
        let mut docs = Vec::new();
        match read_into(&paths, OnError::Raise, 300, threads, &mut docs) {
            Err(Error::Io { path, .. }) => assert!(path.ends_with("turn-cut.jsonl.zst"), "{path:?}"),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        // Every document of the files before it arrived.
        assert_eq!(docs.iter().filter(|d| d.0 < 4).count(), (0..4).map(|f| 200 + 50 * f).sum::<usize>());
        let mut docs = Vec::new();
        match read_into(&paths[5..], OnError::Raise, 300, threads, &mut docs) {
            Err(Error::Io { path, .. }) => assert!(path.ends_with("tokensieve-no-such-file-6.jsonl")),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert_eq!(docs.len(), 450);
    }
}

#[test]
fn a_consumer_that_stops_ends_the_read_and_its_decoders() {
    let paths = numbered_files("stop");
    let options = ReadOptions { block_bytes: 100, ..Default::default() };
    let mut batches = 0;
    let result = read_files(&paths, &options, &pool::thread_pool(4), &mut |_| {
        batches += 1;
        Err(Error::Stopped)
    });
    assert!(matches!(result, Err(Error::Stopped)));
    assert_eq!(batches, 1);
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
