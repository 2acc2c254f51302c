//! From SQL text to a typed [`Expr`]: parsing with `sqlparser`, resolving names against the
//! table schema, checking and coercing types, and folding constant sub-expressions.

use std::cell::Cell;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    RecordBatchOptions, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use sqlparser::ast::{
    self as sql, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments,
    Spanned, UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use super::eval::{evaluate, Value as Evaluated};
use super::expr::{
    cast_array, cast_literal, common_type, is_numeric, is_string, type_name, ArithOp, CmpOp, Expr,
    Func,
};
use super::syntax::{Syntax, MAX_DEPTH};
use crate::error::{FilterError, FilterErrorKind as Kind};
use crate::vocab::ROW_ID;

type PlanResult<T> = std::result::Result<T, FilterError>;

fn position(span: Span) -> Option<(u64, u64)> {
    (span.start.line > 0).then_some((span.start.line, span.start.column))
}

fn err(kind: Kind, message: impl Into<String>, span: Span) -> FilterError {
    FilterError::new(kind, message).at(position(span))
}

/// Resolves a parsed expression against `schema`.
pub(crate) struct Planner<'a> {
    schema: &'a Schema,
    /// Nesting of the node being planned; bounded by [`MAX_DEPTH`], so every later walk of the
    /// planned tree (folding, evaluation, pruning) is bounded too.
    depth: Cell<usize>,
}

/// Extra stack the planner makes sure of before each level: its frames are a few KiB, and it
/// may be called on any thread (tokio workers and rayon threads have 2 MiB stacks).
const STACK_RED_ZONE: usize = 128 * 1024;
const STACK_GROWTH: usize = 2 * 1024 * 1024;

impl<'a> Planner<'a> {
    pub(crate) fn new(schema: &'a Schema) -> Self {
        Planner {
            schema,
            depth: Cell::new(0),
        }
    }

    /// Enters one level of nesting, failing past [`MAX_DEPTH`].
    fn enter<T>(
        &self,
        span: impl Fn() -> Span,
        f: impl FnOnce() -> PlanResult<T>,
    ) -> PlanResult<T> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(err(
                Kind::TooComplex,
                format!(
                    "the expression is nested more than {MAX_DEPTH} levels deep; write long lists as `col IN (a, b, …)` or as flat `… OR …` / `… AND …` chains (which may be any length)"
                ),
                span(),
            ));
        }
        self.depth.set(depth);
        let result = stacker::maybe_grow(STACK_RED_ZONE, STACK_GROWTH, f);
        self.depth.set(depth - 1);
        result
    }

    /// Plans an expression's skeleton: AND / OR chains become n-ary nodes (an OR of equalities
    /// on one column becomes an IN list), leaving `sqlparser`'s terms to [`Self::plan`].
    pub(crate) fn plan_syntax(&self, s: &Syntax) -> PlanResult<Expr> {
        match s {
            Syntax::Term(e, bound) => {
                // Room for the term's whole depth: planning, and the `Display` / `span()` of
                // its sub-expressions in messages, recurse over sqlparser's tree.
                let stack = super::syntax::term_stack(*bound);
                stacker::maybe_grow(stack, 2 * stack, || self.plan(e))
            }
            Syntax::Not(inner, span) => self.enter(
                || *span,
                || {
                    let operand = self.plan_syntax(inner)?;
                    check_boolean(&operand, "NOT", || describe_syntax(inner), *span)?;
                    fold(match operand {
                        // NOT NOT x (x boolean) is x.
                        Expr::Not(x) => *x,
                        other => Expr::Not(Box::new(other)),
                    })
                },
            ),
            Syntax::And(items) | Syntax::Or(items) => {
                let is_and = matches!(s, Syntax::And(_));
                let what = if is_and { "AND" } else { "OR" };
                self.enter(Span::empty, || {
                    let mut planned = Vec::with_capacity(items.len());
                    for item in items {
                        let p = self.plan_syntax(item)?;
                        let span = match item {
                            Syntax::Term(e, _) => e.span(),
                            _ => Span::empty(),
                        };
                        check_boolean(&p, what, || describe_syntax(item), span)?;
                        planned.push(p);
                    }
                    fold(connect(is_and, planned))
                })
            }
        }
    }

    pub(crate) fn plan(&self, e: &sql::Expr) -> PlanResult<Expr> {
        self.enter(
            || e.span(),
            || {
                // The innermost position is the precise one: compute a span only when the
                // error has none yet.
                let locate = |f: FilterError| match f.position {
                    Some(_) => f,
                    None => f.at(position(e.span())),
                };
                let planned = self.plan_inner(e).map_err(locate)?;
                fold(planned).map_err(locate)
            },
        )
    }

    fn plan_inner(&self, e: &sql::Expr) -> PlanResult<Expr> {
        use sql::Expr as S;
        Ok(match e {
            S::Identifier(ident) => self.column(std::slice::from_ref(ident))?,
            S::CompoundIdentifier(idents) => self.column(idents)?,
            S::Nested(inner) => self.plan(inner)?,
            S::Value(v) => literal(&v.value, v.span)?,
            S::TypedString(t) => typed_string(t)?,
            S::BinaryOp { left, op, right } => self.binary(e, left, op, right)?,
            S::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Not(Box::new(self.boolean(expr, "NOT")?)),
                UnaryOperator::Minus => {
                    let inner = self.plan(expr)?;
                    self.expect_numeric(&inner, expr, "unary minus")?;
                    Expr::Negate(Box::new(inner))
                }
                UnaryOperator::Plus => self.plan(expr)?,
                other => return Err(unsupported(format!("the operator {other}"), e)),
            },
            S::IsNull(x) | S::IsNotNull(x) => Expr::IsNull {
                expr: Box::new(self.plan(x)?),
                negated: matches!(e, S::IsNotNull(_)),
            },
            S::IsTrue(x) | S::IsNotTrue(x) | S::IsFalse(x) | S::IsNotFalse(x) => Expr::IsBool {
                expr: Box::new(self.boolean(x, "IS TRUE / IS FALSE")?),
                value: matches!(e, S::IsTrue(_) | S::IsNotTrue(_)),
                negated: matches!(e, S::IsNotTrue(_) | S::IsNotFalse(_)),
            },
            S::InList {
                expr,
                list,
                negated,
            } => self.in_list(expr, list, *negated)?,
            S::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let value = self.plan(expr)?;
                let low_cmp = self.compare(CmpOp::GtEq, value.clone(), self.plan(low)?, e)?;
                let high_cmp = self.compare(CmpOp::LtEq, value, self.plan(high)?, e)?;
                let both = Expr::And(vec![low_cmp, high_cmp]);
                if *negated {
                    Expr::Not(Box::new(both))
                } else {
                    both
                }
            }
            S::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | S::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(unsupported(
                        "LIKE ANY and LIKE … ESCAPE (patterns use % and _, escaped with \\)",
                        e,
                    ));
                }
                let value = self.plan(expr)?;
                let value_type = value.data_type();
                if !is_string(&value_type) {
                    return Err(err(
                        Kind::TypeMismatch,
                        format!(
                            "LIKE needs a string operand; {} is {}",
                            expr,
                            type_name(&value_type)
                        ),
                        expr.span(),
                    ));
                }
                let pattern =
                    self.coerce_to(self.plan(pattern)?, &value_type, pattern, "LIKE pattern")?;
                Expr::Like {
                    expr: Box::new(value),
                    pattern: Box::new(pattern),
                    case_insensitive: matches!(e, S::ILike { .. }),
                    negated: *negated,
                }
            }
            S::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() || matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return Err(unsupported("TRY_CAST, SAFE_CAST and CAST … FORMAT", e));
                }
                let to = arrow_type(data_type).ok_or_else(|| {
                    unsupported(
                        format!("CAST to {data_type} (use BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, INT UNSIGNED, FLOAT, DOUBLE, STRING, DATE or TIMESTAMP)"),
                        e,
                    )
                })?;
                let inner = self.plan(expr)?;
                let from = inner.data_type();
                if !arrow_cast::can_cast_types(&from, &to) {
                    return Err(err(
                        Kind::TypeMismatch,
                        format!("cannot cast {} to {}", type_name(&from), type_name(&to)),
                        e.span(),
                    ));
                }
                Expr::Cast {
                    expr: Box::new(inner),
                    to,
                }
            }
            S::Function(f) => self.function(f, e)?,
            S::Array(_) => {
                return Err(unsupported(
                    "a list literal outside array_has_any / array_has_all",
                    e,
                ))
            }
            other => return Err(unsupported(describe(other), e)),
        })
    }

    fn column(&self, idents: &[sql::Ident]) -> PlanResult<Expr> {
        let Some((first, rest)) = idents.split_first() else {
            return Err(FilterError::new(Kind::Syntax, "empty column name"));
        };
        if first.value == ROW_ID && rest.is_empty() {
            return Ok(Expr::Column {
                root: ROW_ID.into(),
                path: Vec::new(),
                data_type: DataType::UInt64,
            });
        }
        let field = self.find_field(self.schema.fields(), first, None)?;
        let root = field.name().clone();
        let mut data_type = field.data_type().clone();
        let mut path = Vec::new();
        let mut parent_name = root.clone();
        for ident in rest {
            let DataType::Struct(children) = &data_type else {
                return Err(err(
                    Kind::TypeMismatch,
                    format!(
                        "'{parent_name}' is {}, not a struct; it has no field '{}'",
                        type_name(&data_type),
                        ident.value
                    ),
                    ident.span,
                ));
            };
            let child = self.find_field(children, ident, Some(&parent_name))?;
            path.push(child.name().clone());
            parent_name = format!("{parent_name}.{}", child.name());
            data_type = child.data_type().clone();
        }
        Ok(Expr::Column {
            root,
            path,
            data_type,
        })
    }

    /// Exact match first; an unquoted name also matches a single column differing only in case.
    fn find_field<'f>(
        &self,
        fields: &'f arrow_schema::Fields,
        ident: &sql::Ident,
        parent: Option<&str>,
    ) -> PlanResult<&'f Arc<Field>> {
        if let Some(f) = fields.iter().find(|f| f.name() == &ident.value) {
            return Ok(f);
        }
        if ident.quote_style.is_none() {
            let mut matches = fields
                .iter()
                .filter(|f| f.name().eq_ignore_ascii_case(&ident.value));
            if let (Some(f), None) = (matches.next(), matches.next()) {
                return Ok(f);
            }
        }
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        let message = match parent {
            Some(p) => format!(
                "struct '{p}' has no field '{}'; its fields are: {}",
                ident.value,
                names.join(", ")
            ),
            None => format!(
                "no column named '{}'; the table's columns are: {} (quote names with spaces, capitals or keywords in double quotes or backticks)",
                ident.value,
                names.join(", ")
            ),
        };
        Err(err(Kind::UnknownColumn, message, ident.span))
    }

    fn boolean(&self, e: &sql::Expr, what: &str) -> PlanResult<Expr> {
        let planned = self.plan(e)?;
        let t = planned.data_type();
        if matches!(t, DataType::Boolean | DataType::Null) {
            Ok(planned)
        } else {
            Err(err(
                Kind::TypeMismatch,
                format!("{what} needs a boolean operand; {e} is {}", type_name(&t)),
                e.span(),
            ))
        }
    }

    fn expect_numeric(&self, planned: &Expr, e: &sql::Expr, what: &str) -> PlanResult<()> {
        let t = planned.data_type();
        if is_numeric(&t) || t == DataType::Null {
            Ok(())
        } else {
            Err(err(
                Kind::TypeMismatch,
                format!("{what} needs a number; {e} is {}", type_name(&t)),
                e.span(),
            ))
        }
    }

    fn binary(
        &self,
        whole: &sql::Expr,
        left: &sql::Expr,
        op: &BinaryOperator,
        right: &sql::Expr,
    ) -> PlanResult<Expr> {
        let cmp = match op {
            BinaryOperator::And | BinaryOperator::Or => {
                let is_and = *op == BinaryOperator::And;
                let what = if is_and { "AND" } else { "OR" };
                let (l, r) = (self.boolean(left, what)?, self.boolean(right, what)?);
                return Ok(connect(is_and, vec![l, r]));
            }
            BinaryOperator::Eq => Some(CmpOp::Eq),
            BinaryOperator::NotEq => Some(CmpOp::NotEq),
            BinaryOperator::Lt => Some(CmpOp::Lt),
            BinaryOperator::LtEq => Some(CmpOp::LtEq),
            BinaryOperator::Gt => Some(CmpOp::Gt),
            BinaryOperator::GtEq => Some(CmpOp::GtEq),
            _ => None,
        };
        if let Some(cmp) = cmp {
            let (l, r) = (self.plan(left)?, self.plan(right)?);
            return self.compare(cmp, l, r, whole);
        }
        let arith = match op {
            BinaryOperator::Plus => ArithOp::Add,
            BinaryOperator::Minus => ArithOp::Sub,
            BinaryOperator::Multiply => ArithOp::Mul,
            BinaryOperator::Divide => ArithOp::Div,
            BinaryOperator::Modulo => ArithOp::Rem,
            other => return Err(unsupported(format!("the operator {other}"), whole)),
        };
        let (l, r) = (self.plan(left)?, self.plan(right)?);
        self.expect_numeric(&l, left, "arithmetic")?;
        self.expect_numeric(&r, right, "arithmetic")?;
        let (l, r) = self.coerce_pair(l, r, whole)?;
        Ok(Expr::Arith {
            op: arith,
            left: Box::new(l),
            right: Box::new(r),
        })
    }

    fn compare(&self, op: CmpOp, l: Expr, r: Expr, whole: &sql::Expr) -> PlanResult<Expr> {
        let (l, r) = self.coerce_pair(l, r, whole)?;
        let t = l.data_type();
        if matches!(
            t,
            DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(_, _)
                | DataType::Struct(_)
        ) {
            return Err(err(
                Kind::Unsupported,
                format!(
                    "comparing {} values (use array_has / array_length for lists, a.b for struct fields)",
                    type_name(&t)
                ),
                whole.span(),
            ));
        }
        Ok(Expr::Compare {
            op,
            left: Box::new(l),
            right: Box::new(r),
        })
    }

    /// Brings two operands to one type: a literal is cast to the other side's type when that
    /// keeps its value (so columns are compared in their own type); otherwise both are cast to
    /// their common type.
    fn coerce_pair(&self, l: Expr, r: Expr, whole: &sql::Expr) -> PlanResult<(Expr, Expr)> {
        let (lt, rt) = (l.data_type(), r.data_type());
        if lt == rt {
            return Ok((l, r));
        }
        if let Expr::Literal(v) = &r {
            if let Some(c) = cast_literal(v, &lt) {
                return Ok((l, Expr::Literal(c)));
            }
        }
        if let Expr::Literal(v) = &l {
            if let Some(c) = cast_literal(v, &rt) {
                return Ok((Expr::Literal(c), r));
            }
        }
        let common = common_type(&lt, &rt).ok_or_else(|| {
            err(
                Kind::TypeMismatch,
                format!(
                    "cannot combine {} and {} in {whole}",
                    type_name(&lt),
                    type_name(&rt)
                ),
                whole.span(),
            )
        })?;
        Ok((cast_expr(l, &common)?, cast_expr(r, &common)?))
    }

    /// `e` converted to `target`, or a type mismatch naming both types.
    fn coerce_to(
        &self,
        e: Expr,
        target: &DataType,
        source: &sql::Expr,
        what: &str,
    ) -> PlanResult<Expr> {
        let t = e.data_type();
        if &t == target {
            return Ok(e);
        }
        if let Expr::Literal(v) = &e {
            if let Some(c) = cast_literal(v, target) {
                return Ok(Expr::Literal(c));
            }
        }
        match common_type(&t, target) {
            Some(c) if &c == target => cast_expr(e, target),
            _ => Err(err(
                Kind::TypeMismatch,
                format!(
                    "{what} {source} is {} but {} is needed",
                    type_name(&t),
                    type_name(target)
                ),
                source.span(),
            )),
        }
    }

    fn in_list(&self, expr: &sql::Expr, list: &[sql::Expr], negated: bool) -> PlanResult<Expr> {
        let value = self.plan(expr)?;
        let value_type = value.data_type();
        let (values, has_null) = self.literal_list(list, &value_type, "IN list value")?;
        Ok(Expr::InList {
            expr: Box::new(value),
            list: values,
            list_has_null: has_null,
            negated,
        })
    }

    /// Literal items converted to `element`, concatenated (NULLs left out and reported).
    fn literal_list(
        &self,
        items: &[sql::Expr],
        element: &DataType,
        what: &str,
    ) -> PlanResult<(ArrayRef, bool)> {
        let mut arrays = Vec::with_capacity(items.len());
        let mut has_null = false;
        for item in items {
            let planned = self.plan(item)?;
            let Expr::Literal(v) = planned else {
                return Err(unsupported(
                    format!("{what} {item}: list items must be constants"),
                    item,
                ));
            };
            if v.logical_null_count() > 0 {
                has_null = true;
                continue;
            }
            let cast = cast_literal(&v, element).ok_or_else(|| {
                err(
                    Kind::TypeMismatch,
                    format!(
                        "{what} {item} is {} but the values are {}",
                        type_name(v.data_type()),
                        type_name(element)
                    ),
                    item.span(),
                )
            })?;
            arrays.push(cast);
        }
        let refs: Vec<&dyn arrow_array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
        let values = if refs.is_empty() {
            arrow_array::new_empty_array(element)
        } else {
            arrow_select::concat::concat(&refs)
                .map_err(|e| FilterError::new(Kind::InvalidValue, e.to_string()))?
        };
        Ok((values, has_null))
    }

    fn function(&self, f: &sql::Function, whole: &sql::Expr) -> PlanResult<Expr> {
        let name = f.name.to_string().to_lowercase();
        let args: Vec<&sql::Expr> = match &f.args {
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(unsupported(
                        format!("{name}(…) with DISTINCT or clauses"),
                        whole,
                    ));
                }
                list.args
                    .iter()
                    .map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
                        _ => Err(unsupported(
                            format!("named or wildcard arguments to {name}"),
                            whole,
                        )),
                    })
                    .collect::<PlanResult<_>>()?
            }
            FunctionArguments::None => Vec::new(),
            FunctionArguments::Subquery(_) => return Err(unsupported("subqueries", whole)),
        };
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(
                format!("{name}(…) with FILTER, OVER or WITHIN GROUP"),
                whole,
            ));
        }
        let arity = |n: usize| -> PlanResult<()> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(
                    Kind::TypeMismatch,
                    format!("{name}() takes {n} argument(s), got {}", args.len()),
                    whole.span(),
                ))
            }
        };
        let string_arg = |i: usize| -> PlanResult<Expr> {
            let planned = self.plan(args[i])?;
            let t = planned.data_type();
            if is_string(&t) || t == DataType::Null {
                Ok(planned)
            } else {
                Err(err(
                    Kind::TypeMismatch,
                    format!("{name}() needs a string; {} is {}", args[i], type_name(&t)),
                    args[i].span(),
                ))
            }
        };
        let list_arg = |i: usize| -> PlanResult<(Expr, DataType)> {
            let planned = self.plan(args[i])?;
            match planned.data_type() {
                DataType::List(item) | DataType::LargeList(item) => {
                    let element = item.data_type().clone();
                    Ok((planned, element))
                }
                t => Err(err(
                    Kind::TypeMismatch,
                    format!(
                        "{name}() needs a list column; {} is {}",
                        args[i],
                        type_name(&t)
                    ),
                    args[i].span(),
                )),
            }
        };
        let call = |func: Func, args: Vec<Expr>| Ok(Expr::Call { func, args });
        match name.as_str() {
            "lower" | "upper" => {
                arity(1)?;
                let func = if name == "lower" { Func::Lower } else { Func::Upper };
                call(func, vec![string_arg(0)?])
            }
            "length" | "char_length" | "character_length" => {
                arity(1)?;
                call(Func::CharLength, vec![string_arg(0)?])
            }
            "starts_with" | "ends_with" | "contains" => {
                arity(2)?;
                let text = string_arg(0)?;
                let t = text.data_type();
                let needle = self.coerce_to(self.plan(args[1])?, &t, args[1], "the second argument")?;
                let func = match name.as_str() {
                    "starts_with" => Func::StartsWith,
                    "ends_with" => Func::EndsWith,
                    _ => Func::Contains,
                };
                call(func, vec![text, needle])
            }
            "regexp_match" | "regexp_like" => {
                if args.len() != 2 && args.len() != 3 {
                    arity(2)?;
                }
                let text = string_arg(0)?;
                let pattern = constant_string(self.plan(args[1])?, args[1], &name)?;
                let flags = match args.get(2) {
                    Some(a) => constant_string(self.plan(a)?, a, &name)?,
                    None => String::new(),
                };
                let mut builder = regex::RegexBuilder::new(&pattern);
                for flag in flags.chars() {
                    match flag {
                        'i' => builder.case_insensitive(true),
                        'm' => builder.multi_line(true),
                        's' => builder.dot_matches_new_line(true),
                        other => {
                            return Err(err(
                                Kind::InvalidValue,
                                format!("unknown regex flag '{other}' (use i, m or s)"),
                                whole.span(),
                            ))
                        }
                    };
                }
                let regex = builder.build().map_err(|e| {
                    err(
                        Kind::InvalidValue,
                        format!("invalid regular expression {pattern:?}: {e}"),
                        args[1].span(),
                    )
                })?;
                call(Func::RegexpMatch(Arc::new(regex)), vec![text])
            }
            "abs" => {
                arity(1)?;
                let value = self.plan(args[0])?;
                self.expect_numeric(&value, args[0], "abs()")?;
                call(Func::Abs, vec![value])
            }
            "coalesce" => {
                if args.is_empty() {
                    arity(1)?;
                }
                let planned: Vec<Expr> = args.iter().map(|a| self.plan(a)).collect::<PlanResult<_>>()?;
                let mut target = DataType::Null;
                for (p, a) in planned.iter().zip(&args) {
                    let t = p.data_type();
                    target = common_type(&target, &t).ok_or_else(|| {
                        err(
                            Kind::TypeMismatch,
                            format!(
                                "coalesce() arguments must share a type; {a} is {} where {} came before",
                                type_name(&t),
                                type_name(&target)
                            ),
                            a.span(),
                        )
                    })?;
                }
                let coerced = planned
                    .into_iter()
                    .zip(&args)
                    .map(|(p, a)| self.coerce_to(p, &target, a, "coalesce() argument"))
                    .collect::<PlanResult<_>>()?;
                call(Func::Coalesce, coerced)
            }
            "array_has" | "array_contains" => {
                arity(2)?;
                let (list, element) = list_arg(0)?;
                let value = self.plan(args[1])?;
                let Expr::Literal(v) = &value else {
                    return Err(unsupported(format!("{name}() with a non-constant value"), args[1]));
                };
                let v = cast_literal(v, &element).ok_or_else(|| {
                    err(
                        Kind::TypeMismatch,
                        format!(
                            "{name}(): the list holds {} but {} is {}",
                            type_name(&element),
                            args[1],
                            type_name(v.data_type())
                        ),
                        args[1].span(),
                    )
                })?;
                call(Func::ArrayHas, vec![list, Expr::Literal(v)])
            }
            "array_has_any" | "array_has_all" => {
                arity(2)?;
                let (list, element) = list_arg(0)?;
                let items = match args[1] {
                    sql::Expr::Array(a) => &a.elem,
                    sql::Expr::Tuple(items) => items,
                    other => {
                        return Err(unsupported(
                            format!("{name}() with {other}; pass a list literal like [1, 2]"),
                            other,
                        ))
                    }
                };
                let (values, _) = self.literal_list(items, &element, "list value")?;
                let func = if name == "array_has_any" {
                    Func::ArrayHasAny(values)
                } else {
                    Func::ArrayHasAll(values)
                };
                call(func, vec![list])
            }
            "array_length" | "cardinality" => {
                arity(1)?;
                let (list, _) = list_arg(0)?;
                call(Func::ArrayLength, vec![list])
            }
            _ => Err(err(
                Kind::Unsupported,
                format!("unknown function {name}(); available: lower, upper, length, char_length, starts_with, ends_with, contains, regexp_match, abs, coalesce, array_has, array_has_any, array_has_all, array_length"),
                whole.span(),
            )),
        }
    }
}

fn unsupported(what: impl std::fmt::Display, e: &sql::Expr) -> FilterError {
    err(
        Kind::Unsupported,
        format!("{what} is not supported in filters"),
        e.span(),
    )
}

fn describe(e: &sql::Expr) -> String {
    use sql::Expr as S;
    match e {
        S::Subquery(_) | S::InSubquery { .. } | S::Exists { .. } => "a subquery".into(),
        S::Case { .. } => "CASE".into(),
        S::Interval(_) => "INTERVAL".into(),
        other => format!("'{other}'"),
    }
}

fn constant_string(e: Expr, source: &sql::Expr, function: &str) -> PlanResult<String> {
    if let Expr::Literal(v) = &e {
        if let Some(s) = v.as_any().downcast_ref::<StringArray>() {
            if s.is_valid(0) {
                return Ok(s.value(0).to_string());
            }
        }
    }
    Err(err(
        Kind::Unsupported,
        format!("{function}() needs a constant string pattern, got {source}"),
        source.span(),
    ))
}

fn cast_expr(e: Expr, to: &DataType) -> PlanResult<Expr> {
    if &e.data_type() == to {
        return Ok(e);
    }
    fold(Expr::Cast {
        expr: Box::new(e),
        to: to.clone(),
    })
}

use arrow_array::Array;

fn literal(v: &Value, span: Span) -> PlanResult<Expr> {
    let array: ArrayRef = match v {
        Value::Number(text, _) => number(text).ok_or_else(|| {
            err(
                Kind::InvalidValue,
                format!("'{text}' is not a number"),
                span,
            )
        })?,
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::TripleSingleQuotedString(s)
        | Value::DollarQuotedString(sql::DollarQuotedString { value: s, .. }) => {
            Arc::new(StringArray::from(vec![s.as_str()]))
        }
        Value::DoubleQuotedString(s) => Arc::new(StringArray::from(vec![s.as_str()])),
        Value::Boolean(b) => Arc::new(BooleanArray::from(vec![*b])),
        Value::Null => arrow_array::new_null_array(&DataType::Null, 1),
        other => {
            return Err(err(
                Kind::Unsupported,
                format!("the literal {other} is not supported in filters"),
                span,
            ))
        }
    };
    Ok(Expr::Literal(array))
}

fn number(text: &str) -> Option<ArrayRef> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Arc::new(Int64Array::from(vec![i])));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Some(Arc::new(UInt64Array::from(vec![u])));
        }
    }
    text.parse::<f64>()
        .ok()
        .map(|f| Arc::new(Float64Array::from(vec![f])) as ArrayRef)
}

fn typed_string(t: &sql::TypedString) -> PlanResult<Expr> {
    let span = t.value.span;
    let Some(text) = t.value.value.clone().into_string() else {
        return Err(err(
            Kind::Syntax,
            "a typed literal needs a quoted string",
            span,
        ));
    };
    let target = arrow_type(&t.data_type).ok_or_else(|| {
        err(
            Kind::Unsupported,
            format!(
                "{} literals are not supported (use DATE or TIMESTAMP)",
                t.data_type
            ),
            span,
        )
    })?;
    let source: ArrayRef = Arc::new(LargeStringArray::from(vec![text.as_str()]));
    let value = cast_array(source.as_ref(), &target).map_err(|_| {
        err(
            Kind::InvalidValue,
            format!("'{text}' is not a valid {}", t.data_type),
            span,
        )
    })?;
    Ok(Expr::Literal(value))
}

/// The Arrow type of a SQL type name in CAST and typed literals.
fn arrow_type(t: &sql::DataType) -> Option<DataType> {
    use sql::DataType as T;
    Some(match t {
        T::Boolean | T::Bool => DataType::Boolean,
        T::TinyInt(_) | T::Int8(_) => DataType::Int8,
        T::SmallInt(_) | T::Int16 | T::Int2(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) | T::Int32 | T::Int4(_) => DataType::Int32,
        T::BigInt(_) | T::Int64 => DataType::Int64,
        T::UTinyInt | T::UInt8 | T::TinyIntUnsigned(_) => DataType::UInt8,
        T::USmallInt | T::UInt16 | T::SmallIntUnsigned(_) => DataType::UInt16,
        T::UInt32 | T::IntUnsigned(_) | T::IntegerUnsigned(_) => DataType::UInt32,
        T::UBigInt | T::UInt64 | T::BigIntUnsigned(_) => DataType::UInt64,
        T::Float(_) | T::Real | T::Float4 | T::Float32 => DataType::Float32,
        T::Double(_) | T::DoublePrecision | T::Float8 | T::Float64 => DataType::Float64,
        T::Varchar(_) | T::Text | T::String(_) | T::Char(_) | T::Character(_) => DataType::Utf8,
        T::Date => DataType::Date32,
        T::Timestamp(_, tz) => match tz {
            sql::TimezoneInfo::WithTimeZone | sql::TimezoneInfo::Tz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        },
        _ => return None,
    })
}

/// Fails unless `planned` is boolean (or NULL), naming `what` needed it.
fn check_boolean(
    planned: &Expr,
    what: &str,
    describe: impl FnOnce() -> String,
    span: Span,
) -> PlanResult<()> {
    let t = planned.data_type();
    if matches!(t, DataType::Boolean | DataType::Null) {
        return Ok(());
    }
    Err(err(
        Kind::TypeMismatch,
        format!(
            "{what} needs a boolean operand; {} is {}",
            describe(),
            type_name(&t)
        ),
        span,
    ))
}

fn describe_syntax(s: &Syntax) -> String {
    match s {
        Syntax::Term(e, _) => e.to_string(),
        Syntax::Not(..) => "a NOT expression".into(),
        Syntax::And(_) | Syntax::Or(_) => "a parenthesised condition".into(),
    }
}

/// `items` joined by AND (`is_and`) or OR as one n-ary node: nested nodes of the same kind are
/// spliced in, and comparisons of one column with constants are merged into a set lookup —
/// `c = 1 OR c = 2 OR …` into `c IN (1, 2, …)`, `c != 1 AND c != 2 …` into `c NOT IN (…)`
/// (the same three-valued results: NULL where `c` is NULL) — so a generated chain of 100,000
/// terms costs one hash probe per row, not 100,000 comparisons.
fn connect(is_and: bool, items: Vec<Expr>) -> Expr {
    let mut flat: Vec<Expr> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::And(inner) if is_and => flat.extend(inner),
            Expr::Or(inner) if !is_and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    let merge_op = if is_and { CmpOp::NotEq } else { CmpOp::Eq };
    // Per column (by position of its first term), the constants compared with it.
    type ColumnKey = (String, Vec<String>);
    let mut sets: Vec<(usize, ColumnKey, Vec<ArrayRef>)> = Vec::new();
    let mut out: Vec<Option<Expr>> = Vec::with_capacity(flat.len());
    let mut key_of: std::collections::HashMap<ColumnKey, usize> = std::collections::HashMap::new();
    for item in flat {
        let Some((key, value)) = set_term(&item, merge_op, is_and) else {
            out.push(Some(item));
            continue;
        };
        match key_of.get(&key) {
            Some(&s) => {
                sets[s].2.push(value);
                out.push(None);
            }
            None => {
                key_of.insert(key.clone(), sets.len());
                sets.push((out.len(), key, vec![value]));
                out.push(Some(item));
            }
        }
    }
    for (at, (root, path), values) in sets {
        if values.len() < 2 {
            continue;
        }
        let column = Expr::Column {
            root,
            path,
            data_type: values[0].data_type().clone(),
        };
        let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        let Ok(list) = arrow_select::concat::concat(&refs) else {
            continue;
        };
        out[at] = Some(Expr::InList {
            expr: Box::new(column),
            list,
            list_has_null: false,
            negated: is_and,
        });
    }
    let mut items: Vec<Expr> = out.into_iter().flatten().collect();
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    if is_and {
        Expr::And(items)
    } else {
        Expr::Or(items)
    }
}

/// `(column, constants)` of a term [`connect`] can merge: `col <op> literal` with a non-NULL
/// literal of the column's own type, or an IN list (NOT IN for AND) without NULLs.
fn set_term(item: &Expr, op: CmpOp, negated: bool) -> Option<((String, Vec<String>), ArrayRef)> {
    let (column, value) = match item {
        Expr::Compare { op: o, left, right } if *o == op => match (left.as_ref(), right.as_ref()) {
            (c @ Expr::Column { .. }, Expr::Literal(v))
            | (Expr::Literal(v), c @ Expr::Column { .. }) => (c, v.clone()),
            _ => return None,
        },
        Expr::InList {
            expr,
            list,
            list_has_null: false,
            negated: n,
        } if *n == negated => (expr.as_ref(), list.clone()),
        _ => return None,
    };
    let Expr::Column {
        root,
        path,
        data_type,
    } = column
    else {
        return None;
    };
    (value.data_type() == data_type && value.logical_null_count() == 0)
        .then(|| ((root.clone(), path.clone()), value))
}

/// Replaces a column-free expression by its value, computed once at plan time.
pub(crate) fn fold(e: Expr) -> PlanResult<Expr> {
    if matches!(e, Expr::Literal(_)) || e.has_columns() {
        return Ok(e);
    }
    let empty = Arc::new(Schema::empty());
    let batch = RecordBatch::try_new_with_options(
        empty,
        Vec::new(),
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| FilterError::new(Kind::InvalidValue, e.to_string()))?;
    let value =
        evaluate(&e, &batch).map_err(|e| FilterError::new(Kind::InvalidValue, e.to_string()))?;
    Ok(Expr::Literal(match value {
        Evaluated::Array(a) | Evaluated::Scalar(a) => a,
    }))
}
