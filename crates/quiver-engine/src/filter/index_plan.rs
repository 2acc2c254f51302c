//! Splits a filter into what scalar indexes answer and what is left to a scan.
//!
//! Rules (README "Planning with indexes"):
//! - A predicate an index answers is a leaf: `col = v`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IN`
//!   (B-tree, bitmap), `IS [NOT] NULL`, `LIKE 'prefix%'` (B-tree), `array_has`,
//!   `array_has_any`, `array_has_all` (label list). Ranges on one column within an AND merge
//!   into one range. `!=`, `NOT (…)` of one such predicate and `NOT IN` are answered by the
//!   other values (when the estimate says few rows hold them). Functions of columns and casts
//!   are left to the scan.
//! - AND intersects the leaves it can answer; the others are rechecked on the candidates.
//!   OR unites, and only when every branch is answered.
//! - A leaf that the index's in-memory lookup says matches more than [`MAX_SHARE`] of the
//!   rows is dropped (a scan is cheaper than reading most of an index); an OR that would
//!   match more is not used at all.
//! - The plan is exact when every part of the filter was answered; otherwise the rows it
//!   yields are candidates that the scan rechecks with the whole filter.

use std::ops::Bound;

use arrow_array::Array;

use super::expr::{CmpOp, Expr, Func};
use crate::index::scalar::{literal_key, Key, ScalarQuery};

/// Largest share of the covered rows an index part of a plan may select.
pub const MAX_SHARE: f64 = 0.25;

/// A tree of index queries.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexExpr {
    Leaf { column: String, query: ScalarQuery },
    And(Vec<IndexExpr>),
    Or(Vec<IndexExpr>),
}

impl IndexExpr {
    /// Every leaf, in order.
    pub fn leaves(&self) -> Vec<(&str, &ScalarQuery)> {
        let mut out = Vec::new();
        self.visit(&mut |c, q| out.push((c, q)));
        out
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a ScalarQuery)) {
        match self {
            IndexExpr::Leaf { column, query } => f(column, query),
            IndexExpr::And(xs) | IndexExpr::Or(xs) => xs.iter().for_each(|x| x.visit(f)),
        }
    }
}

/// What indexes answer of a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPlan {
    pub expr: IndexExpr,
    /// Whether the rows it yields are exactly the filter's matches (else: candidates).
    pub exact: bool,
}

/// Whether an index on a column answers a query, and how many rows it says match at most.
pub type Estimator<'a> = dyn Fn(&str, &ScalarQuery) -> Option<u64> + 'a;

/// A planned node: the index expression, whether it is exact, its estimated rows.
struct Planned {
    expr: IndexExpr,
    exact: bool,
    rows: u64,
}

pub(crate) fn plan(
    expr: &Expr,
    estimate: &Estimator<'_>,
    covered_rows: u64,
    max_share: f64,
) -> Option<IndexPlan> {
    let limit = if max_share >= 1.0 {
        u64::MAX
    } else {
        ((covered_rows as f64) * max_share).ceil() as u64
    };
    let planned = node(expr, estimate, limit)?;
    Some(IndexPlan {
        expr: planned.expr,
        exact: planned.exact,
    })
}

fn node(expr: &Expr, estimate: &Estimator<'_>, limit: u64) -> Option<Planned> {
    match expr {
        Expr::And(children) => and(children, estimate, limit),
        Expr::Or(children) => {
            let mut parts = Vec::with_capacity(children.len());
            let (mut exact, mut rows) = (true, 0u64);
            for c in children {
                let p = node(c, estimate, limit)?;
                exact &= p.exact;
                rows = rows.saturating_add(p.rows);
                parts.push(p.expr);
            }
            (rows <= limit).then_some(Planned {
                expr: IndexExpr::Or(parts),
                exact,
                rows,
            })
        }
        _ => {
            let (column, query, exact) = leaf(expr)?;
            let rows = estimate(&column, &query)?;
            (rows <= limit).then_some(Planned {
                expr: IndexExpr::Leaf { column, query },
                exact,
                rows,
            })
        }
    }
}

/// An AND: ranges on one column merged, the answerable parts intersected.
fn and(children: &[Expr], estimate: &Estimator<'_>, limit: u64) -> Option<Planned> {
    let mut exact = true;
    let mut ranges: Vec<(String, Bound<Key>, Bound<Key>, bool)> = Vec::new();
    let mut others: Vec<&Expr> = Vec::new();
    for c in children {
        match leaf(c) {
            Some((column, ScalarQuery::Range { lower, upper }, leaf_exact)) => {
                match ranges.iter_mut().find(|r| r.0 == column) {
                    Some(r) => {
                        r.1 = tighter_lower(std::mem::replace(&mut r.1, Bound::Unbounded), lower);
                        r.2 = tighter_upper(std::mem::replace(&mut r.2, Bound::Unbounded), upper);
                        r.3 &= leaf_exact;
                    }
                    None => ranges.push((column, lower, upper, leaf_exact)),
                }
            }
            _ => others.push(c),
        }
    }
    let mut parts: Vec<Planned> = Vec::new();
    for (column, lower, upper, leaf_exact) in ranges {
        let query = ScalarQuery::Range { lower, upper };
        match estimate(&column, &query) {
            Some(rows) if rows <= limit => parts.push(Planned {
                expr: IndexExpr::Leaf { column, query },
                exact: leaf_exact,
                rows,
            }),
            _ => exact = false,
        }
    }
    for c in others {
        match node(c, estimate, limit) {
            Some(p) => parts.push(p),
            None => exact = false,
        }
    }
    if parts.is_empty() {
        return None;
    }
    exact &= parts.iter().all(|p| p.exact);
    let rows = parts.iter().map(|p| p.rows).min().unwrap_or(0);
    let expr = if parts.len() == 1 {
        parts.pop().map(|p| p.expr)?
    } else {
        IndexExpr::And(parts.into_iter().map(|p| p.expr).collect())
    };
    Some(Planned { expr, exact, rows })
}

fn tighter_lower(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

fn tighter_upper(a: Bound<Key>, b: Bound<Key>) -> Bound<Key> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

/// A top-level column (not a nested field).
fn column(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column { root, path, .. } if path.is_empty() => Some(root),
        _ => None,
    }
}

fn key(literal: &Expr) -> Option<Key> {
    match literal {
        Expr::Literal(v) => literal_key(v.as_ref()).ok().flatten(),
        _ => None,
    }
}

/// A predicate one index answers: its column, query, and whether the answer is exact.
fn leaf(expr: &Expr) -> Option<(String, ScalarQuery, bool)> {
    match expr {
        Expr::Compare { op, left, right } => {
            let (col, lit, op) = match (column(left), column(right)) {
                (Some(c), None) => (c, right, *op),
                (None, Some(c)) => (c, left, op.flip()),
                _ => return None,
            };
            let k = key(lit)?;
            let query = match op {
                CmpOp::Eq => ScalarQuery::equals(k),
                CmpOp::Lt => ScalarQuery::Range {
                    lower: Bound::Unbounded,
                    upper: Bound::Excluded(k),
                },
                CmpOp::LtEq => ScalarQuery::Range {
                    lower: Bound::Unbounded,
                    upper: Bound::Included(k),
                },
                CmpOp::Gt => ScalarQuery::Range {
                    lower: Bound::Excluded(k),
                    upper: Bound::Unbounded,
                },
                CmpOp::GtEq => ScalarQuery::Range {
                    lower: Bound::Included(k),
                    upper: Bound::Unbounded,
                },
                // Answered by the values other than `k`: worth it only when `k` holds most
                // rows (the estimate decides; `x != 7` is usually scanned, lance#2937).
                CmpOp::NotEq => ScalarQuery::Not(Box::new(ScalarQuery::equals(k))),
            };
            Some((col.to_string(), query, true))
        }
        Expr::InList {
            expr,
            list,
            negated,
            list_has_null,
        } => {
            // `x NOT IN (…, NULL)` is never true: left to the scan, which says so cheaply.
            if *negated && *list_has_null {
                return None;
            }
            let col = column(expr)?;
            let keys = (0..list.len())
                .map(|i| literal_key(list.slice(i, 1).as_ref()).ok().flatten())
                .collect::<Option<Vec<Key>>>()?;
            let query = if *negated {
                ScalarQuery::Not(Box::new(ScalarQuery::In(keys)))
            } else {
                ScalarQuery::In(keys)
            };
            Some((col.to_string(), query, true))
        }
        // NOT of a comparison, range or IN on one column: the other non-null values.
        Expr::Not(inner) => match leaf(inner).or_else(|| one_range(inner))? {
            (col, query @ (ScalarQuery::Range { .. } | ScalarQuery::In(_)), true) => {
                Some((col, ScalarQuery::Not(Box::new(query)), true))
            }
            _ => None,
        },
        Expr::IsNull { expr, negated } => {
            let col = column(expr)?;
            let query = if *negated {
                ScalarQuery::IsNotNull
            } else {
                ScalarQuery::IsNull
            };
            Some((col.to_string(), query, true))
        }
        Expr::Like {
            expr,
            pattern,
            case_insensitive: false,
            negated: false,
        } => {
            let col = column(expr)?;
            let Some(Key::Bytes(pattern)) = key(pattern) else {
                return None;
            };
            let stop = pattern
                .iter()
                .position(|b| matches!(b, b'%' | b'_' | b'\\'))
                .unwrap_or(pattern.len());
            let prefix = pattern[..stop].to_vec();
            if prefix.is_empty() {
                return None;
            }
            // `'abc%'` is exactly the range; other patterns with that prefix are candidates.
            let exact = &pattern[stop..] == b"%";
            let upper = match successor(&prefix) {
                Some(s) => Bound::Excluded(Key::Bytes(s)),
                None => Bound::Unbounded,
            };
            let query = ScalarQuery::Range {
                lower: Bound::Included(Key::Bytes(prefix)),
                upper,
            };
            Some((col.to_string(), query, exact))
        }
        Expr::Call { func, args } => {
            let col = column(args.first()?)?;
            let query = match func {
                Func::ArrayHas => ScalarQuery::HasAny(vec![key(args.get(1)?)?]),
                Func::ArrayHasAny(values) => ScalarQuery::HasAny(keys_of(values)?),
                Func::ArrayHasAll(values) if !values.is_empty() => {
                    ScalarQuery::HasAll(keys_of(values)?)
                }
                _ => return None,
            };
            Some((col.to_string(), query, true))
        }
        _ => None,
    }
}

/// An AND of exact ranges on one column (`x BETWEEN a AND b`) as one range.
fn one_range(expr: &Expr) -> Option<(String, ScalarQuery, bool)> {
    let Expr::And(children) = expr else {
        return None;
    };
    let (mut column, mut lower, mut upper): (Option<String>, Bound<Key>, Bound<Key>) =
        (None, Bound::Unbounded, Bound::Unbounded);
    for c in children {
        let (col, ScalarQuery::Range { lower: l, upper: u }, true) = leaf(c)? else {
            return None;
        };
        if column.as_ref().is_some_and(|c| c != &col) {
            return None;
        }
        column = Some(col);
        lower = tighter_lower(lower, l);
        upper = tighter_upper(upper, u);
    }
    Some((column?, ScalarQuery::Range { lower, upper }, true))
}

fn keys_of(values: &arrow_array::ArrayRef) -> Option<Vec<Key>> {
    (0..values.len())
        .filter(|&i| values.is_valid(i))
        .map(|i| literal_key(values.slice(i, 1).as_ref()).ok().flatten())
        .collect()
}

/// The smallest byte string above every string starting with `prefix` (`None`: none is).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_bound_prefixes() {
        assert_eq!(successor(b"abc"), Some(b"abd".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }

    #[test]
    fn bounds_tighten() {
        let k = |n| Key::Num(n);
        assert_eq!(
            tighter_lower(Bound::Included(k(3)), Bound::Excluded(k(3))),
            Bound::Excluded(k(3))
        );
        assert_eq!(
            tighter_upper(Bound::Included(k(9)), Bound::Excluded(k(5))),
            Bound::Excluded(k(5))
        );
    }
}
