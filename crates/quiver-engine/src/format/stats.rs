//! Page statistics: min, max and NaN presence for primitive and string columns, stored in the
//! page table so a reader can skip pages without reading them.
//!
//! Values are stored as their little-endian native bytes (bool as one byte); strings as UTF-8,
//! with the minimum truncated to [`MAX_STRING_STAT`] bytes (a prefix is still a lower bound)
//! and the maximum omitted when longer (no cheap upper bound exists).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_buffer::ToByteSlice;
use arrow_schema::{DataType, TimeUnit};

/// Longest string statistic kept, in bytes.
pub const MAX_STRING_STAT: usize = 64;

/// Statistics of one page.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageStats {
    pub min: Option<Vec<u8>>,
    pub max: Option<Vec<u8>>,
    pub has_nan: bool,
}

fn primitive_stats<T: ArrowPrimitiveType>(array: &PrimitiveArray<T>) -> PageStats {
    use arrow_array::ArrowNativeTypeOp;
    let mut min: Option<T::Native> = None;
    let mut max: Option<T::Native> = None;
    let mut has_nan = false;
    let mut visit = |v: T::Native| {
        // NaN is the only value not equal to itself under PartialOrd.
        if v.partial_cmp(&v).is_none() {
            has_nan = true;
            return;
        }
        if min.is_none_or(|m| v.is_lt(m)) {
            min = Some(v);
        }
        if max.is_none_or(|m| v.is_gt(m)) {
            max = Some(v);
        }
    };
    if array.null_count() == 0 {
        array.values().iter().copied().for_each(&mut visit);
    } else {
        array.iter().flatten().for_each(&mut visit);
    }
    let bytes = |v: T::Native| std::slice::from_ref(&v).to_byte_slice().to_vec();
    PageStats {
        min: min.map(bytes),
        max: max.map(bytes),
        has_nan,
    }
}

fn string_stats<'a>(values: impl Iterator<Item = Option<&'a str>>) -> PageStats {
    let mut min: Option<&str> = None;
    let mut max: Option<&str> = None;
    for v in values.flatten() {
        if min.is_none_or(|m| v < m) {
            min = Some(v);
        }
        if max.is_none_or(|m| v > m) {
            max = Some(v);
        }
    }
    let min = min.map(|m| {
        let mut cut = m.len().min(MAX_STRING_STAT);
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.as_bytes()[..cut].to_vec()
    });
    let max = max
        .filter(|m| m.len() <= MAX_STRING_STAT)
        .map(|m| m.as_bytes().to_vec());
    PageStats {
        min,
        max,
        has_nan: false,
    }
}

/// Computes statistics for a page of `array`; `None` for types without statistics.
pub fn compute(array: &dyn Array) -> Option<PageStats> {
    Some(match array.data_type() {
        DataType::Boolean => {
            let b = array.as_boolean();
            let (mut any_true, mut any_false) = (false, false);
            for v in b.iter().flatten() {
                any_true |= v;
                any_false |= !v;
            }
            if !any_true && !any_false {
                return Some(PageStats::default());
            }
            PageStats {
                min: Some(vec![u8::from(!any_false)]),
                max: Some(vec![u8::from(any_true)]),
                has_nan: false,
            }
        }
        DataType::Int8 => primitive_stats(array.as_primitive::<Int8Type>()),
        DataType::Int16 => primitive_stats(array.as_primitive::<Int16Type>()),
        DataType::Int32 => primitive_stats(array.as_primitive::<Int32Type>()),
        DataType::Int64 => primitive_stats(array.as_primitive::<Int64Type>()),
        DataType::UInt8 => primitive_stats(array.as_primitive::<UInt8Type>()),
        DataType::UInt16 => primitive_stats(array.as_primitive::<UInt16Type>()),
        DataType::UInt32 => primitive_stats(array.as_primitive::<UInt32Type>()),
        DataType::UInt64 => primitive_stats(array.as_primitive::<UInt64Type>()),
        DataType::Float16 => primitive_stats(array.as_primitive::<Float16Type>()),
        DataType::Float32 => primitive_stats(array.as_primitive::<Float32Type>()),
        DataType::Float64 => primitive_stats(array.as_primitive::<Float64Type>()),
        DataType::Date32 => primitive_stats(array.as_primitive::<Date32Type>()),
        DataType::Timestamp(TimeUnit::Second, _) => {
            primitive_stats(array.as_primitive::<TimestampSecondType>())
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            primitive_stats(array.as_primitive::<TimestampMillisecondType>())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            primitive_stats(array.as_primitive::<TimestampMicrosecondType>())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            primitive_stats(array.as_primitive::<TimestampNanosecondType>())
        }
        DataType::Utf8 => string_stats(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => string_stats(array.as_string::<i64>().iter()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int32Array, StringArray};

    #[test]
    fn min_max_skip_nulls_and_nans() {
        let a = Int32Array::from(vec![Some(5), None, Some(-3), Some(9)]);
        let s = compute(&a).unwrap();
        assert_eq!(s.min.unwrap(), (-3i32).to_le_bytes());
        assert_eq!(s.max.unwrap(), 9i32.to_le_bytes());
        let f = Float32Array::from(vec![1.5, f32::NAN, -2.0]);
        let s = compute(&f).unwrap();
        assert!(s.has_nan);
        assert_eq!(s.min.unwrap(), (-2.0f32).to_le_bytes());
        assert_eq!(s.max.unwrap(), 1.5f32.to_le_bytes());
    }

    #[test]
    fn long_strings_keep_a_prefix_min_and_no_max() {
        let long = "z".repeat(100);
        let a = StringArray::from(vec![Some("b"), Some(long.as_str()), None]);
        let s = compute(&a).unwrap();
        assert_eq!(s.min.unwrap(), b"b");
        assert_eq!(s.max, None);
    }
}
