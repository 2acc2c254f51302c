//! The typed expression tree a SQL string plans into, and the type rules it follows.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, TimeUnit};
use regex::Regex;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl CmpOp {
    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    pub(crate) fn flip(self) -> Self {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtEq => CmpOp::GtEq,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtEq => CmpOp::LtEq,
            other => other,
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Functions callable from SQL.
#[derive(Debug, Clone)]
pub(crate) enum Func {
    Lower,
    Upper,
    CharLength,
    StartsWith,
    EndsWith,
    Contains,
    RegexpMatch(Arc<Regex>),
    Abs,
    Coalesce,
    ArrayHas,
    /// The literal values, of the list's element type.
    ArrayHasAny(ArrayRef),
    ArrayHasAll(ArrayRef),
    ArrayLength,
}

/// A resolved, typed expression. Operands of comparisons and arithmetic already share one type
/// (casts are explicit nodes), so evaluation never has to coerce.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// A top-level column, or a field nested in struct columns (`a.b` has root `a`, path `[b]`).
    Column {
        root: String,
        path: Vec<String>,
        data_type: DataType,
    },
    /// A constant: an array of length 1.
    Literal(ArrayRef),
    Compare {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Negate(Box<Expr>),
    /// Two or more operands (AND / OR chains are flat, never nested binary trees).
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `IS [NOT] TRUE` / `IS [NOT] FALSE`: never NULL.
    IsBool {
        expr: Box<Expr>,
        value: bool,
        negated: bool,
    },
    /// `list` holds the non-null values, of `expr`'s type.
    InList {
        expr: Box<Expr>,
        list: ArrayRef,
        list_has_null: bool,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        case_insensitive: bool,
        negated: bool,
    },
    Cast {
        expr: Box<Expr>,
        to: DataType,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

impl Expr {
    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Expr::Column { data_type, .. } => data_type.clone(),
            Expr::Literal(a) => a.data_type().clone(),
            Expr::Arith { left, .. } => left.data_type(),
            Expr::Negate(e) => e.data_type(),
            Expr::Cast { to, .. } => to.clone(),
            Expr::Call { func, args } => match func {
                Func::Lower | Func::Upper | Func::Abs | Func::Coalesce => {
                    args.first().map_or(DataType::Null, Expr::data_type)
                }
                Func::CharLength | Func::ArrayLength => DataType::Int64,
                _ => DataType::Boolean,
            },
            Expr::Compare { .. }
            | Expr::And(..)
            | Expr::Or(..)
            | Expr::Not(_)
            | Expr::IsNull { .. }
            | Expr::IsBool { .. }
            | Expr::InList { .. }
            | Expr::Like { .. } => DataType::Boolean,
        }
    }

    /// Calls `f` on every column reference.
    pub(crate) fn visit_columns(&self, f: &mut impl FnMut(&str)) {
        match self {
            Expr::Column { root, .. } => f(root),
            Expr::Literal(_) => {}
            Expr::Compare { left, right, .. } | Expr::Arith { left, right, .. } => {
                left.visit_columns(f);
                right.visit_columns(f);
            }
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.visit_columns(f)),
            Expr::Negate(e)
            | Expr::Not(e)
            | Expr::IsNull { expr: e, .. }
            | Expr::IsBool { expr: e, .. }
            | Expr::InList { expr: e, .. }
            | Expr::Cast { expr: e, .. } => e.visit_columns(f),
            Expr::Like { expr, pattern, .. } => {
                expr.visit_columns(f);
                pattern.visit_columns(f);
            }
            Expr::Call { args, .. } => args.iter().for_each(|a| a.visit_columns(f)),
        }
    }

    pub(crate) fn has_columns(&self) -> bool {
        let mut any = false;
        self.visit_columns(&mut |_| any = true);
        any
    }
}

/// Short SQL-ish name of a type, for messages.
pub(crate) fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "null".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("timestamp[{unit}, {tz}]"),
                None => format!("timestamp[{unit}]"),
            }
        }
        DataType::FixedSizeList(item, n) => {
            format!("vector[{n}] of {}", type_name(item.data_type()))
        }
        DataType::List(item) | DataType::LargeList(item) => {
            format!("list of {}", type_name(item.data_type()))
        }
        DataType::Struct(_) => "struct".into(),
        other => other.to_string().to_lowercase(),
    }
}

pub(crate) fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

pub(crate) fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

pub(crate) fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8)
}

fn is_temporal(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Timestamp(_, _))
}

fn finer(a: TimeUnit, b: TimeUnit) -> TimeUnit {
    let rank = |u: &TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    };
    if rank(&a) >= rank(&b) {
        a
    } else {
        b
    }
}

/// The type two operands of different types are both cast to, if any (SQL numeric promotion:
/// integers of one signedness widen to 64 bits, anything with a float becomes float64).
pub(crate) fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Null, other) | (other, Null) => Some(other.clone()),
        (x, y) if is_numeric(x) && is_numeric(y) => Some(if x.is_floating() || y.is_floating() {
            Float64
        } else if x.is_unsigned_integer() && y.is_unsigned_integer() {
            UInt64
        } else {
            Int64
        }),
        (x, y) if is_string(x) && is_string(y) => Some(LargeUtf8),
        (Binary, LargeBinary) | (LargeBinary, Binary) => Some(LargeBinary),
        (Date32, Timestamp(unit, tz)) | (Timestamp(unit, tz), Date32) => {
            Some(Timestamp(*unit, tz.clone()))
        }
        (Timestamp(u1, tz1), Timestamp(u2, tz2)) => Some(Timestamp(
            finer(*u1, *u2),
            tz1.clone().or_else(|| tz2.clone()),
        )),
        (x, y) if is_temporal(x) && is_string(y) => Some(x.clone()),
        (x, y) if is_string(x) && is_temporal(y) => Some(y.clone()),
        _ => None,
    }
}

fn cast_options() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// Casts an array, failing (rather than producing NULL) on values that do not convert.
///
/// Timestamps store UTC instants whatever their zone, so casts into or out of a zoned type
/// only relabel the zone (a literal without a zone is read as UTC); that also keeps zone names
/// like "Europe/Paris" from needing a time-zone database.
pub(crate) fn cast_array(
    array: &dyn Array,
    to: &DataType,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let source_zoned = matches!(array.data_type(), DataType::Timestamp(_, Some(_)));
    let target_zoned = matches!(to, DataType::Timestamp(_, Some(_)));
    if !source_zoned && !target_zoned {
        return cast_with_options(array, to, &cast_options());
    }
    let source: ArrayRef = match array.data_type() {
        DataType::Timestamp(unit, Some(_)) => relabel(array, *unit, None)?,
        _ => arrow_array::make_array(array.to_data()),
    };
    match to {
        DataType::Timestamp(unit, tz) => {
            let naive =
                cast_with_options(&source, &DataType::Timestamp(*unit, None), &cast_options())?;
            relabel(naive.as_ref(), *unit, tz.clone())
        }
        other => cast_with_options(&source, other, &cast_options()),
    }
}

/// The same timestamp values under another zone label.
fn relabel(
    array: &dyn Array,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let data = array
        .to_data()
        .into_builder()
        .data_type(DataType::Timestamp(unit, tz))
        .build()?;
    Ok(arrow_array::make_array(data))
}

/// The literal `value` converted to `target` when that keeps its meaning: integers that fit,
/// whole floats into integer types, any number into a float type (`x = 0.1` on a float32 column
/// compares with 0.1f32), strings into dates and timestamps. `None` otherwise.
pub(crate) fn cast_literal(value: &ArrayRef, target: &DataType) -> Option<ArrayRef> {
    let source = value.data_type();
    if source == target {
        return Some(value.clone());
    }
    if source == &DataType::Null {
        return Some(arrow_array::new_null_array(target, 1));
    }
    let allowed = (is_numeric(source) && is_numeric(target))
        || (is_string(source) && (is_string(target) || is_temporal(target)))
        || (is_temporal(source) && is_temporal(target))
        || (matches!(source, DataType::Binary | DataType::LargeBinary)
            && matches!(target, DataType::Binary | DataType::LargeBinary));
    if !allowed {
        return None;
    }
    if is_integer(target) && source.is_floating() {
        let as_f64 = cast_array(value.as_ref(), &DataType::Float64).ok()?;
        let v = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(
            as_f64.as_ref(),
        )
        .value(0);
        if v.fract() != 0.0 {
            return None;
        }
    }
    let cast = cast_array(value.as_ref(), target).ok()?;
    (cast.null_count() == value.null_count()).then_some(cast)
}
