//! Parquet files, one record batch of the text column at a time.

use std::fs::File;
use std::path::Path;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Document, ReadOptions, ReadReport, push_arrow_documents};
use crate::error::{Error, Result};

/// Rows per record batch: bounds memory whatever the file size.
const BATCH_ROWS: usize = 8192;

pub(super) fn read(
    path: &Path,
    source: u32,
    options: &ReadOptions,
    report: &mut ReadReport,
    consume: &mut dyn FnMut(&[Document<'_>]) -> Result<()>,
) -> Result<()> {
    let format_error = |e: parquet::errors::ParquetError| Error::Format { path: path.into(), detail: e.to_string() };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(format_error)?;
    let column = builder.schema().index_of(&options.text_field).map_err(|_| Error::Format {
        path: path.into(),
        detail: format!("no column named {:?}", options.text_field),
    })?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(format_error)?;
    let file_bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let total_rows = rows.max(1) as u128;
    let mut next_line = 1u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::Format { path: path.into(), detail: e.to_string() })?;
        let mut docs = Vec::with_capacity(batch.num_rows());
        push_arrow_documents(batch.column(0).as_ref(), source, next_line, options.on_error, report, &mut docs)
            .map_err(|e| match e {
                Error::InvalidArgument(detail) => Error::Format { path: path.into(), detail },
                other => other,
            })?;
        if let Some(count) = &options.bytes_read {
            // Bytes in proportion to rows: the row groups are decoded, not read byte by byte.
            let before = u128::from(file_bytes) * u128::from(next_line - 1) / total_rows;
            let after = u128::from(file_bytes) * u128::from(next_line - 1 + batch.num_rows() as u64) / total_rows;
            count.fetch_add((after - before) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        next_line += batch.num_rows() as u64;
        if !docs.is_empty() {
            consume(&docs)?;
        }
    }
    Ok(())
}
