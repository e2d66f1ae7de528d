//! Reading supervised fastText models (`.bin`, and `.ftz` with quantised input).
//!
//! The file is little-endian and packed: a 64-byte header (magic, version, the stored
//! arguments), the dictionary (entries, then the pruning index), a flag and the input matrix, a
//! flag and the output matrix, and nothing after. Every count is checked against the bytes
//! left in the file before anything is allocated for it, and every index a prediction can
//! reach is checked once here, so a truncated, oversized or inconsistent file is an
//! [`Error::Model`] naming the section, never a crash.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::dictionary::{Dictionary, FeatureArgs};
use super::matrix::{DenseMatrix, Floats, KSUB, Matrix, ProductQuantizer, QuantMatrix, SharedFloats};
use crate::error::{Error, Result};
use crate::memory::advise_huge_pages;

/// `FASTTEXT_FILEFORMAT_MAGIC_INT32`.
pub const MAGIC: i32 = 793_712_314;
/// The newest format version (fastText 0.9.x writes 12).
pub const VERSION: i32 = 12;

/// The loss a model was trained with; it decides how outputs become probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Hierarchical softmax over a Huffman tree of the labels.
    HierarchicalSoftmax,
    /// Negative sampling (a sigmoid per label at prediction time).
    NegativeSampling,
    Softmax,
    /// One-vs-all (independent sigmoids).
    OneVsAll,
}

impl Loss {
    /// fastText's code of the loss in model files.
    pub fn code(self) -> i32 {
        match self {
            Loss::HierarchicalSoftmax => 1,
            Loss::NegativeSampling => 2,
            Loss::Softmax => 3,
            Loss::OneVsAll => 4,
        }
    }

    /// Parses fastText's name: `hs`, `ns`, `softmax` or `ova`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Loss::HierarchicalSoftmax, Loss::NegativeSampling, Loss::Softmax, Loss::OneVsAll]
            .into_iter()
            .find(|l| l.name() == name)
    }

    fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Loss::HierarchicalSoftmax),
            2 => Some(Loss::NegativeSampling),
            3 => Some(Loss::Softmax),
            4 => Some(Loss::OneVsAll),
            _ => None,
        }
    }

    /// fastText's name: `hs`, `ns`, `softmax` or `ova`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::HierarchicalSoftmax => "hs",
            Loss::NegativeSampling => "ns",
            Loss::Softmax => "softmax",
            Loss::OneVsAll => "ova",
        }
    }
}

/// The arguments stored in a model file (training-only ones such as `lr` are not stored).
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub dim: i32,
    pub ws: i32,
    pub epoch: i32,
    pub min_count: i32,
    pub neg: i32,
    pub word_ngrams: i32,
    pub loss: Loss,
    pub bucket: i32,
    pub minn: i32,
    /// 0 for version-11 supervised models, whatever the file says (fastText's rule).
    pub maxn: i32,
    pub lr_update_rate: i32,
    pub t: f64,
}

/// The Huffman tree of hierarchical-softmax models: leaves `0..osz` are the labels, internal
/// node `osz + j` uses output row `j`, the root is `2 * osz - 2`.
#[derive(Debug)]
pub struct HsTree {
    pub(crate) osz: usize,
    pub(crate) left: Vec<u32>,
    pub(crate) right: Vec<u32>,
    pub(crate) parent: Vec<u32>,
}

impl HsTree {
    /// fastText's construction from label counts (sorted by decreasing count in any file it
    /// writes): repeatedly join the two smallest of the next leaf and the next internal node,
    /// taking the leaf on a tie only if it is strictly smaller.
    pub(crate) fn build(counts: &[i64]) -> std::result::Result<Self, String> {
        let osz = counts.len();
        let nodes = 2 * osz - 1;
        const UNSET: i64 = 1_000_000_000_000_000; // fastText's 1e15 for nodes not yet built
        let mut count = vec![UNSET; nodes];
        count[..osz].copy_from_slice(counts);
        let (mut left, mut right, mut parent) = (vec![u32::MAX; nodes], vec![u32::MAX; nodes], vec![u32::MAX; nodes]);
        let mut leaf = osz as isize - 1;
        let mut node = osz;
        for i in osz..nodes {
            let mut pick = [0usize; 2];
            for slot in &mut pick {
                if leaf >= 0 && count[leaf as usize] < count[node] {
                    *slot = leaf as usize;
                    leaf -= 1;
                } else {
                    if node >= i {
                        return Err(format!(
                            "the label counts cannot build fastText's Huffman tree (a count is {UNSET} or more)"
                        ));
                    }
                    *slot = node;
                    node += 1;
                }
            }
            left[i] = pick[0] as u32;
            right[i] = pick[1] as u32;
            count[i] = count[pick[0]].saturating_add(count[pick[1]]);
            parent[pick[0]] = i as u32;
            parent[pick[1]] = i as u32;
        }
        Ok(HsTree { osz, left, right, parent })
    }

    pub(crate) fn root(&self) -> usize {
        2 * self.osz - 2
    }

    pub(crate) fn is_leaf(&self, node: usize) -> bool {
        node < self.osz
    }
}

/// A supervised fastText model, ready to predict.
#[derive(Debug)]
pub struct FastTextModel {
    pub(crate) path: PathBuf,
    pub(crate) version: i32,
    pub(crate) args: Args,
    pub(crate) dict: Dictionary,
    pub(crate) input: Matrix,
    pub(crate) output: Matrix,
    pub(crate) tree: Option<HsTree>,
    /// fastText's 513-entry sigmoid table (ns and ova predictions).
    pub(crate) sigmoid: SigmoidTable,
}

/// A byte source that knows how much of the file is left and names what it reads.
struct Source<R> {
    inner: R,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: BufRead> Source<R> {
    fn fail(&self, detail: impl Into<String>) -> Error {
        Error::Model { path: self.path.clone(), detail: detail.into() }
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Checks that `count` items of `size` bytes fit in what is left of the file.
    fn room(&self, count: u64, size: u64, what: &str) -> Result<()> {
        match count.checked_mul(size) {
            Some(bytes) if bytes <= self.left() => Ok(()),
            _ => Err(self.fail(format!(
                "truncated or inconsistent file: {what} needs {count} x {size} bytes at offset {} but only {} \
                 bytes are left",
                self.pos,
                self.left()
            ))),
        }
    }

    fn read(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.room(buf.len() as u64, 1, what)?;
        self.inner.read_exact(buf).map_err(|e| self.fail(format!("cannot read {what} at offset {}: {e}", self.pos)))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read(&mut b, what)?;
        Ok(b)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    fn flag(&mut self, what: &str) -> Result<bool> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.fail(format!("{what} at offset {} is {other}, not a boolean", self.pos - 1))),
        }
    }

    /// A NUL-terminated string appended to `out`.
    fn cstr(&mut self, out: &mut Vec<u8>, what: &str) -> Result<()> {
        let before = out.len();
        let n = self.inner.read_until(0, out).map_err(|e| self.fail(format!("cannot read {what}: {e}")))?;
        if n == 0 || out.last() != Some(&0) || n as u64 > self.left() {
            return Err(self.fail(format!("truncated file: it ends inside {what} (offset {})", self.pos + n as u64)));
        }
        out.pop();
        self.pos += n as u64;
        debug_assert_eq!(out.len() - before, n - 1);
        Ok(())
    }

    fn bytes(&mut self, count: u64, what: &str) -> Result<Vec<u8>> {
        self.room(count, 1, what)?;
        let mut v = vec![0u8; count as usize];
        self.read(&mut v, what)?;
        Ok(v)
    }

    /// Reads `expected.len()` little-endian floats and checks that they are bit for bit
    /// `expected`; a difference names the first differing row of `cols` floats.
    fn compare_floats(&mut self, expected: &[f32], cols: usize, what: &str) -> Result<()> {
        self.room(expected.len() as u64, 4, what)?;
        let mut chunk = vec![0u8; 1 << 16];
        for (k, want) in expected.chunks(chunk.len() / 4).enumerate() {
            let got = &mut chunk[..want.len() * 4];
            self.read(got, what)?;
            let differs = got
                .chunks_exact(4)
                .zip(want)
                .position(|(b, x)| u32::from_le_bytes(b.try_into().unwrap()) != x.to_bits());
            if let Some(i) = differs {
                let row = (k * (1 << 14) + i) / cols.max(1);
                return Err(self.fail(format!("{what} in shared memory differs from the file's at row {row}")));
            }
        }
        Ok(())
    }

    fn floats(&mut self, count: u64, what: &str) -> Result<Vec<f32>> {
        self.room(count, 4, what)?;
        // calloc maps fresh zero pages for this size without touching them.
        let mut v = vec![0f32; count as usize];
        advise_huge_pages(&v);
        // SAFETY: the bytes of an f32 slice may hold any bit pattern; the length is exact.
        let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) };
        self.read(bytes, what)?;
        if cfg!(target_endian = "big") {
            for x in &mut v {
                *x = f32::from_bits(u32::from_le(x.to_bits()));
            }
        }
        Ok(v)
    }
}

/// A count stored as a signed integer, checked to be within `0..=max`.
fn count<R: BufRead>(src: &Source<R>, value: i64, max: i64, what: &str) -> Result<usize> {
    if value < 0 || value > max {
        return Err(src.fail(format!("{what} is {value}, outside 0..={max}")));
    }
    Ok(value as usize)
}

fn read_pq<R: BufRead>(src: &mut Source<R>, what: &str) -> Result<ProductQuantizer> {
    let dim = src.i32(&format!("{what} dim"))?;
    let nsubq = src.i32(&format!("{what} nsubq"))?;
    let dsub = src.i32(&format!("{what} dsub"))?;
    let lastdsub = src.i32(&format!("{what} lastdsub"))?;
    let geometry = (dim > 0 && dsub > 0).then(|| ProductQuantizer::geometry(dim as usize, dsub as usize)).flatten();
    if geometry != Some((nsubq.max(0) as usize, lastdsub.max(0) as usize)) {
        return Err(
            src.fail(format!("{what} is inconsistent: dim {dim}, nsubq {nsubq}, dsub {dsub}, lastdsub {lastdsub}"))
        );
    }
    let centroids = src.floats((dim as u64) * KSUB as u64, &format!("{what} centroids"))?;
    Ok(ProductQuantizer {
        dim: dim as usize,
        nsubq: nsubq as usize,
        dsub: dsub as usize,
        lastdsub: lastdsub as usize,
        centroids,
    })
}

/// Reads a matrix; a dense one takes its floats from `shared` if given (after checking that
/// they are the file's).
fn read_matrix<R: BufRead>(
    src: &mut Source<R>,
    quantized: bool,
    shared: Option<Box<dyn SharedFloats>>,
    what: &str,
) -> Result<Matrix> {
    if !quantized {
        let m = src.i64(&format!("{what} rows"))?;
        let n = src.i64(&format!("{what} columns"))?;
        let rows = count(src, m, i64::from(i32::MAX), &format!("{what} rows"))?;
        let cols = count(src, n, i64::from(i32::MAX), &format!("{what} columns"))?;
        let data = match shared {
            None => Floats::Owned(src.floats(rows as u64 * cols as u64, &format!("{what} data"))?),
            Some(shared) => {
                let len = shared.floats().len();
                if Some(len) != rows.checked_mul(cols) {
                    return Err(
                        src.fail(format!("{what} in shared memory has {len} floats, the file's {rows} x {cols}"))
                    );
                }
                src.compare_floats(shared.floats(), cols, what)?;
                Floats::shared(shared)
            }
        };
        return Ok(Matrix::Dense(DenseMatrix { rows, cols, data }));
    }
    if shared.is_some() {
        return Err(src.fail(format!("{what} is quantised: only a dense one can be shared")));
    }
    let qnorm = src.flag(&format!("{what} qnorm flag"))?;
    let m = src.i64(&format!("{what} rows"))?;
    let n = src.i64(&format!("{what} columns"))?;
    let rows = count(src, m, i64::from(i32::MAX), &format!("{what} rows"))?;
    let cols = count(src, n, i64::from(i32::MAX), &format!("{what} columns"))?;
    let codesize = src.i32(&format!("{what} code size"))?;
    let codesize = count(src, codesize.into(), i64::from(i32::MAX), &format!("{what} code size"))?;
    let codes = src.bytes(codesize as u64, &format!("{what} codes"))?;
    let pq = read_pq(src, &format!("{what} product quantizer"))?;
    if pq.dim != cols || Some(codesize) != rows.checked_mul(pq.nsubq) {
        return Err(src.fail(format!(
            "{what} is inconsistent: {rows} x {cols}, {codesize} codes, quantizer of dim {} with {} \
             sub-quantizers",
            pq.dim, pq.nsubq
        )));
    }
    let norms = if qnorm {
        let codes = src.bytes(rows as u64, &format!("{what} norm codes"))?;
        let npq = read_pq(src, &format!("{what} norm quantizer"))?;
        if npq.dim != 1 {
            return Err(src.fail(format!("{what} norm quantizer has dim {}, expected 1", npq.dim)));
        }
        Some((codes, npq))
    } else {
        None
    };
    Ok(Matrix::Quant(QuantMatrix { rows, cols, codes, pq, norms }))
}

fn write_floats(w: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    for chunk in data.chunks(1 << 14) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    Ok(())
}

fn write_pq(w: &mut impl Write, pq: &ProductQuantizer) -> std::io::Result<()> {
    for v in [pq.dim, pq.nsubq, pq.dsub, pq.lastdsub] {
        w.write_all(&(v as i32).to_le_bytes())?;
    }
    write_floats(w, &pq.centroids)
}

fn write_matrix(w: &mut impl Write, m: &Matrix) -> std::io::Result<()> {
    match m {
        Matrix::Dense(m) => {
            w.write_all(&(m.rows as i64).to_le_bytes())?;
            w.write_all(&(m.cols as i64).to_le_bytes())?;
            write_floats(w, &m.data)
        }
        Matrix::Quant(m) => {
            w.write_all(&[u8::from(m.norms.is_some())])?;
            w.write_all(&(m.rows as i64).to_le_bytes())?;
            w.write_all(&(m.cols as i64).to_le_bytes())?;
            w.write_all(&(m.codes.len() as i32).to_le_bytes())?;
            w.write_all(&m.codes)?;
            write_pq(w, &m.pq)?;
            if let Some((codes, npq)) = &m.norms {
                w.write_all(codes)?;
                write_pq(w, npq)?;
            }
            Ok(())
        }
    }
}

/// fastText's 513-entry sigmoid table (ns and ova, in prediction and training alike).
#[derive(Clone, Debug)]
pub(crate) struct SigmoidTable(Vec<f32>);

impl SigmoidTable {
    pub(crate) fn new() -> Self {
        SigmoidTable(
            (0..=512).map(|i| (1.0 / (1.0 + f64::from((-((i * 16) as f32 / 512.0 - 8.0)).exp()))) as f32).collect(),
        )
    }

    /// The table's sigmoid of `x`: 0 below -8, 1 above 8, else the entry fastText indexes.
    #[inline]
    pub(crate) fn get(&self, x: f32) -> f32 {
        if x < -8.0 {
            0.0
        } else if x > 8.0 {
            1.0
        } else {
            self.0[((x + 8.0) * 512.0 / 8.0 / 2.0) as i64 as usize]
        }
    }
}

impl FastTextModel {
    /// Reads a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path.as_ref(), None)
    }

    /// Reads a model file whose dense input matrix is `input` (for instance memory that other
    /// processes share) instead of a copy of its own. The file's input matrix is still read,
    /// and must equal `input` bit for bit.
    pub fn load_sharing_input(path: impl AsRef<Path>, input: Box<dyn SharedFloats>) -> Result<Self> {
        Self::load_with(path.as_ref(), Some(input))
    }

    fn load_with(path: &Path, shared_input: Option<Box<dyn SharedFloats>>) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Self::read_with(BufReader::with_capacity(1 << 16, file), len, path, shared_input)
    }

    /// Reads a model from `reader`, which holds exactly `len` bytes; `name` is used in errors.
    pub fn read(reader: impl BufRead, len: u64, name: impl Into<PathBuf>) -> Result<Self> {
        Self::read_with(reader, len, name, None)
    }

    fn read_with(
        reader: impl BufRead,
        len: u64,
        name: impl Into<PathBuf>,
        shared_input: Option<Box<dyn SharedFloats>>,
    ) -> Result<Self> {
        let mut src = Source { inner: reader, pos: 0, len, path: name.into() };
        let magic = src.i32("the magic number")?;
        if magic != MAGIC {
            return Err(
                src.fail(format!("not a fastText model: magic number {:#010x}, expected {MAGIC:#010x}", magic as u32))
            );
        }
        let version = src.i32("the format version")?;
        if !(11..=VERSION).contains(&version) {
            return Err(src.fail(format!("unsupported fastText format version {version} (11 and 12 are read)")));
        }
        const NAMES: [&str; 12] = [
            "dim",
            "ws",
            "epoch",
            "minCount",
            "neg",
            "wordNgrams",
            "loss",
            "model",
            "bucket",
            "minn",
            "maxn",
            "lrUpdateRate",
        ];
        let mut fields = [0i32; 12];
        for (field, name) in fields.iter_mut().zip(NAMES) {
            *field = src.i32(&format!("argument {name}"))?;
        }
        let t = src.f64("argument t")?;
        let [dim, ws, epoch, min_count, neg, word_ngrams, loss, model, bucket, minn, mut maxn, lr_update_rate] = fields;
        let loss = Loss::from_code(loss).ok_or_else(|| src.fail(format!("unknown loss {loss} (1..=4 are known)")))?;
        match model {
            3 => {}
            1 | 2 => {
                return Err(src.fail(format!(
                    "a {} word-vector model; only supervised classifiers can be read",
                    if model == 1 { "cbow" } else { "skipgram" }
                )));
            }
            other => return Err(src.fail(format!("unknown model kind {other} (3 = supervised)"))),
        }
        if dim <= 0 {
            return Err(src.fail(format!("dim is {dim}")));
        }
        if bucket < 0 {
            return Err(src.fail(format!("bucket is {bucket}")));
        }
        if version == 11 {
            maxn = 0; // fastText: old supervised models do not use character n-grams
        }
        let args = Args { dim, ws, epoch, min_count, neg, word_ngrams, loss, bucket, minn, maxn, lr_update_rate, t };

        // Dictionary.
        let size = src.i32("the dictionary size")?;
        let nwords = src.i32("the word count")?;
        let nlabels = src.i32("the label count")?;
        let ntokens = src.i64("the token count")?;
        let pruneidx_size = src.i64("the pruning index size")?;
        if size < 0 || nwords < 0 || nlabels < 0 || i64::from(nwords) + i64::from(nlabels) != i64::from(size) {
            return Err(src.fail(format!("inconsistent dictionary: size {size}, {nwords} words, {nlabels} labels")));
        }
        if nlabels == 0 {
            return Err(src.fail("the dictionary has no labels"));
        }
        let (size, nwords) = (size as usize, nwords as usize);
        // Each entry takes at least 10 bytes: a terminator, a count and a type.
        src.room(size as u64, 10, "the dictionary entries")?;
        let mut arena = Vec::new();
        let mut starts = Vec::with_capacity(size + 1);
        let mut counts = Vec::with_capacity(size);
        starts.push(0);
        for i in 0..size {
            src.cstr(&mut arena, &format!("dictionary entry {i}"))?;
            starts.push(arena.len());
            counts.push(src.i64(&format!("the count of dictionary entry {i}"))?);
            let kind = src.array::<1>(&format!("the type of dictionary entry {i}"))?[0];
            let expected = u8::from(i >= nwords);
            if kind != expected {
                return Err(src.fail(format!(
                    "dictionary entry {i} ({:?}) has type {kind}, expected {expected} ({} words come first, then \
                     labels)",
                    String::from_utf8_lossy(&arena[starts[i]..]),
                    nwords
                )));
            }
        }
        let prune = if pruneidx_size < 0 {
            if pruneidx_size != -1 {
                return Err(src.fail(format!("the pruning index size is {pruneidx_size}")));
            }
            None
        } else {
            src.room(pruneidx_size as u64, 8, "the pruning index")?;
            let mut pairs = Vec::with_capacity(pruneidx_size as usize);
            for _ in 0..pruneidx_size {
                let key = src.i32("a pruning index key")?;
                let value = src.i32("a pruning index value")?;
                pairs.push((key, value));
            }
            Some(pairs)
        };
        let feature_args = FeatureArgs { word_ngrams, bucket, minn, maxn };
        let dict = Dictionary::new(arena, starts, counts, nwords, ntokens, prune, feature_args)
            .map_err(|e| src.fail(format!("inconsistent arguments: {e}")))?;

        // Matrices.
        let quant_input = src.flag("the quantized-input flag")?;
        let input = read_matrix(&mut src, quant_input, shared_input, "the input matrix")?;
        let qout = src.flag("the quantized-output flag")?;
        let output = read_matrix(&mut src, quant_input && qout, None, "the output matrix")?;

        // Consistency of everything a prediction indexes.
        let dim_u = dim as usize;
        if input.cols() != dim_u || output.cols() != dim_u {
            return Err(src.fail(format!(
                "matrix widths {} (input) and {} (output) differ from dim {dim}",
                input.cols(),
                output.cols()
            )));
        }
        if output.rows() != dict.nlabels() {
            return Err(src.fail(format!(
                "the output matrix has {} rows for {} labels",
                output.rows(),
                dict.nlabels()
            )));
        }
        if dict.is_pruned() {
            if !quant_input {
                return Err(src.fail("a pruned dictionary with a dense input matrix (fastText rejects it too)"));
            }
            let ngram_rows = input.rows().checked_sub(nwords);
            if ngram_rows != Some(dict.prune_len())
                || dict.prune_values().any(|v| v < 0 || v as usize >= dict.prune_len())
            {
                return Err(src.fail(format!(
                    "the input matrix has {} rows for {nwords} words and a pruning index of {} entries",
                    input.rows(),
                    dict.prune_len()
                )));
            }
        } else if input.rows() as u64 != nwords as u64 + bucket as u64 {
            return Err(src.fail(format!(
                "the input matrix has {} rows, expected {nwords} words + {bucket} buckets",
                input.rows()
            )));
        }
        if src.left() > 0 {
            return Err(src.fail(format!(
                "{} unexpected bytes after the output matrix (offset {} of {})",
                src.left(),
                src.pos,
                src.len
            )));
        }
        let tree = if loss == Loss::HierarchicalSoftmax {
            let label_counts: Vec<i64> = (nwords..size).map(|id| dict.count(id)).collect();
            Some(HsTree::build(&label_counts).map_err(|e| src.fail(e))?)
        } else {
            None
        };
        Ok(FastTextModel { path: src.path, version, args, dict, input, output, tree, sigmoid: SigmoidTable::new() })
    }

    /// A model from trained parts (format version 12, no file yet).
    pub(crate) fn from_parts(args: Args, dict: Dictionary, input: Matrix, output: Matrix) -> Result<Self> {
        let tree = if args.loss == Loss::HierarchicalSoftmax {
            let counts: Vec<i64> = (dict.nwords()..dict.nwords() + dict.nlabels()).map(|id| dict.count(id)).collect();
            Some(HsTree::build(&counts).map_err(Error::invalid)?)
        } else {
            None
        };
        Ok(FastTextModel {
            path: PathBuf::from("<trained in memory>"),
            version: VERSION,
            args,
            dict,
            input,
            output,
            tree,
            sigmoid: SigmoidTable::new(),
        })
    }

    /// Writes the model in fastText's format (version 12), which fastText's `load_model`
    /// reads: a trained model as a `.bin`, a quantised one as a `.ftz`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        self.write(&mut w).and_then(|()| w.flush()).map_err(|e| Error::io(path, e))?;
        w.into_inner().map_err(|e| Error::io(path, e.into_error()))?.sync_all().map_err(|e| Error::io(path, e))
    }

    /// The bytes of [`FastTextModel::save`].
    pub fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
        let a = &self.args;
        for v in [MAGIC, VERSION, a.dim, a.ws, a.epoch, a.min_count, a.neg, a.word_ngrams, a.loss.code(), 3, a.bucket] {
            w.write_all(&v.to_le_bytes())?;
        }
        for v in [a.minn, a.maxn, a.lr_update_rate] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&a.t.to_le_bytes())?;
        let d = &self.dict;
        let size = d.nwords() + d.nlabels();
        for v in [size, d.nwords(), d.nlabels()] {
            w.write_all(&(v as i32).to_le_bytes())?;
        }
        w.write_all(&d.ntokens().to_le_bytes())?;
        let prune = d.prune_pairs();
        w.write_all(&prune.map_or(-1i64, |p| p.len() as i64).to_le_bytes())?;
        for id in 0..size {
            w.write_all(d.entry(id))?;
            w.write_all(&[0])?;
            w.write_all(&d.count(id).to_le_bytes())?;
            w.write_all(&[u8::from(id >= d.nwords())])?;
        }
        for &(k, v) in prune.unwrap_or_default() {
            w.write_all(&k.to_le_bytes())?;
            w.write_all(&v.to_le_bytes())?;
        }
        let quant_input = self.input.is_quantized();
        w.write_all(&[u8::from(quant_input)])?;
        write_matrix(w, &self.input)?;
        w.write_all(&[u8::from(quant_input && self.output.is_quantized())])?;
        write_matrix(w, &self.output)
    }

    /// The file the model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The format version of the file (11 or 12).
    pub fn version(&self) -> i32 {
        self.version
    }
    pub fn args(&self) -> &Args {
        &self.args
    }
    pub fn dictionary(&self) -> &Dictionary {
        &self.dict
    }
    pub fn dim(&self) -> usize {
        self.args.dim as usize
    }
    pub fn nlabels(&self) -> usize {
        self.dict.nlabels()
    }
    /// Whether the input matrix is product-quantised (a `.ftz` model).
    pub fn is_quantized(&self) -> bool {
        self.input.is_quantized()
    }
    /// The input matrix (dense or product-quantised), whose rows a prediction averages.
    pub fn input_matrix(&self) -> &Matrix {
        &self.input
    }
    /// The dense input matrix, row-major with [`dim`](Self::dim) columns (`None` for a
    /// quantised one): what [`load_sharing_input`](Self::load_sharing_input) takes.
    pub fn input_floats(&self) -> Option<&[f32]> {
        match &self.input {
            Matrix::Dense(m) => Some(&m.data),
            Matrix::Quant(_) => None,
        }
    }
    /// The bytes of label `label` (with its `__label__` prefix).
    pub fn label(&self, label: usize) -> &[u8] {
        self.dict.label(label)
    }
    /// The id of the label named `name` (its full entry, prefix included).
    pub fn label_id(&self, name: &[u8]) -> Option<usize> {
        let id = self.dict.id(name, super::dictionary::hash(name))?;
        id.checked_sub(self.dict.nwords())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a small model file the way fastText does: `words`, `labels` (with counts),
    /// the given arguments, and matrices filled with a simple pattern.
    pub(crate) struct Spec {
        pub words: Vec<&'static str>,
        pub labels: Vec<(&'static str, i64)>,
        pub dim: i32,
        pub word_ngrams: i32,
        pub loss: i32,
        pub bucket: i32,
        pub minn: i32,
        pub maxn: i32,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                words: vec!["</s>", "the", "cat"],
                labels: vec![("__label__a", 3), ("__label__b", 2)],
                dim: 4,
                word_ngrams: 2,
                loss: 3,
                bucket: 8,
                minn: 0,
                maxn: 0,
            }
        }
    }

    pub(crate) fn write_model(spec: &Spec) -> Vec<u8> {
        let mut b = Vec::new();
        let i32s = |b: &mut Vec<u8>, v: &[i32]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        i32s(&mut b, &[MAGIC, 12, spec.dim, 5, 5, 1, 5, spec.word_ngrams, spec.loss, 3, spec.bucket]);
        i32s(&mut b, &[spec.minn, spec.maxn, 100]);
        b.extend_from_slice(&1e-4f64.to_le_bytes());
        let nwords = spec.words.len() as i32;
        let nlabels = spec.labels.len() as i32;
        i32s(&mut b, &[nwords + nlabels, nwords, nlabels]);
        b.extend_from_slice(&100i64.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        for w in &spec.words {
            b.extend_from_slice(w.as_bytes());
            b.push(0);
            b.extend_from_slice(&5i64.to_le_bytes());
            b.push(0);
        }
        for (l, c) in &spec.labels {
            b.extend_from_slice(l.as_bytes());
            b.push(0);
            b.extend_from_slice(&c.to_le_bytes());
            b.push(1);
        }
        let dense = |b: &mut Vec<u8>, rows: i64, cols: i64, salt: f32| {
            b.extend_from_slice(&rows.to_le_bytes());
            b.extend_from_slice(&cols.to_le_bytes());
            for i in 0..rows * cols {
                b.extend_from_slice(&(((i as f32) * 0.37 + salt).sin()).to_le_bytes());
            }
        };
        b.push(0);
        dense(&mut b, i64::from(nwords + spec.bucket), i64::from(spec.dim), 0.1);
        b.push(0);
        dense(&mut b, i64::from(nlabels), i64::from(spec.dim), 0.7);
        b
    }

    pub(crate) fn read(bytes: &[u8]) -> Result<FastTextModel> {
        FastTextModel::read(bytes, bytes.len() as u64, "test.bin")
    }

    #[test]
    fn a_written_model_reads_back() {
        let m = read(&write_model(&Spec::default())).unwrap();
        assert_eq!(m.dim(), 4);
        assert_eq!(m.nlabels(), 2);
        assert_eq!(m.dict.nwords(), 3);
        assert_eq!(m.label(1), b"__label__b");
        assert_eq!(m.label_id(b"__label__a"), Some(0));
        assert_eq!(m.label_id(b"the"), None);
        assert_eq!(m.input.rows(), 11);
        assert_eq!(m.args.loss, Loss::Softmax);
    }

    #[test]
    fn a_read_model_writes_back_byte_for_byte() {
        for spec in [Spec::default(), Spec { loss: 1, minn: 2, maxn: 3, ..Spec::default() }] {
            let bytes = write_model(&spec);
            let mut again = Vec::new();
            read(&bytes).unwrap().write(&mut again).unwrap();
            assert_eq!(again, bytes);
        }
    }

    /// Floats owned by the test, standing in for another process's shared memory.
    struct TestFloats(Vec<f32>);

    impl SharedFloats for TestFloats {
        fn floats(&self) -> &[f32] {
            &self.0
        }
    }

    fn read_sharing(bytes: &[u8], input: Vec<f32>) -> Result<FastTextModel> {
        FastTextModel::read_with(bytes, bytes.len() as u64, "test.bin", Some(Box::new(TestFloats(input))))
    }

    #[test]
    fn a_model_sharing_its_input_matrix_uses_those_floats_and_predicts_the_same() {
        let bytes = write_model(&Spec::default());
        let own = read(&bytes).unwrap();
        let floats = own.input_floats().unwrap().to_vec();
        let shared = read_sharing(&bytes, floats.clone()).unwrap();
        let (a, b) = (own.input_floats().unwrap(), shared.input_floats().unwrap());
        assert_eq!(a, b);
        assert_ne!(a.as_ptr(), b.as_ptr());
        let prep = super::super::Preprocess::default();
        let (mut s1, mut s2) = (own.scratch(), shared.scratch());
        for text in ["the cat", "cat the the", "unknown words only", ""] {
            let p = own.predict(text, &prep, 2, 0.0, &mut s1).unwrap().to_vec();
            assert_eq!(p, shared.predict(text, &prep, 2, 0.0, &mut s2).unwrap().to_vec());
        }
        // A shared model writes the same file.
        let mut again = Vec::new();
        shared.write(&mut again).unwrap();
        assert_eq!(again, bytes);
    }

    #[test]
    fn shared_floats_must_be_the_files() {
        let bytes = write_model(&Spec::default());
        let floats = read(&bytes).unwrap().input_floats().unwrap().to_vec();
        let mut changed = floats.clone();
        changed[2 * 4 + 3] += 1.0; // row 2
        let err = read_sharing(&bytes, changed).unwrap_err().to_string();
        assert!(err.contains("the input matrix in shared memory differs from the file's at row 2"), "{err}");
        let err = read_sharing(&bytes, floats[..40].to_vec()).unwrap_err().to_string();
        assert!(err.contains("has 40 floats, the file's 11 x 4"), "{err}");
        let err = read_sharing(&bytes[..bytes.len() - 60], floats).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write_model(&Spec::default());
        for cut in 0..bytes.len() {
            let err = read(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, Error::Model { .. }), "cut at {cut}: {err}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read(&longer).unwrap_err().to_string().contains("unexpected bytes"));
    }

    #[test]
    fn wrong_magic_version_and_absurd_counts_are_named() {
        let bytes = write_model(&Spec::default());
        let patch = |offset: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[offset..offset + value.len()].copy_from_slice(value);
            read(&b).unwrap_err().to_string()
        };
        assert!(patch(0, &[0, 0, 0, 0]).contains("not a fastText model"));
        assert!(patch(4, &13i32.to_le_bytes()).contains("version 13"));
        assert!(patch(4, &10i32.to_le_bytes()).contains("version 10"));
        assert!(patch(32, &9i32.to_le_bytes()).contains("unknown loss"));
        assert!(patch(36, &1i32.to_le_bytes()).contains("cbow"));
        assert!(patch(8, &0i32.to_le_bytes()).contains("dim is 0"));
        assert!(patch(64, &i32::MAX.to_le_bytes()).contains("inconsistent dictionary"));
        assert!(patch(68, &i32::MAX.to_le_bytes()).contains("inconsistent dictionary"));
        // A huge dictionary that adds up: rejected before any allocation.
        let mut b = bytes.clone();
        b[64..68].copy_from_slice(&(i32::MAX - 1).to_le_bytes());
        b[68..72].copy_from_slice(&(i32::MAX - 2).to_le_bytes());
        b[72..76].copy_from_slice(&1i32.to_le_bytes());
        assert!(read(&b).unwrap_err().to_string().contains("dictionary entries needs"));
        assert!(patch(84, &i64::MAX.to_le_bytes()).contains("pruning index"));
        assert!(patch(84, &(-2i64).to_le_bytes()).contains("pruning index size is -2"));
    }

    #[test]
    fn absurd_matrix_shapes_are_rejected_before_allocation() {
        let bytes = write_model(&Spec::default());
        // The input matrix header follows the dictionary and the quantized-input flag.
        let dict_end = bytes.len() - (1 + 16 + 11 * 4 * 4) - (1 + 16 + 2 * 4 * 4);
        let mut b = bytes.clone();
        b[dict_end + 1..dict_end + 9].copy_from_slice(&i64::from(i32::MAX).to_le_bytes());
        b[dict_end + 9..dict_end + 17].copy_from_slice(&i64::from(i32::MAX).to_le_bytes());
        assert!(read(&b).unwrap_err().to_string().contains("input matrix data needs"));
        let mut b = bytes.clone();
        b[dict_end + 1..dict_end + 9].copy_from_slice(&(-1i64).to_le_bytes());
        assert!(read(&b).unwrap_err().to_string().contains("input matrix rows is -1"));
        let mut b = bytes.clone();
        b[dict_end] = 7;
        assert!(read(&b).unwrap_err().to_string().contains("not a boolean"));
    }

    #[test]
    fn inconsistent_shapes_and_types_are_rejected() {
        let spec = Spec { bucket: 0, ..Spec::default() };
        assert!(read(&write_model(&spec)).unwrap_err().to_string().contains("n-grams need buckets"));
        let bytes = write_model(&Spec::default());
        // The first entry's type byte: header 64 + dictionary header 28 + "</s>\0" + count.
        let mut b = bytes.clone();
        b[64 + 28 + 5 + 8] = 1;
        assert!(read(&b).unwrap_err().to_string().contains("has type 1"));
    }

    #[test]
    fn version_11_supervised_models_drop_char_ngrams() {
        let mut bytes = write_model(&Spec { minn: 2, maxn: 4, ..Spec::default() });
        bytes[4..8].copy_from_slice(&11i32.to_le_bytes());
        let m = read(&bytes).unwrap();
        assert_eq!(m.version(), 11);
        assert_eq!(m.args().maxn, 0);
    }

    #[test]
    fn the_huffman_tree_joins_smallest_counts_first() {
        let tree = HsTree::build(&[5, 3, 2, 1]).unwrap();
        // 4 leaves → internal nodes 4 (leaves 3, 2), 5 (node 4, leaf 1: a tie goes to the node),
        // 6 (leaf 0, node 5): the root.
        assert_eq!((tree.left[4], tree.right[4]), (3, 2));
        assert_eq!((tree.left[5], tree.right[5]), (4, 1));
        assert_eq!((tree.left[6], tree.right[6]), (0, 5));
        assert_eq!(tree.root(), 6);
        assert!(HsTree::build(&[UNSET_FOR_TEST, 1]).is_err());
        assert!(HsTree::build(&[7]).is_ok());
    }

    const UNSET_FOR_TEST: i64 = 2_000_000_000_000_000;
}
