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
