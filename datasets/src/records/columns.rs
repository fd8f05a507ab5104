//! Small Arrow helpers shared by the record codecs: typed column lookup that names the file and
//! column at fault, and builders for the column kinds records use.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};

use super::RecordsError;

/// Column `name` of `batch` as type `T`, or an error naming the file and column.
pub fn column<'a, T: 'static>(
    path: &Path,
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, RecordsError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| RecordsError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            problem: "is missing".into(),
        })?;
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| RecordsError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            problem: format!("has unexpected type {}", col.data_type()),
        })
}

/// A nullable string cell.
pub fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

/// A non-null string column.
pub fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// A nullable string column.
pub fn opt_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// A `u32` column.
pub fn u32s(values: impl Iterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(values))
}

/// A `u64` column.
pub fn u64s(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

/// An `f32` column.
pub fn f32s(values: impl Iterator<Item = f32>) -> ArrayRef {
    Arc::new(Float32Array::from_iter_values(values))
}
