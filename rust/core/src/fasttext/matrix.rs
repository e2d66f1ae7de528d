//! The input and output matrices: dense float rows, or rows product-quantised (`.ftz`).
//!
//! Sums run in fastText's order in f32 without fused multiply-adds: row additions are
//! element-wise (so they vectorise without reordering anything), dot products accumulate
//! sequentially from 0.

use std::fmt;
use std::ops::Deref;

use crate::memory::{HugePageAlias, prefetch_all};

/// Sub-quantizer centroids per code (`ksub`).
pub const KSUB: usize = 256;

/// How many rows ahead [`Matrix::average_rows`] prefetches.
const PREFETCH_ROWS: usize = 4;

/// Floats kept outside the model, such as memory that several processes map at once (the
/// Python binding wraps a read-only numpy array from Ray's object store), so that they share
/// one copy of a large input matrix.
pub trait SharedFloats: Send + Sync {
    /// The floats. They must stay valid and unchanged for as long as `self` lives.
    fn floats(&self) -> &[f32];
}

/// The floats of a dense matrix: its own, or shared with other processes (read through a
/// [`HugePageAlias`] where the kernel allows one).
pub(crate) enum Floats {
    Owned(Vec<f32>),
    Shared { owner: Box<dyn SharedFloats>, alias: Option<HugePageAlias> },
}

impl Floats {
    pub(crate) fn shared(owner: Box<dyn SharedFloats>) -> Self {
        let floats = owner.floats();
        // SAFETY: any f32 is 4 plain bytes.
        let bytes = unsafe { std::slice::from_raw_parts(floats.as_ptr().cast::<u8>(), size_of_val(floats)) };
        let alias = HugePageAlias::new(bytes);
        Floats::Shared { owner, alias }
    }
}

impl Deref for Floats {
    type Target = [f32];

    #[inline]
    fn deref(&self) -> &[f32] {
        match self {
            Floats::Owned(v) => v,
            Floats::Shared { alias: Some(alias), .. } => {
                let bytes = alias.bytes();
                // SAFETY: the alias maps the owner's floats at the same offset within a page,
                // so as aligned; `owner` keeps them alive and unchanged as long as `self`.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
            }
            Floats::Shared { owner, alias: None } => owner.floats(),
        }
    }
}

impl fmt::Debug for Floats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if matches!(self, Floats::Owned(_)) { "owned" } else { "shared" };
        write!(f, "{} {kind} floats", self.len())
    }
}

/// A row-major `rows × cols` matrix of f32.
#[derive(Debug)]
pub struct DenseMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: Floats,
}

/// A product quantizer: `nsubq` sub-vectors of `dsub` floats (the last of `lastdsub`), each
/// coded by one of [`KSUB`] centroids.
#[derive(Debug)]
pub struct ProductQuantizer {
    pub(crate) dim: usize,
    pub(crate) nsubq: usize,
    pub(crate) dsub: usize,
    pub(crate) lastdsub: usize,
    pub(crate) centroids: Vec<f32>,
}

impl DenseMatrix {
    #[inline]
    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

impl ProductQuantizer {
    /// The geometry fastText derives from `dim` and `dsub`, or `None` if it is impossible.
    pub fn geometry(dim: usize, dsub: usize) -> Option<(usize, usize)> {
        if dim == 0 || dsub == 0 {
            return None;
        }
        let nsubq = dim.div_ceil(dsub);
        let lastdsub = if dim.is_multiple_of(dsub) { dsub } else { dim % dsub };
        Some((nsubq, lastdsub))
    }

    /// The centroid of code `code` of sub-quantizer `m`, with its length.
    #[inline]
    fn centroid(&self, m: usize, code: u8) -> &[f32] {
        let code = code as usize;
        if m == self.nsubq - 1 {
            let start = m * KSUB * self.dsub + code * self.lastdsub;
            &self.centroids[start..start + self.lastdsub]
        } else {
            let start = (m * KSUB + code) * self.dsub;
            &self.centroids[start..start + self.dsub]
        }
    }
}

/// Rows stored as product-quantizer codes, optionally with quantised norms.
#[derive(Debug)]
pub struct QuantMatrix {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) codes: Vec<u8>,
    pub(crate) pq: ProductQuantizer,
    /// One norm code per row and the one-dimensional quantizer of the norms.
    pub(crate) norms: Option<(Vec<u8>, ProductQuantizer)>,
}

impl QuantMatrix {
    #[inline]
    fn norm(&self, row: usize) -> f32 {
        match &self.norms {
            Some((codes, npq)) => npq.centroid(0, codes[row])[0],
            None => 1.0,
        }
    }
}

/// One of the two matrix kinds of a model file.
#[derive(Debug)]
pub enum Matrix {
    Dense(DenseMatrix),
    Quant(QuantMatrix),
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Dense(m) => m.rows,
            Matrix::Quant(m) => m.rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Matrix::Dense(m) => m.cols,
            Matrix::Quant(m) => m.cols,
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Matrix::Quant(_))
    }

    /// `acc += row(i)` (a quantised row decodes as `norm * centroid`, element by element).
    #[inline]
    pub fn add_row(&self, i: usize, acc: &mut [f32]) {
        match self {
            Matrix::Dense(m) => add_into(acc, m.row(i)),
            Matrix::Quant(m) => {
                let alpha = m.norm(i);
                let codes = &m.codes[i * m.pq.nsubq..(i + 1) * m.pq.nsubq];
                for (sub, &code) in codes.iter().enumerate() {
                    let c = m.pq.centroid(sub, code);
                    let acc = &mut acc[sub * m.pq.dsub..sub * m.pq.dsub + c.len()];
                    for (a, &x) in acc.iter_mut().zip(c) {
                        *a += alpha * x;
                    }
                }
            }
        }
    }

    /// fastText's average of rows: the f32 sum in the order given, times `(float)(1.0 / n)`.
    /// `out` is zeroed first; no rows leave it zero.
    pub fn average_rows(&self, rows: &[i32], out: &mut [f32]) {
        out.fill(0.0);
        if let Matrix::Dense(m) = self {
            // The floats once, not per row (a shared matrix answers through a trait object).
            let data: &[f32] = &m.data;
            let row = |r: i32| &data[r as usize * m.cols..(r as usize + 1) * m.cols];
            // Rows are scattered over a matrix of gigabytes: fetch a few rows ahead so the
            // memory latencies overlap instead of stalling one row at a time.
            for &r in rows.iter().take(PREFETCH_ROWS) {
                prefetch_all(row(r));
            }
            for (j, &r) in rows.iter().enumerate() {
                if let Some(&ahead) = rows.get(j + PREFETCH_ROWS) {
                    prefetch_all(row(ahead));
                }
                add_into(out, row(r));
            }
        } else {
            for &r in rows {
                self.add_row(r as usize, out);
            }
        }
        if !rows.is_empty() {
            let scale = (1.0f64 / rows.len() as f64) as f32;
            for x in out.iter_mut() {
                *x *= scale;
            }
        }
    }

    /// `row(i) · v`, accumulated sequentially from 0 (times the norm for quantised rows).
    #[inline]
    pub fn dot_row(&self, i: usize, v: &[f32]) -> f32 {
        match self {
            Matrix::Dense(m) => {
                let row = m.row(i);
                let mut d = 0.0f32;
                for (&r, &x) in row.iter().zip(v) {
                    d += r * x;
                }
                d
            }
            Matrix::Quant(m) => {
                let codes = &m.codes[i * m.pq.nsubq..(i + 1) * m.pq.nsubq];
                let mut d = 0.0f32;
                for (sub, &code) in codes.iter().enumerate() {
                    let c = m.pq.centroid(sub, code);
                    for (&x, &cx) in v[sub * m.pq.dsub..].iter().zip(c) {
                        d += x * cx;
                    }
                }
                d * m.norm(i)
            }
        }
    }
}

/// `acc += row`, element by element.
#[inline]
fn add_into(acc: &mut [f32], row: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(row) {
        *a += x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pq_geometry_matches_fasttext() {
        assert_eq!(ProductQuantizer::geometry(16, 2), Some((8, 2)));
        assert_eq!(ProductQuantizer::geometry(10, 3), Some((4, 1)));
        assert_eq!(ProductQuantizer::geometry(1, 1), Some((1, 1)));
        assert_eq!(ProductQuantizer::geometry(0, 2), None);
        assert_eq!(ProductQuantizer::geometry(4, 0), None);
    }

    #[test]
    fn quantised_rows_decode_from_their_centroids() {
        // dim 3, dsub 2: sub-quantizer 0 has 2-float centroids, the last one 1-float centroids.
        let mut centroids = vec![0.0f32; 3 * KSUB];
        centroids[5 * 2] = 1.5;
        centroids[5 * 2 + 1] = -2.0;
        centroids[KSUB * 2 + 7] = 0.25;
        let pq = ProductQuantizer { dim: 3, nsubq: 2, dsub: 2, lastdsub: 1, centroids };
        let mut norm_centroids = vec![0.0f32; KSUB];
        norm_centroids[9] = 2.0;
        let npq = ProductQuantizer { dim: 1, nsubq: 1, dsub: 1, lastdsub: 1, centroids: norm_centroids };
        let m = Matrix::Quant(QuantMatrix { rows: 1, cols: 3, codes: vec![5, 7], pq, norms: Some((vec![9], npq)) });
        let mut acc = vec![0.0f32; 3];
        m.add_row(0, &mut acc);
        assert_eq!(acc, vec![3.0, -4.0, 0.5]);
        assert_eq!(m.dot_row(0, &[1.0, 1.0, 1.0]), (1.5f32 - 2.0 + 0.25) * 2.0);
    }

    #[test]
    fn average_multiplies_by_the_float_reciprocal() {
        let m = Matrix::Dense(DenseMatrix { rows: 3, cols: 1, data: Floats::Owned(vec![1.0, 1.0, 1.0]) });
        let mut out = vec![0.0f32];
        m.average_rows(&[0, 1, 2], &mut out);
        assert_eq!(out[0], 3.0f32 * (1.0f64 / 3.0) as f32);
    }
}
