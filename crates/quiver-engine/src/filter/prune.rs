//! Page pruning: which row ranges of a data file may hold rows matching a filter, judged from
//! each page's min / max / null-count statistics without reading the pages.
//!
//! Only conjunctions and disjunctions of `column <op> constant`, `column IN (…)`,
//! `column IS [NOT] NULL` prune; anything else keeps every row (evaluation decides).

use std::cmp::Ordering;
use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};

use super::expr::{CmpOp, Expr};
use crate::format::reader::{ColumnMeta, PageMeta};

/// A comparable statistic or literal value.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Int(i128),
    Float(f64),
    Bytes(Vec<u8>),
}

fn cmp_keys(a: &Key, b: &Key) -> Option<Ordering> {
    match (a, b) {
        (Key::Int(x), Key::Int(y)) => Some(x.cmp(y)),
        // Arrow orders floats by IEEE total order, and so do the statistics.
        (Key::Float(x), Key::Float(y)) => Some(x.total_cmp(y)),
        (Key::Bytes(x), Key::Bytes(y)) => Some(x.as_slice().cmp(y.as_slice())),
        _ => None,
    }
}

/// Decodes a page statistic of type `t` (see FORMAT.md "Statistics").
fn stat_key(t: &DataType, bytes: &[u8]) -> Option<Key> {
    fn le<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
        b.try_into().ok()
    }
    Some(match t {
        DataType::Boolean => Key::Int(i128::from(*bytes.first()?)),
        DataType::Int8 => Key::Int(i8::from_le_bytes(le(bytes)?).into()),
        DataType::Int16 => Key::Int(i16::from_le_bytes(le(bytes)?).into()),
        DataType::Int32 | DataType::Date32 => Key::Int(i32::from_le_bytes(le(bytes)?).into()),
        DataType::Int64 | DataType::Timestamp(_, _) => {
            Key::Int(i64::from_le_bytes(le(bytes)?).into())
        }
        DataType::UInt8 => Key::Int(u8::from_le_bytes(le(bytes)?).into()),
        DataType::UInt16 => Key::Int(u16::from_le_bytes(le(bytes)?).into()),
        DataType::UInt32 => Key::Int(u32::from_le_bytes(le(bytes)?).into()),
        DataType::UInt64 => Key::Int(u64::from_le_bytes(le(bytes)?).into()),
        DataType::Float16 => Key::Float(half::f16::from_le_bytes(le(bytes)?).to_f64()),
        DataType::Float32 => Key::Float(f32::from_le_bytes(le(bytes)?).into()),
        DataType::Float64 => Key::Float(f64::from_le_bytes(le(bytes)?)),
        DataType::Utf8 | DataType::LargeUtf8 => Key::Bytes(bytes.to_vec()),
        _ => return None,
    })
}

/// The key of element `i` of a literal array of type `t` (the column's type).
fn literal_key(a: &ArrayRef, i: usize) -> Option<Key> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Boolean => Key::Int(i128::from(a.as_boolean().value(i))),
        DataType::Int8 => Key::Int(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => Key::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => Key::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => Key::Int(a.as_primitive::<Int64Type>().value(i).into()),
        DataType::UInt8 => Key::Int(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => Key::Int(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => Key::Int(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => Key::Int(a.as_primitive::<UInt64Type>().value(i).into()),
        DataType::Date32 => Key::Int(a.as_primitive::<Date32Type>().value(i).into()),
        DataType::Timestamp(TimeUnit::Second, _) => {
            Key::Int(a.as_primitive::<TimestampSecondType>().value(i).into())
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Key::Int(a.as_primitive::<TimestampMillisecondType>().value(i).into())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Key::Int(a.as_primitive::<TimestampMicrosecondType>().value(i).into())
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Key::Int(a.as_primitive::<TimestampNanosecondType>().value(i).into())
        }
        DataType::Float16 => Key::Float(a.as_primitive::<Float16Type>().value(i).to_f64()),
        DataType::Float32 => Key::Float(a.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => Key::Float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Key::Bytes(a.as_string::<i32>().value(i).as_bytes().to_vec()),
        DataType::LargeUtf8 => Key::Bytes(a.as_string::<i64>().value(i).as_bytes().to_vec()),
        _ => return None,
    })
}

/// Whether `page` may hold a row with `column <op> value`.
fn page_may_match(t: &DataType, page: &PageMeta, op: CmpOp, value: &Key) -> bool {
    if page.null_count >= page.num_rows {
        return false; // all NULL: no comparison holds
    }
    if page.stats.has_nan {
        return true;
    }
    let min = page.stats.min.as_deref().and_then(|b| stat_key(t, b));
    let max = page.stats.max.as_deref().and_then(|b| stat_key(t, b));
    let vs = |k: &Option<Key>| k.as_ref().and_then(|k| cmp_keys(k, value));
    let (min_vs, max_vs) = (vs(&min), vs(&max));
    match op {
        CmpOp::Eq => min_vs != Some(Ordering::Greater) && max_vs != Some(Ordering::Less),
        CmpOp::Lt => min_vs != Some(Ordering::Greater) && min_vs != Some(Ordering::Equal),
        CmpOp::LtEq => min_vs != Some(Ordering::Greater),
        CmpOp::Gt => max_vs != Some(Ordering::Less) && max_vs != Some(Ordering::Equal),
        CmpOp::GtEq => max_vs != Some(Ordering::Less),
        // Only a page whose every value equals `value` is ruled out.
        CmpOp::NotEq => !(min_vs == Some(Ordering::Equal) && max_vs == Some(Ordering::Equal)),
    }
}

/// Sorted, disjoint row ranges.
pub(crate) type RowRanges = Vec<Range<u64>>;

fn pages_where(column: &ColumnMeta, keep: impl Fn(&PageMeta) -> bool) -> RowRanges {
    let mut out: RowRanges = Vec::new();
    for (i, page) in column.pages.iter().enumerate() {
        if !keep(page) {
            continue;
        }
        let (start, end) = (column.row_starts[i], column.row_starts[i + 1]);
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(start..end),
        }
    }
    out
}

pub(crate) fn intersect(a: &[Range<u64>], b: &[Range<u64>]) -> RowRanges {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            out.push(start..end);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

pub(crate) fn union(a: &[Range<u64>], b: &[Range<u64>]) -> RowRanges {
    let mut all: Vec<Range<u64>> = a.iter().chain(b).cloned().collect();
    all.sort_by_key(|r| r.start);
    let mut out: RowRanges = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Row ranges that may match `expr`; `None` when the statistics cannot narrow it down.
/// `column` looks up a top-level column's page table.
pub(crate) fn candidate_ranges<'a>(
    expr: &Expr,
    column: &dyn Fn(&str) -> Option<&'a ColumnMeta>,
) -> Option<RowRanges> {
    match expr {
        Expr::And(items) => {
            let mut acc: Option<RowRanges> = None;
            for item in items {
                if let Some(r) =
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || candidate_ranges(item, column))
                {
                    acc = Some(match acc {
                        Some(a) => intersect(&a, &r),
                        None => r,
                    });
                }
            }
            acc
        }
        Expr::Or(items) => {
            let mut acc: RowRanges = Vec::new();
            for item in items {
                let r =
                    stacker::maybe_grow(64 * 1024, 1024 * 1024, || candidate_ranges(item, column))?;
                acc = union(&acc, &r);
            }
            Some(acc)
        }
        Expr::Compare { op, left, right } => {
            let (name, t, value, op) = match (left.as_ref(), right.as_ref()) {
                (
                    Expr::Column {
                        root,
                        path,
                        data_type,
                    },
                    Expr::Literal(v),
                ) if path.is_empty() => (root, data_type, v, *op),
                (
                    Expr::Literal(v),
                    Expr::Column {
                        root,
                        path,
                        data_type,
                    },
                ) if path.is_empty() => (root, data_type, v, op.flip()),
                _ => return None,
            };
            let meta = column(name)?;
            match literal_key(value, 0) {
                Some(key) => Some(pages_where(meta, |p| page_may_match(t, p, op, &key))),
                // Comparing with NULL matches nothing.
                None if value.is_null(0) => Some(Vec::new()),
                None => None,
            }
        }
        Expr::InList {
            expr,
            list,
            negated: false,
            ..
        } => {
            let Expr::Column {
                root,
                path,
                data_type,
            } = expr.as_ref()
            else {
                return None;
            };
            if !path.is_empty() {
                return None;
            }
            let meta = column(root)?;
            let keys: Vec<Key> = (0..list.len())
                .map(|i| literal_key(list, i))
                .collect::<Option<_>>()?;
            Some(pages_where(meta, |p| {
                keys.iter()
                    .any(|k| page_may_match(data_type, p, CmpOp::Eq, k))
            }))
        }
        Expr::IsNull { expr, negated } => {
            let Expr::Column { root, path, .. } = expr.as_ref() else {
                return None;
            };
            if !path.is_empty() {
                return None;
            }
            let meta = column(root)?;
            Some(if *negated {
                pages_where(meta, |p| p.null_count < p.num_rows)
            } else {
                pages_where(meta, |p| p.null_count > 0)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_algebra() {
        let middle = vec![5..25, 40..41];
        assert_eq!(intersect(&[0..10, 20..30], &middle), vec![5..10, 20..25]);
        assert_eq!(
            union(&[0..10, 20..30], &[5..12, 30..31]),
            vec![0..12, 20..31]
        );
        assert_eq!(intersect(&middle, &[]), Vec::<Range<u64>>::new());
    }
}
