//! Planning and error tests; the full semantics table runs through real scans in
//! `tests/filter_semantics.rs`.

use std::sync::Arc;

use arrow_array::{Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("Price Tag", DataType::Float64, true),
    ])
}

fn filter_error(text: &str) -> FilterError {
    match Filter::parse(text, &schema()) {
        Err(Error::Filter(e)) => e,
        other => panic!("expected a filter error for {text:?}, got {other:?}"),
    }
}

#[test]
fn unknown_column_lists_the_columns_and_points_at_the_name() {
    let e = filter_error("id > 1 AND nme = 'x'");
    assert_eq!(e.kind, FilterErrorKind::UnknownColumn);
    assert!(e.message.contains("'nme'"), "{e}");
    assert!(e.message.contains("id, name, Price Tag"), "{e}");
    assert_eq!(e.position, Some((1, 12)));
}

#[test]
fn type_mismatch_names_both_types() {
    let e = filter_error("name > 5");
    assert_eq!(e.kind, FilterErrorKind::TypeMismatch);
    assert!(
        e.message.contains("string") && e.message.contains("int64"),
        "{e}"
    );
    let e = filter_error("id LIKE 'a%'");
    assert_eq!(e.kind, FilterErrorKind::TypeMismatch);
    assert!(e.message.contains("int32"), "{e}");
}

#[test]
fn syntax_errors_carry_a_position() {
    let e = filter_error("id > > 3");
    assert_eq!(e.kind, FilterErrorKind::Syntax);
    assert_eq!(e.position.map(|p| p.0), Some(1));
    assert!(e.position.is_some_and(|p| p.1 >= 4), "{e}");
    let e = filter_error("id = 1 name = 'x'");
    assert_eq!(e.kind, FilterErrorKind::Syntax);
    assert_eq!(e.position, Some((1, 8)));
    assert_eq!(filter_error("  ").kind, FilterErrorKind::Syntax);
    for comment in ["--", "-- c", "/* x */", "/**/ -- y\n"] {
        assert_eq!(
            filter_error(comment).kind,
            FilterErrorKind::Syntax,
            "{comment}"
        );
    }
}

#[test]
fn unsupported_constructs_say_so() {
    for text in [
        "id IN (SELECT 1)",
        "CASE WHEN id > 1 THEN true END",
        "sum(id) > 1",
        "id > ANY(1)",
    ] {
        let e = filter_error(text);
        assert!(
            matches!(
                e.kind,
                FilterErrorKind::Unsupported | FilterErrorKind::Syntax
            ),
            "{text}: {e}"
        );
    }
    assert_eq!(
        filter_error("frobnicate(id)").kind,
        FilterErrorKind::Unsupported
    );
}

#[test]
fn bad_values_are_invalid() {
    assert_eq!(
        filter_error("regexp_match(name, '(')").kind,
        FilterErrorKind::InvalidValue
    );
    assert_eq!(
        filter_error("id > DATE '2024-13-45'").kind,
        FilterErrorKind::InvalidValue
    );
}

#[test]
fn non_boolean_filters_are_rejected() {
    let e = filter_error("id + 1");
    assert_eq!(e.kind, FilterErrorKind::TypeMismatch);
}

#[test]
fn quoted_names_and_case_insensitive_unquoted_names() {
    let f = Filter::parse(
        "\"Price Tag\" > 1 AND `Price Tag` < 5 AND ID = 3",
        &schema(),
    )
    .unwrap();
    assert_eq!(f.columns(), ["Price Tag", "id"]);
    assert!(Filter::parse("\"ID\" = 3", &schema()).is_err());
}

#[test]
fn literals_take_the_column_type() {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        ],
    )
    .unwrap();
    let f = Filter::parse("id >= 2.0 AND id < 2.5", &schema()).unwrap();
    assert_eq!(
        f.evaluate(&batch).unwrap(),
        BooleanArray::from(vec![false, true, false])
    );
    let f = Filter::parse("name <> 'a' OR id = 1", &schema()).unwrap();
    assert_eq!(
        f.evaluate(&batch).unwrap(),
        BooleanArray::from(vec![true, false, true])
    );
}

/// Runs `f` on a thread with a small stack, as rayon and tokio workers have: the limits must
/// hold there, not only on a main thread's 8 MiB.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

fn batch_of_ids(n: i32) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int32Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| Some(format!("n{i}"))),
            )),
            Arc::new(arrow_array::Float64Array::from_iter(
                (0..n).map(|i| Some(i as f64)),
            )),
        ],
    )
    .expect("batch")
}

fn matching(filter: &Filter, batch: &RecordBatch) -> Vec<i32> {
    let mask = filter.evaluate(batch).expect("evaluate");
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("ids");
    (0..batch.num_rows())
        .filter(|&i| mask.value(i))
        .map(|i| ids.value(i))
        .collect()
}

#[test]
fn a_100k_term_or_chain_plans_as_one_in_list() {
    on_small_stack(|| {
        let text = (0..100_000)
            .map(|i| format!("id = {}", i * 7))
            .collect::<Vec<_>>()
            .join(" OR ");
        let filter = Filter::parse(&text, &schema()).expect("parse");
        assert!(
            matches!(&filter.expression.expr, expr::Expr::InList { list, negated: false, .. } if list.len() == 100_000),
            "{:?}",
            std::mem::discriminant(&filter.expression.expr)
        );
        let got = matching(&filter, &batch_of_ids(1000));
        assert_eq!(got, (0..1000).filter(|i| i % 7 == 0).collect::<Vec<_>>());
    });
}

#[test]
fn a_100k_term_and_chain_is_flat_and_right() {
    on_small_stack(|| {
        // Inequalities merge into NOT IN; other comparisons stay one flat AND.
        let text = (0..100_000)
            .map(|i| format!("id != {}", i * 2 + 1))
            .collect::<Vec<_>>()
            .join(" AND ");
        let filter = Filter::parse(&text, &schema()).expect("parse");
        assert!(matches!(
            &filter.expression.expr,
            expr::Expr::InList { negated: true, .. }
        ));
        let got = matching(&filter, &batch_of_ids(100));
        assert_eq!(got, (0..100).filter(|i| i % 2 == 0).collect::<Vec<_>>());

        let text = (0..100_000)
            .map(|i| format!("(id >= {} OR name = 'n{i}')", -i))
            .collect::<Vec<_>>()
            .join(" AND ");
        let filter = Filter::parse(&text, &schema()).expect("parse");
        assert!(
            matches!(&filter.expression.expr, expr::Expr::And(items) if items.len() == 100_000)
        );
        assert_eq!(matching(&filter, &batch_of_ids(50)).len(), 50);
    });
}

#[test]
fn mixed_chains_keep_sql_precedence() {
    let b = batch_of_ids(20);
    let cases = [
        ("id = 1 OR id = 2 AND name = 'n3'", vec![1]),
        ("(id = 1 OR id = 2) AND name = 'n2'", vec![2]),
        ("NOT id = 1 AND id < 3", vec![0, 2]),
        ("NOT (id < 18 OR id = 19)", vec![18]),
        ("id BETWEEN 3 AND 5 AND id != 4", vec![3, 5]),
        ("id NOT BETWEEN 1 AND 18 OR id = 5", vec![0, 5, 19]),
        ("NOT NOT id = 4", vec![4]),
        ("NOT NOT NOT id > 1", vec![0, 1]),
        (
            "id = 1 OR 2 = id OR id IN (3, 4) OR id = 5 OR name = 'n9'",
            vec![1, 2, 3, 4, 5, 9],
        ),
        ("id = 1 OR id = 1.5 OR id = 2", vec![1, 2]),
        (
            "(id > 1 AND id < 4) OR (id > 10 AND id < 12)",
            vec![2, 3, 11],
        ),
        ("TRUE AND id = 3", vec![3]),
        ("FALSE OR id = 3 OR FALSE", vec![3]),
    ];
    for (text, want) in cases {
        let filter = Filter::parse(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(matching(&filter, &b), want, "{text}");
    }
    // Three-valued logic survives the IN merge: NULL names neither match nor fail.
    let nulls = RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![None, Some("b")])),
            Arc::new(arrow_array::Float64Array::from(vec![None, None])),
        ],
    )
    .expect("batch");
    let f = Filter::parse("NOT (name = 'a' OR name = 'c')", &schema()).expect("parse");
    assert_eq!(matching(&f, &nulls), vec![2]);
}

#[test]
fn deep_nesting_is_a_typed_error_never_a_crash() {
    let deep_parens = format!("{}id = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let plus_chain = format!("id{} = 5", " + 1".repeat(10_000));
    let is_null_chain = format!("id{} = TRUE", " IS NULL".repeat(10_000));
    let calls = format!("{}id{} = 1", "abs(".repeat(10_000), ")".repeat(10_000));
    let minus = format!("id = {}1", "- ".repeat(10_000));
    let between = format!("id{} = TRUE", " BETWEEN 1 AND 2".repeat(10_000));
    let case = format!(
        "CASE WHEN {} THEN 1 END = 1",
        vec!["id = 1"; 10_000].join(" OR ")
    );
    let in_parens_compared = format!("({}) = TRUE", vec!["id = 1"; 10_000].join(" OR "));
    for text in [
        deep_parens,
        plus_chain,
        is_null_chain,
        calls,
        minus,
        between,
        case,
        in_parens_compared,
    ] {
        let e = on_small_stack(move || match Filter::parse(&text, &schema()) {
            Err(Error::Filter(e)) => e,
            other => panic!("expected a filter error, got {other:?}"),
        });
        assert!(
            matches!(
                e.kind,
                FilterErrorKind::TooComplex | FilterErrorKind::Unsupported
            ),
            "{e}"
        );
        if e.kind == FilterErrorKind::TooComplex {
            assert!(e.message.contains(&MAX_DEPTH.to_string()), "{e}");
        }
    }
    // 10,000 NOTs are only parity.
    let nots = format!("{}id = 3", "NOT ".repeat(10_000));
    let f = on_small_stack(move || Filter::parse(&nots, &schema()).expect("parse"));
    assert_eq!(matching(&f, &batch_of_ids(5)), vec![3]);
    let nots = format!("{}(id = 3)", "NOT ".repeat(10_001));
    let f = on_small_stack(move || Filter::parse(&nots, &schema()).expect("parse"));
    assert_eq!(matching(&f, &batch_of_ids(5)), vec![0, 1, 2, 4]);
}

#[test]
fn moderate_nesting_still_plans() {
    let parens = format!("{}id = 1{}", "(".repeat(100), ")".repeat(100));
    let f = on_small_stack(move || Filter::parse(&parens, &schema()).expect("parse"));
    assert_eq!(matching(&f, &batch_of_ids(3)), vec![1]);
    let sum = format!("id{} = 50", " + 1".repeat(50));
    let f = on_small_stack(move || Filter::parse(&sum, &schema()).expect("parse"));
    assert_eq!(matching(&f, &batch_of_ids(3)), vec![0]);
}

#[test]
fn unbalanced_brackets_and_dangling_connectives_are_syntax_errors() {
    for text in [
        "(id = 1",
        "id = 1)",
        "id IN (1, 2",
        "id = 1 OR",
        "AND id = 1",
        "id = 1 AND AND id = 2",
        "NOT",
        "(id = 1]",
        "CASE WHEN id = 1 THEN 1",
    ] {
        let e = filter_error(text);
        assert_eq!(e.kind, FilterErrorKind::Syntax, "{text}: {e}");
        assert!(e.position.is_some(), "{text}: {e}");
    }
}
/// Nesting just under and over the limit, on thread stacks of every usual size (a stack that
/// is just over the parser's headroom is the tightest case: nothing is grown up front).
#[test]
fn nesting_near_the_limit_fits_any_thread() {
    for kib in [256usize, 1060, 2048] {
        for n in [250usize, 300, 600] {
            let texts = [
                format!("id = {}1", "- ".repeat(n)),
                format!("{}id{} = 1", "abs(".repeat(n), ")".repeat(n)),
                format!("id = {}1{}", "(".repeat(n), ")".repeat(n)),
                format!("{}TRUE{}", "(NOT ".repeat(n), ")".repeat(n)),
                format!("id{} = 5", " + 1".repeat(n)),
                format!("lower(name{}) = 'x'", " || 'a'".repeat(n)),
            ];
            for text in texts {
                let outcome = std::thread::Builder::new()
                    .stack_size(kib * 1024)
                    .spawn(move || match Filter::parse(&text, &schema()) {
                        Ok(_) => None,
                        Err(Error::Filter(e)) => Some(e.kind),
                        Err(other) => panic!("{other}"),
                    })
                    .expect("spawn")
                    .join()
                    .expect("no panic");
                match outcome {
                    None => assert!(n < MAX_DEPTH, "{n} levels planned"),
                    Some(kind) => assert!(
                        matches!(
                            kind,
                            FilterErrorKind::TooComplex | FilterErrorKind::Unsupported
                        ),
                        "{kind:?}"
                    ),
                }
            }
        }
    }
}
