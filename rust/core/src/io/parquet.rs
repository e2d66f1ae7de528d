//! Parquet files, one record batch at a time: of the text column to read documents, of every
//! column to copy selected rows.

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{Document, ReadOptions, ReadReport, Skip, arrow_records, push_arrow_documents};
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
    let (reader, rows) = open(path, Some(&options.text_field))?;
    let file_bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let total_rows = rows.max(1) as u128;
    let mut next_line = 1u64;
    for batch in reader {
        let batch = batch.map_err(|e| format_error(path, e))?;
        let mut docs = Vec::with_capacity(batch.num_rows());
        push_arrow_documents(batch.column(0).as_ref(), source, next_line, options.on_error, report, &mut docs)
            .map_err(|e| located(path, e))?;
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

/// The text of each row of a batch, or why the row is not a document.
type RowTexts<'a> = Vec<std::result::Result<Cow<'a, str>, Skip>>;

/// Calls `consume(batch, texts)` for every record batch of the file with all its columns, and
/// the text of each row (or why the row is not a document).
pub(super) fn for_each_batch(
    path: &Path,
    text_field: &str,
    consume: &mut dyn FnMut(&RecordBatch, RowTexts<'_>) -> Result<()>,
) -> Result<()> {
    let (reader, _) = open(path, None)?;
    for batch in reader {
        let batch = batch.map_err(|e| format_error(path, e))?;
        let column = batch.column_by_name(text_field).ok_or_else(|| no_column(path, text_field))?;
        let texts = arrow_records(column.as_ref()).map_err(|e| located(path, e))?;
        consume(&batch, texts)?;
    }
    Ok(())
}

/// A batch reader over the file (only the column `projection` if given) and its row count.
fn open(path: &Path, projection: Option<&str>) -> Result<(ParquetRecordBatchReader, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format_error(path, e))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    if let Some(field) = projection {
        let column = builder.schema().index_of(field).map_err(|_| no_column(path, field))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
        builder = builder.with_projection(mask);
    }
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(|e| format_error(path, e))?;
    Ok((reader, rows))
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format { path: path.into(), detail: e.to_string() }
}

fn no_column(path: &Path, field: &str) -> Error {
    Error::Format { path: path.into(), detail: format!("no column named {field:?}") }
}

/// A bad text column is a property of the file: name it.
fn located(path: &Path, e: Error) -> Error {
    match e {
        Error::InvalidArgument(detail) => Error::Format { path: path.into(), detail },
        other => other,
    }
}
