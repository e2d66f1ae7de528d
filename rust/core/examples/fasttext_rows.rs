//! Where a fastText prediction's time goes, on one thread: the whole prediction
//! (`predict_batch`), the features alone (tokens and dictionary lookups), the sums of the same
//! input rows alone (the model's own `average_rows`), and as many rows again picked at random
//! (rows that no cache holds: the machine's floor for a matrix read at random). For a large
//! model (dim 256, 2M buckets) the row sums are most of a prediction, and reading rows is what
//! bounds them.
//!
//! Usage: fasttext_rows MODEL DIR REPS (the texts of DIR's `.jsonl.zst` files, newlines as spaces)

use std::path::PathBuf;
use std::time::Instant;

use tokensieve_core::fasttext::{FastTextModel, Newline, Preprocess};
use tokensieve_core::io::{ReadOptions, read_files};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, dir, reps] = args.as_slice() else {
        return Err("usage: fasttext_rows MODEL DIR REPS".into());
    };
    let reps: usize = reps.parse()?;
    let model = FastTextModel::load(model)?;
    let matrix = model.input_matrix();
    let dim = model.dim();
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.retain(|p| p.to_string_lossy().ends_with(".jsonl.zst"));
    paths.sort();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut texts: Vec<String> = Vec::new();
    read_files(&paths, &ReadOptions::default(), &pool, &mut |docs| {
        texts.extend(docs.iter().map(|d| d.text.to_string()));
        Ok(())
    })?;
    let prep = Preprocess { newline: Newline::from_name(" ")?, strip: false };
    let mut scratch = model.scratch();
    // Every document's rows, once, for the sums alone.
    let (mut rows, mut ends) = (Vec::new(), Vec::new());
    for text in &texts {
        model.features(text, &prep, &mut scratch).map_err(|_| "a newline")?;
        rows.extend_from_slice(scratch.rows());
        ends.push(rows.len());
    }
    // As many rows, uniformly at random over the matrix (xorshift, fixed seed).
    let matrix_rows = matrix.rows() as u64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random_rows: Vec<i32> = (0..rows.len())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % matrix_rows) as i32
        })
        .collect();
    let mut out = vec![0f32; dim];
    let mut checksum = 0f64;
    let mut sums = |rows: &[i32], out: &mut [f32]| {
        let mut start = 0;
        for &end in &ends {
            matrix.average_rows(&rows[start..end], out);
            checksum += f64::from(out[0]);
            start = end;
        }
    };
    let (mut predict, mut features, mut row_sums, mut random) = (vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let t = Instant::now();
        model.predict_batch(&pool, &texts, 0, &prep, 1, 0.0)?;
        predict.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for text in &texts {
            model.features(text, &prep, &mut scratch).map_err(|_| "a newline")?;
        }
        features.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sums(&rows, &mut out);
        row_sums.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sums(&random_rows, &mut out);
        random.push(t.elapsed().as_secs_f64());
    }
    let gb = (rows.len() * dim * 4) as f64 / 1e9;
    let (predict, features, row_sums, random) = (median(predict), median(features), median(row_sums), median(random));
    println!(
        "{} documents, {} rows ({gb:.1} GB of rows), dim {dim}, 1 thread, median of {reps}:",
        texts.len(),
        rows.len()
    );
    println!("  predict_batch       {predict:.2} s");
    println!("  features alone      {features:.2} s ({:.0}% of predict)", 100.0 * features / predict);
    println!(
        "  their row sums      {row_sums:.2} s ({:.0}% of predict; {:.1} GB/s)",
        100.0 * row_sums / predict,
        gb / row_sums
    );
    println!("  random row sums     {random:.2} s ({:.1} GB/s: the floor for rows no cache holds)", gb / random);
    println!("checksum {checksum}");
    Ok(())
}
