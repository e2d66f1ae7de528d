//! Documents out of Arrow string or binary arrays, borrowing the text (no copy).

use std::borrow::Cow;

use arrow_array::cast::AsArray;
use arrow_array::types::{BinaryType, LargeBinaryType};
use arrow_array::{Array, ArrayAccessor};
use arrow_schema::DataType;

use super::{Document, OnError, ReadReport, Skip, SkipReason};
use crate::error::{Error, Result};

/// Appends the rows of `array` as documents of `source`, numbering them from `first_line`.
/// See [`arrow_records`] for what is skipped.
pub fn push_arrow_documents<'a>(
    array: &'a dyn Array,
    source: u32,
    first_line: u64,
    on_error: OnError,
    report: &mut ReadReport,
    docs: &mut Vec<Document<'a>>,
) -> Result<()> {
    let parsed = arrow_records(array)?;
    report.collect(source, first_line, parsed, on_error, docs)
}

/// The text of each row of `array`. Nulls are skipped as
/// [`SkipReason::MissingField`], binary rows that are not UTF-8 as [`SkipReason::InvalidUtf8`].
/// Any column type other than string or binary, or a dictionary of them (a categorical
/// column, as pandas writes it), is an error.
pub fn arrow_records<'a>(array: &'a dyn Array) -> Result<Vec<std::result::Result<Cow<'a, str>, Skip>>> {
    Ok(match array.data_type() {
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let values = arrow_records(dictionary.values().as_ref())?;
            let keys = dictionary.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        Err(Skip::new(SkipReason::MissingField, "null"))
                    } else {
                        values[keys[i]].clone()
                    }
                })
                .collect()
        }
        DataType::Utf8 => texts(array.as_string::<i32>(), Ok),
        DataType::LargeUtf8 => texts(array.as_string::<i64>(), Ok),
        DataType::Utf8View => texts(array.as_string_view(), Ok),
        DataType::Binary => texts(array.as_bytes::<BinaryType>(), utf8),
        DataType::LargeBinary => texts(array.as_bytes::<LargeBinaryType>(), utf8),
        DataType::BinaryView => texts(array.as_binary_view(), utf8),
        other => {
            return Err(Error::invalid(format!(
                "the text column has type {other}; expected a string or binary column"
            )));
        }
    })
}

fn utf8(bytes: &[u8]) -> std::result::Result<&str, Skip> {
    std::str::from_utf8(bytes)
        .map_err(|e| Skip::new(SkipReason::InvalidUtf8, format!("invalid UTF-8 at byte {}", e.valid_up_to())))
}

fn texts<'a, A, T>(
    array: A,
    decode: impl Fn(T) -> std::result::Result<&'a str, Skip>,
) -> Vec<std::result::Result<Cow<'a, str>, Skip>>
where
    A: ArrayAccessor<Item = T> + Array,
{
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                Err(Skip::new(SkipReason::MissingField, "null"))
            } else {
                decode(array.value(i)).map(Cow::Borrowed)
            }
        })
        .collect()
}
