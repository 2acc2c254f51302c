//! Vectorised evaluation of a typed [`Expr`] over a record batch with arrow's compute kernels.
//! Constants stay length-1 scalars (kernels broadcast them), so `x > 5` never materialises a
//! column of fives.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_arith::boolean::{and_kleene, is_not_null, is_null, not, or_kleene};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    make_array, Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Datum, GenericListArray,
    GenericStringArray, Int64Array, OffsetSizeTrait, PrimitiveArray, RecordBatch, Scalar,
    UInt32Array,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{ArrowError, DataType};

use super::expr::{cast_array, ArithOp, CmpOp, Expr, Func};

type EvalResult<T> = std::result::Result<T, ArrowError>;

/// The value of an expression over a batch: a column, or one constant for every row.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Array(ArrayRef),
    /// Length 1.
    Scalar(ArrayRef),
}

impl Value {
    fn is_scalar(&self) -> bool {
        matches!(self, Value::Scalar(_))
    }

    /// The value as an array of `rows` rows.
    pub(crate) fn into_array(self, rows: usize) -> EvalResult<ArrayRef> {
        match self {
            Value::Array(a) => Ok(a),
            Value::Scalar(s) if rows == 1 => Ok(s),
            Value::Scalar(s) => {
                arrow_select::take::take(s.as_ref(), &UInt32Array::from_value(0, rows), None)
            }
        }
    }

    fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(a) | Value::Scalar(a) => a,
        }
    }

    fn same_shape(&self, out: ArrayRef) -> Value {
        if self.is_scalar() {
            Value::Scalar(out)
        } else {
            Value::Array(out)
        }
    }
}

/// Applies a two-operand kernel; the result is scalar only when both operands are.
fn binary<F>(l: &Value, r: &Value, f: F) -> EvalResult<Value>
where
    F: FnOnce(&dyn Datum, &dyn Datum) -> EvalResult<ArrayRef>,
{
    let out = match (l, r) {
        (Value::Array(a), Value::Array(b)) => f(a, b)?,
        (Value::Array(a), Value::Scalar(b)) => f(a, &Scalar::new(b.clone()))?,
        (Value::Scalar(a), Value::Array(b)) => f(&Scalar::new(a.clone()), b)?,
        (Value::Scalar(a), Value::Scalar(b)) => return Ok(Value::Scalar(f(a, b)?)),
    };
    Ok(Value::Array(out))
}

fn boolean_result(r: EvalResult<BooleanArray>) -> EvalResult<ArrayRef> {
    r.map(|b| Arc::new(b) as ArrayRef)
}

/// `a AND b` (or `a OR b`) in three-valued logic.
fn combine(is_and: bool, a: Value, b: Value, rows: usize) -> EvalResult<Value> {
    let scalar = a.is_scalar() && b.is_scalar();
    let n = if scalar { 1 } else { rows };
    let (a, b) = (as_bool(a.into_array(n)?)?, as_bool(b.into_array(n)?)?);
    let out = if is_and {
        and_kleene(&a, &b)?
    } else {
        or_kleene(&a, &b)?
    };
    let out = Arc::new(out) as ArrayRef;
    Ok(if scalar {
        Value::Scalar(out)
    } else {
        Value::Array(out)
    })
}

/// Evaluates `expr` over `batch`. Recursion follows the planned tree, whose depth the planner
/// bounds (`MAX_DEPTH`); the stack is grown if the calling thread is short of it.
pub(crate) fn evaluate(expr: &Expr, batch: &RecordBatch) -> EvalResult<Value> {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || evaluate_node(expr, batch))
}

fn evaluate_node(expr: &Expr, batch: &RecordBatch) -> EvalResult<Value> {
    let rows = batch.num_rows();
    match expr {
        Expr::Column { root, path, .. } => column(batch, root, path).map(Value::Array),
        Expr::Literal(v) => Ok(Value::Scalar(v.clone())),
        Expr::Compare { op, left, right } => {
            let (l, r) = (evaluate(left, batch)?, evaluate(right, batch)?);
            binary(&l, &r, |a, b| {
                use arrow_ord::cmp;
                boolean_result(match op {
                    CmpOp::Eq => cmp::eq(a, b),
                    CmpOp::NotEq => cmp::neq(a, b),
                    CmpOp::Lt => cmp::lt(a, b),
                    CmpOp::LtEq => cmp::lt_eq(a, b),
                    CmpOp::Gt => cmp::gt(a, b),
                    CmpOp::GtEq => cmp::gt_eq(a, b),
                })
            })
        }
        Expr::Arith { op, left, right } => {
            let (l, r) = (evaluate(left, batch)?, evaluate(right, batch)?);
            binary(&l, &r, |a, b| {
                use arrow_arith::numeric;
                match op {
                    ArithOp::Add => numeric::add(a, b),
                    ArithOp::Sub => numeric::sub(a, b),
                    ArithOp::Mul => numeric::mul(a, b),
                    ArithOp::Div => numeric::div(a, b),
                    ArithOp::Rem => numeric::rem(a, b),
                }
            })
        }
        Expr::Negate(e) => {
            let v = evaluate(e, batch)?;
            Ok(v.same_shape(arrow_arith::numeric::neg(v.array().as_ref())?))
        }
        Expr::And(items) | Expr::Or(items) => {
            let is_and = matches!(expr, Expr::And(_));
            let mut acc: Option<Value> = None;
            for item in items {
                let v = evaluate(item, batch)?;
                // A constant FALSE (AND) or TRUE (OR) decides; the other constant changes nothing.
                if let Value::Scalar(s) = &v {
                    if let Some(b) = constant_bool(s) {
                        if b != is_and {
                            return Ok(Value::Scalar(Arc::new(BooleanArray::from(vec![b]))));
                        }
                        continue;
                    }
                }
                let combined = match acc.take() {
                    None => v,
                    Some(a) => combine(is_and, a, v, rows)?,
                };
                // Stop once every row is decided: all FALSE for AND, all TRUE for OR.
                let decided = match &combined {
                    Value::Array(a) => a.as_boolean_opt().is_some_and(|b| {
                        b.null_count() == 0 && b.true_count() == if is_and { 0 } else { b.len() }
                    }),
                    Value::Scalar(_) => false,
                };
                acc = Some(combined);
                if decided {
                    break;
                }
            }
            Ok(acc.unwrap_or_else(|| Value::Scalar(Arc::new(BooleanArray::from(vec![is_and])))))
        }
        Expr::Not(e) => {
            let v = evaluate(e, batch)?;
            let b = as_bool(v.array().clone())?;
            Ok(v.same_shape(Arc::new(not(&b)?)))
        }
        Expr::IsNull { expr, negated } => {
            let v = evaluate(expr, batch)?;
            let a = v.array();
            let out = if *negated {
                is_not_null(a.as_ref())?
            } else {
                is_null(a.as_ref())?
            };
            Ok(v.same_shape(Arc::new(out)))
        }
        Expr::IsBool {
            expr,
            value,
            negated,
        } => {
            let v = evaluate(expr, batch)?;
            let b = as_bool(v.array().clone())?;
            let values = if *value {
                b.values().clone()
            } else {
                !b.values()
            };
            let mut matched = match b.nulls() {
                Some(n) => &values & n.inner(),
                None => values,
            };
            if *negated {
                matched = !&matched;
            }
            Ok(v.same_shape(Arc::new(BooleanArray::new(matched, None))))
        }
        Expr::InList {
            expr,
            list,
            list_has_null,
            negated,
        } => {
            let v = evaluate(expr, batch)?;
            let mut out = in_list(v.array(), list)?;
            if *list_has_null {
                // `x IN (…, NULL)` is NULL, not false, when x matches nothing.
                let valid = match out.nulls() {
                    Some(n) => n.inner() & out.values(),
                    None => out.values().clone(),
                };
                out = BooleanArray::new(out.values().clone(), Some(NullBuffer::new(valid)));
            }
            if *negated {
                out = not(&out)?;
            }
            Ok(v.same_shape(Arc::new(out)))
        }
        Expr::Like {
            expr,
            pattern,
            case_insensitive,
            negated,
        } => {
            let (v, p) = (evaluate(expr, batch)?, evaluate(pattern, batch)?);
            binary(&v, &p, |a, b| {
                use arrow_string::like;
                boolean_result(match (case_insensitive, negated) {
                    (false, false) => like::like(a, b),
                    (true, false) => like::ilike(a, b),
                    (false, true) => like::nlike(a, b),
                    (true, true) => like::nilike(a, b),
                })
            })
        }
        Expr::Cast { expr, to } => {
            let v = evaluate(expr, batch)?;
            Ok(v.same_shape(cast_array(v.array().as_ref(), to)?))
        }
        Expr::Call { func, args } => call(func, args, batch),
    }
}

fn constant_bool(s: &ArrayRef) -> Option<bool> {
    let b = s.as_boolean_opt()?;
    b.is_valid(0).then(|| b.value(0))
}

fn as_bool(a: ArrayRef) -> EvalResult<BooleanArray> {
    match a.data_type() {
        DataType::Boolean => Ok(a.as_boolean().clone()),
        DataType::Null => Ok(BooleanArray::new_null(a.len())),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

/// A column of `batch`, descending into struct fields; a null struct makes its fields null.
fn column(batch: &RecordBatch, root: &str, path: &[String]) -> EvalResult<ArrayRef> {
    let mut current = batch.column_by_name(root).cloned().ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("column '{root}' was not read for the filter"))
    })?;
    for name in path {
        let parent = current.as_struct();
        let child = parent.column_by_name(name).cloned().ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("struct field '{name}' is missing"))
        })?;
        current = match NullBuffer::union(parent.nulls(), child.nulls()) {
            Some(nulls) if Some(&nulls) != child.nulls() => {
                make_array(child.to_data().into_builder().nulls(Some(nulls)).build()?)
            }
            _ => child,
        };
    }
    Ok(current)
}

/// Few values: one comparison per value; many: a hash set (integers and strings).
fn in_list(values: &ArrayRef, list: &ArrayRef) -> EvalResult<BooleanArray> {
    const HASH_ABOVE: usize = 8;
    if list.len() > HASH_ABOVE {
        if let Some(out) = hashed_in_list(values, list)? {
            return Ok(out);
        }
    }
    let mut out = BooleanArray::from(vec![false; values.len()]);
    let out_nulls = values.logical_nulls();
    for i in 0..list.len() {
        let item = Scalar::new(list.slice(i, 1));
        let eq = arrow_ord::cmp::eq(values, &item)?;
        out = arrow_arith::boolean::or(&out, &eq)?;
    }
    Ok(BooleanArray::new(out.values().clone(), out_nulls))
}

fn hashed_in_list(values: &ArrayRef, list: &ArrayRef) -> EvalResult<Option<BooleanArray>> {
    fn ints<T: ArrowPrimitiveType>(values: &ArrayRef, list: &ArrayRef) -> BooleanArray
    where
        T::Native: std::hash::Hash + Eq,
    {
        let set: HashSet<T::Native> = list.as_primitive::<T>().values().iter().copied().collect();
        let v = values.as_primitive::<T>();
        let bits = BooleanBuffer::collect_bool(v.len(), |i| set.contains(&v.value(i)));
        BooleanArray::new(bits, v.nulls().cloned())
    }
    fn strings<O: OffsetSizeTrait>(values: &ArrayRef, list: &ArrayRef) -> BooleanArray {
        let set: HashSet<&str> = list.as_string::<O>().iter().flatten().collect();
        let v = values.as_string::<O>();
        let bits = BooleanBuffer::collect_bool(v.len(), |i| set.contains(v.value(i)));
        BooleanArray::new(bits, v.nulls().cloned())
    }
    Ok(Some(match values.data_type() {
        DataType::Int8 => ints::<Int8Type>(values, list),
        DataType::Int16 => ints::<Int16Type>(values, list),
        DataType::Int32 => ints::<Int32Type>(values, list),
        DataType::Int64 => ints::<Int64Type>(values, list),
        DataType::UInt8 => ints::<UInt8Type>(values, list),
        DataType::UInt16 => ints::<UInt16Type>(values, list),
        DataType::UInt32 => ints::<UInt32Type>(values, list),
        DataType::UInt64 => ints::<UInt64Type>(values, list),
        DataType::Date32 => ints::<Date32Type>(values, list),
        DataType::Utf8 => strings::<i32>(values, list),
        DataType::LargeUtf8 => strings::<i64>(values, list),
        _ => return Ok(None),
    }))
}

fn call(func: &Func, args: &[Expr], batch: &RecordBatch) -> EvalResult<Value> {
    let rows = batch.num_rows();
    let first = match args.first() {
        Some(a) => evaluate(a, batch)?,
        None => {
            return Err(ArrowError::InvalidArgumentError(
                "function without arguments".into(),
            ))
        }
    };
    let a = first.array().clone();
    let out: ArrayRef = match func {
        Func::Lower | Func::Upper => {
            let lower = matches!(func, Func::Lower);
            match a.data_type() {
                DataType::Utf8 => Arc::new(map_case(a.as_string::<i32>(), lower)),
                DataType::LargeUtf8 => Arc::new(map_case(a.as_string::<i64>(), lower)),
                _ => a.clone(),
            }
        }
        Func::CharLength => match a.data_type() {
            DataType::Utf8 => Arc::new(char_lengths(a.as_string::<i32>())),
            DataType::LargeUtf8 => Arc::new(char_lengths(a.as_string::<i64>())),
            _ => arrow_array::new_null_array(&DataType::Int64, a.len()),
        },
        Func::StartsWith | Func::EndsWith | Func::Contains => {
            let second = evaluate(&args[1], batch)?;
            return binary(&first, &second, |x, y| {
                use arrow_string::like;
                boolean_result(match func {
                    Func::StartsWith => like::starts_with(x, y),
                    Func::EndsWith => like::ends_with(x, y),
                    _ => like::contains(x, y),
                })
            });
        }
        Func::RegexpMatch(regex) => {
            let matches = |s: &str| regex.is_match(s);
            match a.data_type() {
                DataType::Utf8 => Arc::new(
                    a.as_string::<i32>()
                        .iter()
                        .map(|s| s.map(matches))
                        .collect::<BooleanArray>(),
                ),
                DataType::LargeUtf8 => Arc::new(
                    a.as_string::<i64>()
                        .iter()
                        .map(|s| s.map(matches))
                        .collect::<BooleanArray>(),
                ),
                _ => arrow_array::new_null_array(&DataType::Boolean, a.len()),
            }
        }
        Func::Abs => abs(&a)?,
        Func::Coalesce => {
            let mut value = first.clone();
            for next in &args[1..] {
                let next = evaluate(next, batch)?;
                let scalar = value.is_scalar() && next.is_scalar();
                let n = if scalar { 1 } else { rows };
                let current = value.into_array(n)?;
                let present = is_not_null(current.as_ref())?;
                let merged = arrow_select::zip::zip(&present, &current, &next.into_array(n)?)?;
                value = if scalar {
                    Value::Scalar(merged)
                } else {
                    Value::Array(merged)
                };
            }
            return Ok(value);
        }
        Func::ArrayHas => {
            let needle = evaluate(&args[1], batch)?.into_array(1)?;
            list_any(&a, |values| {
                arrow_ord::cmp::eq(values, &Scalar::new(needle.clone()))
            })?
        }
        Func::ArrayHasAny(list) => list_any(&a, |values| in_list(values, list))?,
        Func::ArrayHasAll(list) => {
            let mut all: Option<BooleanArray> = None;
            for i in 0..list.len() {
                let item = Scalar::new(list.slice(i, 1));
                let has = list_any(&a, |values| arrow_ord::cmp::eq(values, &item))?;
                let has = has.as_boolean().clone();
                all = Some(match all {
                    Some(acc) => and_kleene(&acc, &has)?,
                    None => has,
                });
            }
            match all {
                Some(b) => Arc::new(b),
                // Every list has all of no values (NULL lists stay NULL).
                None => Arc::new(BooleanArray::new(
                    BooleanBuffer::new_set(a.len()),
                    a.logical_nulls(),
                )),
            }
        }
        Func::ArrayLength => match a.data_type() {
            DataType::List(_) => Arc::new(list_lengths(a.as_list::<i32>())),
            DataType::LargeList(_) => Arc::new(list_lengths(a.as_list::<i64>())),
            _ => arrow_array::new_null_array(&DataType::Int64, a.len()),
        },
    };
    Ok(first.same_shape(out))
}

fn map_case<O: OffsetSizeTrait>(a: &GenericStringArray<O>, lower: bool) -> GenericStringArray<O> {
    let mut builder = arrow_array::builder::GenericStringBuilder::<O>::with_capacity(
        a.len(),
        a.value_data().len(),
    );
    let mut buffer = String::new();
    for s in a.iter() {
        match s {
            None => builder.append_null(),
            Some(s) => {
                buffer.clear();
                if s.is_ascii() {
                    buffer.push_str(s);
                    if lower {
                        buffer.make_ascii_lowercase();
                    } else {
                        buffer.make_ascii_uppercase();
                    }
                } else if lower {
                    buffer.extend(s.chars().flat_map(char::to_lowercase));
                } else {
                    buffer.extend(s.chars().flat_map(char::to_uppercase));
                }
                builder.append_value(&buffer);
            }
        }
    }
    builder.finish()
}

fn char_lengths<O: OffsetSizeTrait>(a: &GenericStringArray<O>) -> Int64Array {
    a.iter()
        .map(|s| s.map(|s| s.chars().count() as i64))
        .collect()
}

fn list_lengths<O: OffsetSizeTrait>(a: &GenericListArray<O>) -> Int64Array {
    let offsets = a.value_offsets();
    let lengths: Vec<i64> = offsets
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize() as i64)
        .collect();
    Int64Array::new(lengths.into(), a.nulls().cloned())
}

/// Per list row: whether `test` holds for any element (NULL for a NULL list).
fn list_any<F>(a: &ArrayRef, test: F) -> EvalResult<ArrayRef>
where
    F: FnOnce(&ArrayRef) -> EvalResult<BooleanArray>,
{
    fn any<O: OffsetSizeTrait>(list: &GenericListArray<O>, mask: &BooleanArray) -> BooleanArray {
        let offsets = list.value_offsets();
        let base = offsets[0].as_usize();
        let bits = BooleanBuffer::collect_bool(list.len(), |row| {
            let (start, end) = (
                offsets[row].as_usize() - base,
                offsets[row + 1].as_usize() - base,
            );
            (start..end).any(|i| mask.is_valid(i) && mask.value(i))
        });
        BooleanArray::new(bits, list.nulls().cloned())
    }
    Ok(match a.data_type() {
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let values = sliced_values(list);
            Arc::new(any(list, &test(&values)?))
        }
        DataType::LargeList(_) => {
            let list = a.as_list::<i64>();
            let values = sliced_values(list);
            Arc::new(any(list, &test(&values)?))
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "expected a list, got {other}"
            )))
        }
    })
}

/// The child values a (possibly sliced) list array covers.
fn sliced_values<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> ArrayRef {
    let offsets = list.value_offsets();
    let start = offsets[0].as_usize();
    let end = offsets[offsets.len() - 1].as_usize();
    list.values().slice(start, end - start)
}

fn abs(a: &ArrayRef) -> EvalResult<ArrayRef> {
    fn int<T: ArrowPrimitiveType>(a: &ArrayRef) -> ArrayRef
    where
        T::Native: arrow_array::ArrowNativeTypeOp,
    {
        use arrow_array::ArrowNativeTypeOp;
        let p: &PrimitiveArray<T> = a.as_primitive::<T>();
        let zero = T::Native::ZERO;
        Arc::new(p.unary::<_, T>(|v| if v.is_lt(zero) { v.neg_wrapping() } else { v }))
    }
    Ok(match a.data_type() {
        DataType::Int8 => int::<Int8Type>(a),
        DataType::Int16 => int::<Int16Type>(a),
        DataType::Int32 => int::<Int32Type>(a),
        DataType::Int64 => int::<Int64Type>(a),
        DataType::Float16 => Arc::new(
            a.as_primitive::<Float16Type>()
                .unary::<_, Float16Type>(|v| half::f16::from_bits(v.to_bits() & 0x7fff)),
        ),
        DataType::Float32 => Arc::new(
            a.as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(f32::abs),
        ),
        DataType::Float64 => Arc::new(
            a.as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(f64::abs),
        ),
        // Unsigned values (and NULL) are their own absolute value.
        _ => a.clone(),
    })
}
