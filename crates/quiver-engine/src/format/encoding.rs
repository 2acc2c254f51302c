//! Page encoding: how one column's values for a run of rows become bytes, and back.
//!
//! A page holds a list of buffers written depth-first over the array's tree (see FORMAT.md,
//! "Page layout"): for every node, its validity bitmap (zero bytes when it has no nulls) and
//! then the type's own buffers, then its children. Buffers start at 8-byte aligned offsets
//! within the page so they can be handed to Arrow without copying. The (offset, length) of
//! every buffer is kept in the page table, which is what lets `take` fetch one value without
//! reading the page.

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Int32Type, Int64Type};
use arrow_array::ArrowNativeTypeOp;
use arrow_array::{make_array, Array, ArrayRef, OffsetSizeTrait};
use arrow_buffer::ArrowNativeType;
use arrow_buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer};
use arrow_data::ArrayDataBuilder;
use arrow_schema::DataType;
use bytes::Bytes;

use crate::error::{Error, Result};

/// Alignment of each buffer inside a page.
pub const BUFFER_ALIGNMENT: usize = 8;

/// The bytes of one page and the location of each of its buffers within them.
pub struct EncodedPage {
    pub bytes: Vec<u8>,
    /// `(offset, length)` of every buffer, relative to the page start, depth-first order.
    pub buffers: Vec<(u64, u64)>,
}

struct PageBuilder {
    bytes: Vec<u8>,
    buffers: Vec<(u64, u64)>,
}

impl PageBuilder {
    fn push(&mut self, data: &[u8]) {
        let pad = self.bytes.len().next_multiple_of(BUFFER_ALIGNMENT) - self.bytes.len();
        self.bytes.resize(self.bytes.len() + pad, 0);
        self.buffers
            .push((self.bytes.len() as u64, data.len() as u64));
        self.bytes.extend_from_slice(data);
    }

    fn push_validity(&mut self, nulls: Option<&NullBuffer>) {
        match nulls {
            Some(n) if n.null_count() > 0 => {
                let bits = n.inner().sliced();
                self.push(&bits.as_slice()[..n.len().div_ceil(8)]);
            }
            _ => self.push(&[]),
        }
    }
}

/// Number of bytes a page of `array` will take (close estimate, used to cut pages).
pub fn encoded_size(array: &dyn Array) -> usize {
    let n = array.len();
    let validity = if array.null_count() > 0 {
        n.div_ceil(8)
    } else {
        0
    };
    validity
        + match array.data_type() {
            DataType::Boolean => n.div_ceil(8),
            DataType::Utf8 | DataType::Binary => {
                let o = array.to_data();
                let offsets = o.buffer::<i32>(0);
                let span = offsets[o.offset() + n] - offsets[o.offset()];
                (n + 1) * 4 + span as usize
            }
            DataType::LargeUtf8 | DataType::LargeBinary => {
                let o = array.to_data();
                let offsets = o.buffer::<i64>(0);
                let span = offsets[o.offset() + n] - offsets[o.offset()];
                (n + 1) * 8 + span as usize
            }
            DataType::FixedSizeList(_, _) => {
                encoded_size(array.as_fixed_size_list().values().as_ref())
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets();
                let first = offsets[0] as usize;
                let last = offsets[n] as usize;
                (n + 1) * 4 + encoded_size(list.values().slice(first, last - first).as_ref())
            }
            DataType::Struct(_) => array
                .as_struct()
                .columns()
                .iter()
                .map(|c| encoded_size(c.as_ref()))
                .sum(),
            dt => dt.primitive_width().unwrap_or(8) * n,
        }
}

/// Encodes a whole (possibly sliced) array as one page.
pub fn encode_page(array: &dyn Array) -> Result<EncodedPage> {
    let mut builder = PageBuilder {
        bytes: Vec::with_capacity(encoded_size(array) + 64),
        buffers: Vec::new(),
    };
    encode_node(array, &mut builder)?;
    Ok(EncodedPage {
        bytes: builder.bytes,
        buffers: builder.buffers,
    })
}

fn encode_offsets<O: OffsetSizeTrait>(offsets: &[O], out: &mut PageBuilder) -> (usize, usize) {
    let first = offsets[0];
    let last = offsets[offsets.len() - 1];
    let rebased: Vec<O> = offsets.iter().map(|o| *o - first).collect();
    out.push(Buffer::from_vec(rebased).as_slice());
    (first.as_usize(), last.as_usize())
}

fn encode_node(array: &dyn Array, out: &mut PageBuilder) -> Result<()> {
    out.push_validity(array.nulls());
    let n = array.len();
    match array.data_type() {
        DataType::Boolean => {
            let values = array.as_boolean().values().sliced();
            out.push(&values.as_slice()[..n.div_ceil(8)]);
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            let (first, last) = encode_offsets(a.value_offsets(), out);
            out.push(&a.value_data()[first..last]);
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            let (first, last) = encode_offsets(a.value_offsets(), out);
            out.push(&a.value_data()[first..last]);
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            let (first, last) = encode_offsets(a.value_offsets(), out);
            out.push(&a.value_data()[first..last]);
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            let (first, last) = encode_offsets(a.value_offsets(), out);
            out.push(&a.value_data()[first..last]);
        }
        DataType::FixedSizeList(_, _) => {
            encode_node(array.as_fixed_size_list().values().as_ref(), out)?;
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let (first, last) = encode_offsets(list.value_offsets(), out);
            encode_node(list.values().slice(first, last - first).as_ref(), out)?;
        }
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                encode_node(child.as_ref(), out)?;
            }
        }
        dt => {
            let width = dt.primitive_width().ok_or_else(|| Error::UnsupportedType {
                field: String::new(),
                data_type: dt.to_string(),
            })?;
            let data = array.to_data();
            let start = data.offset() * width;
            out.push(&data.buffers()[0].as_slice()[start..start + n * width]);
        }
    }
    Ok(())
}

/// Deepest type nesting a page is decoded or checked to (stored schemas allow no deeper).
const MAX_NESTING: usize = 64;

/// Checks a page table entry against its column's type without reading the page: exactly the
/// buffers the type has, laid out as the writer lays them out (each at the first multiple of 8
/// after the previous one, the last ending the page), and every size that follows from the
/// row count alone (validity bitmaps, booleans, fixed-width values, offsets). After this, every
/// read `take` computes from the page table lies inside the page.
pub fn check_layout(
    data_type: &DataType,
    num_rows: u64,
    buffers: &[(u64, u64)],
    page_length: u64,
) -> std::result::Result<(), String> {
    let mut end = 0u64;
    for (i, &(offset, length)) in buffers.iter().enumerate() {
        if Some(offset) != end.checked_next_multiple_of(BUFFER_ALIGNMENT as u64) {
            return Err(format!(
                "buffer {i} starts at {offset}, not where buffer {} ends",
                i.saturating_sub(1)
            ));
        }
        end = offset
            .checked_add(length)
            .ok_or_else(|| format!("buffer {i} is too long"))?;
    }
    if end != page_length {
        return Err(format!(
            "its buffers end at byte {end} of a {page_length}-byte page"
        ));
    }
    let mut sizes = buffers.iter().map(|&(_, length)| length);
    expect_node(data_type, Some(num_rows), &mut sizes, 0)?;
    if sizes.next().is_some() {
        return Err("it has more buffers than its type needs".into());
    }
    Ok(())
}

/// The next buffer's length, checked to be `expected` when that is known.
fn expect_buffer(
    sizes: &mut impl Iterator<Item = u64>,
    what: &str,
    expected: Option<u64>,
) -> std::result::Result<(), String> {
    let length = sizes
        .next()
        .ok_or_else(|| "it has fewer buffers than its type needs".to_string())?;
    match expected {
        Some(expected) if expected != length => Err(format!(
            "its {what} buffer has {length} bytes, expected {expected}"
        )),
        _ => Ok(()),
    }
}

/// `rows × width` bytes, or an error when a file's counts make that overflow.
fn times(rows: Option<u64>, width: u64) -> std::result::Result<Option<u64>, String> {
    rows.map(|r| {
        r.checked_mul(width)
            .ok_or_else(|| format!("{r} values of {width} bytes overflow"))
    })
    .transpose()
}

/// Walks the buffers of one node of type `dt` holding `rows` values (`None` when only the
/// page's bytes say how many: the items of a list).
fn expect_node(
    dt: &DataType,
    rows: Option<u64>,
    sizes: &mut impl Iterator<Item = u64>,
    depth: usize,
) -> std::result::Result<(), String> {
    if depth > MAX_NESTING {
        return Err("its type is nested too deep".into());
    }
    let validity = sizes
        .next()
        .ok_or_else(|| "it has fewer buffers than its type needs".to_string())?;
    if let Some(rows) = rows.filter(|&r| validity != 0 && validity != r.div_ceil(8)) {
        return Err(format!(
            "its validity bitmap has {validity} bytes for {rows} values"
        ));
    }
    let offsets = |width: u64| times(rows.map(|r| r.saturating_add(1)), width);
    match dt {
        DataType::Boolean => expect_buffer(sizes, "boolean", rows.map(|r| r.div_ceil(8))),
        DataType::Utf8 | DataType::Binary => {
            expect_buffer(sizes, "offsets", offsets(4)?)?;
            expect_buffer(sizes, "data", None)
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            expect_buffer(sizes, "offsets", offsets(8)?)?;
            expect_buffer(sizes, "data", None)
        }
        DataType::FixedSizeList(item, dim) => {
            let dim = u64::try_from(*dim).map_err(|_| "negative vector length".to_string())?;
            expect_node(item.data_type(), times(rows, dim)?, sizes, depth + 1)
        }
        DataType::List(item) => {
            expect_buffer(sizes, "offsets", offsets(4)?)?;
            expect_node(item.data_type(), None, sizes, depth + 1)
        }
        DataType::Struct(fields) => fields
            .iter()
            .try_for_each(|f| expect_node(f.data_type(), rows, sizes, depth + 1)),
        dt => {
            let width = dt
                .primitive_width()
                .ok_or_else(|| format!("type {dt} is not stored"))?;
            expect_buffer(sizes, "values", times(rows, width as u64)?)
        }
    }
}

/// Reads buffers of a page in the order they were written.
struct PageCursor<'a> {
    page: &'a Bytes,
    buffers: &'a [(u64, u64)],
    next: usize,
}

impl PageCursor<'_> {
    fn take(&mut self) -> Result<Bytes, String> {
        let (offset, len) = *self
            .buffers
            .get(self.next)
            .ok_or("page has fewer buffers than its type needs")?;
        self.next += 1;
        let range = offset
            .checked_add(len)
            .filter(|end| *end <= self.page.len() as u64)
            .and_then(|end| Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?))
            .ok_or("page buffer lies outside the page")?;
        Ok(self.page.slice(range))
    }

    fn take_exact(&mut self, expected: usize, what: &str) -> Result<Bytes, String> {
        let b = self.take()?;
        if b.len() != expected {
            return Err(format!(
                "{what} buffer has {} bytes, expected {expected}",
                b.len()
            ));
        }
        Ok(b)
    }
}

/// Decodes one page. `buffers` comes from the page table. Every structural fact is checked
/// (buffer sizes, offsets, UTF-8), so damaged input yields an error saying what is wrong,
/// never a panic.
pub fn decode_page(
    data_type: &DataType,
    num_rows: usize,
    page: &Bytes,
    buffers: &[(u64, u64)],
) -> Result<ArrayRef, String> {
    let mut cursor = PageCursor {
        page,
        buffers,
        next: 0,
    };
    let array = decode_node(data_type, num_rows, &mut cursor, 0)?;
    if cursor.next != buffers.len() {
        return Err("page has more buffers than its type needs".into());
    }
    Ok(array)
}

fn validity_from(bytes: Bytes, len: usize) -> Result<Option<NullBuffer>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() != len.div_ceil(8) {
        return Err("validity bitmap has the wrong size".into());
    }
    Ok(Some(NullBuffer::new(BooleanBuffer::new(
        Buffer::from(bytes),
        0,
        len,
    ))))
}

/// The number of values the offsets in `bytes` (`len + 1` of them) span.
fn decode_offsets<O: OffsetSizeTrait>(bytes: &Bytes, len: usize) -> Result<usize, String> {
    let width = std::mem::size_of::<O>();
    let expected = len
        .checked_add(1)
        .and_then(|n| n.checked_mul(width))
        .ok_or("offsets buffer is too large")?;
    if bytes.len() != expected {
        return Err("offsets buffer has the wrong size".into());
    }
    let last = &bytes[len * width..];
    let value = match *last {
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]) as i64,
        [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => return Err("offset has the wrong width".into()),
    };
    usize::try_from(value).map_err(|_| "negative offset".into())
}

fn decode_node(
    dt: &DataType,
    len: usize,
    cursor: &mut PageCursor<'_>,
    depth: usize,
) -> Result<ArrayRef, String> {
    if depth > MAX_NESTING {
        return Err("type nesting is too deep".into());
    }
    let nulls = validity_from(cursor.take()?, len)?;
    let builder = ArrayDataBuilder::new(dt.clone()).len(len).nulls(nulls);
    let builder = match dt {
        DataType::Boolean => {
            let values = cursor.take_exact(len.div_ceil(8), "boolean")?;
            builder.add_buffer(Buffer::from(values))
        }
        DataType::Utf8 | DataType::Binary => {
            let offsets = cursor.take()?;
            let data_len = decode_offsets::<i32>(&offsets, len)?;
            let values = cursor.take_exact(data_len, "string data")?;
            builder
                .add_buffer(Buffer::from(offsets))
                .add_buffer(Buffer::from(values))
        }
        DataType::LargeUtf8 | DataType::LargeBinary => {
            let offsets = cursor.take()?;
            let data_len = decode_offsets::<i64>(&offsets, len)?;
            let values = cursor.take_exact(data_len, "string data")?;
            builder
                .add_buffer(Buffer::from(offsets))
                .add_buffer(Buffer::from(values))
        }
        DataType::FixedSizeList(item, dim) => {
            let child_len = usize::try_from(*dim)
                .ok()
                .and_then(|dim| len.checked_mul(dim))
                .ok_or("vector page too large")?;
            let child = decode_node(item.data_type(), child_len, cursor, depth + 1)?;
            builder.add_child_data(child.to_data())
        }
        DataType::List(item) => {
            let offsets = cursor.take()?;
            let child_len = decode_offsets::<i32>(&offsets, len)?;
            let child = decode_node(item.data_type(), child_len, cursor, depth + 1)?;
            builder
                .add_buffer(Buffer::from(offsets))
                .add_child_data(child.to_data())
        }
        DataType::Struct(fields) => {
            let mut b = builder;
            for f in fields {
                let child = decode_node(f.data_type(), len, cursor, depth + 1)?;
                b = b.add_child_data(child.to_data());
            }
            b
        }
        dt => {
            let width = dt
                .primitive_width()
                .ok_or_else(|| format!("cannot decode type {dt}"))?;
            let size = len.checked_mul(width).ok_or("values buffer too large")?;
            let values = cursor.take_exact(size, "values")?;
            builder.add_buffer(Buffer::from(values))
        }
    };
    let data = builder
        .align_buffers(true)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(make_array(data))
}

/// Builds a fixed-width array from values gathered row by row (used by `take`).
pub(crate) fn fixed_width_array(
    dt: &DataType,
    len: usize,
    values: MutableBuffer,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let values: Buffer = values.into();
    let data = match dt {
        DataType::FixedSizeList(item, _) => {
            let child_len = values.len() / item.data_type().primitive_width().unwrap_or(1);
            let child = ArrayDataBuilder::new(item.data_type().clone())
                .len(child_len)
                .add_buffer(values)
                .build()?;
            ArrayDataBuilder::new(dt.clone())
                .len(len)
                .nulls(nulls)
                .add_child_data(child)
                .build()?
        }
        _ => ArrayDataBuilder::new(dt.clone())
            .len(len)
            .nulls(nulls)
            .add_buffer(values)
            .build()?,
    };
    Ok(make_array(data))
}

/// Builds a variable-width (string or binary) array from gathered values (used by `take`).
pub(crate) fn var_width_array(
    dt: &DataType,
    values: &[Bytes],
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let total: usize = values.iter().map(Bytes::len).sum();
    let mut data = MutableBuffer::with_capacity(total);
    for v in values {
        data.extend_from_slice(v);
    }
    let offsets: Buffer = match dt {
        DataType::LargeUtf8 | DataType::LargeBinary => {
            offsets_from_lengths::<Int64Type>(values.iter().map(Bytes::len))
        }
        _ => {
            if i32::try_from(total).is_err() {
                return Err(Error::invalid(
                    "taken string values exceed 2 GiB; use large_utf8 or take fewer rows",
                ));
            }
            offsets_from_lengths::<Int32Type>(values.iter().map(Bytes::len))
        }
    };
    let array_data = ArrayDataBuilder::new(dt.clone())
        .len(values.len())
        .nulls(nulls)
        .add_buffer(offsets)
        .add_buffer(data.into())
        .build()?;
    Ok(make_array(array_data))
}

fn offsets_from_lengths<T: ArrowPrimitiveType>(lengths: impl Iterator<Item = usize>) -> Buffer
where
    T::Native: arrow_array::ArrowNativeTypeOp,
{
    let mut acc = T::Native::usize_as(0);
    let mut out = vec![acc];
    for l in lengths {
        acc = acc.add_wrapping(T::Native::usize_as(l));
        out.push(acc);
    }
    Buffer::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BooleanArray, FixedSizeListArray, Float32Array, Int32Array, ListArray, StringArray,
    };
    use arrow_buffer::OffsetBuffer;
    use arrow_schema::Field;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn round_trip(array: &dyn Array) -> ArrayRef {
        let page = encode_page(array).expect("encode");
        assert!(page
            .buffers
            .iter()
            .all(|(o, _)| o % BUFFER_ALIGNMENT as u64 == 0));
        // Every page the writer produces passes the checks the reader makes on open.
        check_layout(
            array.data_type(),
            array.len() as u64,
            &page.buffers,
            page.bytes.len() as u64,
        )
        .expect("layout");
        decode_page(
            array.data_type(),
            array.len(),
            &Bytes::from(page.bytes),
            &page.buffers,
        )
        .expect("decode")
    }

    fn arrays(values: &[Option<i32>]) -> Vec<ArrayRef> {
        let ints = Int32Array::from(values.to_vec());
        let bools = BooleanArray::from(
            values
                .iter()
                .map(|v| v.map(|x| x % 2 == 0))
                .collect::<Vec<_>>(),
        );
        let strings = StringArray::from(
            values
                .iter()
                .map(|v| v.map(|x| "é".repeat((x.unsigned_abs() % 5) as usize)))
                .collect::<Vec<_>>(),
        );
        let item = Arc::new(Field::new("item", arrow_schema::DataType::Float32, true));
        let floats = Float32Array::from_iter_values(values.iter().flat_map(|v| {
            let x = v.unwrap_or(0) as f32;
            [x, -x]
        }));
        let vectors = FixedSizeListArray::try_new(
            item.clone(),
            2,
            Arc::new(floats.clone()),
            ints.nulls().cloned(),
        )
        .expect("vectors");
        let lists = ListArray::try_new(
            item,
            OffsetBuffer::from_lengths(values.iter().map(|_| 2)),
            Arc::new(floats),
            ints.nulls().cloned(),
        )
        .expect("lists");
        vec![
            Arc::new(ints),
            Arc::new(bools),
            Arc::new(strings),
            Arc::new(vectors),
            Arc::new(lists),
        ]
    }

    proptest! {
        #[test]
        fn sliced_arrays_round_trip(
            values in proptest::collection::vec(proptest::option::of(any::<i32>()), 1..200),
            cut in any::<(usize, usize)>(),
        ) {
            let offset = cut.0 % values.len();
            let len = cut.1 % (values.len() - offset + 1);
            for array in arrays(&values) {
                let slice = array.slice(offset, len);
                let back = round_trip(slice.as_ref());
                prop_assert_eq!(back.as_ref(), slice.as_ref());
            }
        }
    }

    #[test]
    fn page_tables_that_do_not_fit_their_type_are_refused_before_reading() {
        let array = Int32Array::from(vec![Some(1), None, Some(3)]);
        let page = encode_page(&array).expect("encode");
        let (dt, len) = (array.data_type(), page.bytes.len() as u64);
        assert!(check_layout(dt, 3, &page.buffers, len).is_ok());
        // Wrong row count, values of the wrong size, a buffer too many or too few, a gap,
        // a page longer than its buffers.
        assert!(check_layout(dt, 4, &page.buffers, len).is_err());
        assert!(check_layout(dt, u64::MAX, &page.buffers, len).is_err());
        let mut short = page.buffers.clone();
        short[1].1 -= 4;
        assert!(check_layout(dt, 3, &short, len - 4).is_err());
        let mut extra = page.buffers.clone();
        extra.push((len.next_multiple_of(8), 0));
        assert!(check_layout(dt, 3, &extra, len.next_multiple_of(8)).is_err());
        assert!(check_layout(dt, 3, &page.buffers[..1], page.buffers[0].1).is_err());
        let mut gap = page.buffers.clone();
        gap[1].0 += 8;
        assert!(check_layout(dt, 3, &gap, len + 8).is_err());
        assert!(check_layout(dt, 3, &page.buffers, len + 64).is_err());
        // Offsets that overflow, vectors too long for their row count.
        assert!(check_layout(dt, 3, &[(0, 1), (u64::MAX, 12)], u64::MAX).is_err());
        assert!(check_layout(dt, 3, &[(0, u64::MAX - 2), (0, 0)], u64::MAX).is_err());
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let vectors = DataType::FixedSizeList(item, i32::MAX);
        assert!(check_layout(&vectors, u64::MAX / 2, &[(0, 0), (0, 0), (0, 0)], 0).is_err());
    }

    #[test]
    fn huge_row_counts_are_errors_not_panics() {
        let array = StringArray::from(vec![Some("ab"), None]);
        let page = encode_page(&array).expect("encode");
        let bytes = Bytes::from(page.bytes);
        for rows in [usize::MAX, usize::MAX / 2, 1 << 40] {
            assert!(decode_page(array.data_type(), rows, &bytes, &page.buffers).is_err());
            assert!(decode_page(&DataType::Int64, rows, &bytes, &page.buffers[..2]).is_err());
        }
    }

    #[test]
    fn damaged_buffer_tables_are_errors_not_panics() {
        let array = StringArray::from(vec![Some("ab"), None, Some("cde")]);
        let page = encode_page(&array).expect("encode");
        let bytes = Bytes::from(page.bytes.clone());
        let dt = array.data_type();
        // Too few buffers, a buffer past the page end, a wrong row count.
        assert!(decode_page(dt, 3, &bytes, &page.buffers[..2]).is_err());
        let mut past_end = page.buffers.clone();
        past_end[2].1 += 1000;
        assert!(decode_page(dt, 3, &bytes, &past_end).is_err());
        assert!(decode_page(dt, 4, &bytes, &page.buffers).is_err());
        // Offsets that point outside the data.
        let mut bad = page.bytes.clone();
        let off = page.buffers[1].0 as usize + 8;
        bad[off..off + 4].copy_from_slice(&1000i32.to_le_bytes());
        assert!(decode_page(dt, 3, &Bytes::from(bad), &page.buffers).is_err());
    }
}
