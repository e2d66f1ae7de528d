//! Times `fast-v1` hashed n-gram counting (ngrams=2, 10,000 buckets) over the texts of the
//! `.jsonl.zst` files of a directory: held in memory (`memory`), or read, decompressed and
//! parsed from the files in every pass (`files`). Used by `benches/bench_fast_v1_ab.py` to
//! compare two builds of the core side by side; it uses only APIs both builds have.
//!
//! Usage: featurize_pool DIR THREADS REPS wordpunct|whitespace memory|files
//! Prints one line: `seconds=<run>,<run>,... bytes=<text bytes> checksum=<weighted count sum>`.

use std::path::PathBuf;
use std::time::Instant;

use tokensieve_core::hash::HashFamily;
use tokensieve_core::io::{ReadOptions, read_files};
use tokensieve_core::ngram::{CountAccumulator, FeatureSpace, Featurizer};
use tokensieve_core::text::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads, reps, tokenizer, source] = args.as_slice() else {
        return Err("usage: featurize_pool DIR THREADS REPS wordpunct|whitespace memory|files".into());
    };
    let from_files = match source.as_str() {
        "memory" => false,
        "files" => true,
        other => return Err(format!("the source is memory or files, not {other:?}").into()),
    };
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.retain(|p| p.to_string_lossy().ends_with(".jsonl.zst"));
    paths.sort();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.parse()?).build()?;
    let mut texts: Vec<String> = Vec::new();
    read_files(&paths, &ReadOptions::default(), &pool, &mut |docs| {
        texts.extend(docs.iter().map(|d| d.text.to_string()));
        Ok(())
    })?;
    let tokenizer = Tokenizer::from_name(tokenizer)?;
    let space = FeatureSpace {
        tokenizer,
        hash: HashFamily::FastV1,
        ngrams: 2,
        buckets: 10_000,
        lowercase: tokenizer.lowercases_by_default(),
    };
    let mut seconds = Vec::new();
    let mut checksum = 0i64;
    for _ in 0..reps.parse::<usize>()? {
        let counter = CountAccumulator::new(Featurizer::new(space.clone())?, &pool);
        let start = Instant::now();
        if from_files {
            read_files(&paths, &ReadOptions::default(), &pool, &mut |docs| {
                counter.add_texts(&pool, docs);
                Ok(())
            })?;
        } else {
            counter.add_texts(&pool, &texts);
        }
        let counts = counter.finish();
        seconds.push(start.elapsed().as_secs_f64());
        checksum = counts.iter().zip(1i64..).map(|(&c, i)| c * i).sum();
    }
    let seconds: Vec<String> = seconds.iter().map(|s| format!("{s:.6}")).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    println!("seconds={} bytes={bytes} checksum={checksum}", seconds.join(","));
    Ok(())
}
