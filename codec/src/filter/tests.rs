use super::*;

fn props<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn matches(expr: &str, pairs: &[(&str, &str)]) -> bool {
    SqlFilter::compile(expr).unwrap().matches(props(pairs))
}

#[test]
fn tags_in_list() {
    let e = "TAGS IN ('A','C')";
    assert!(matches(e, &[("TAGS", "A")]));
    assert!(matches(e, &[("TAGS", "C")]));
    assert!(!matches(e, &[("TAGS", "B")]));
    assert!(!matches(e, &[]), "no tag: unknown, no match");
    let n = "TAGS NOT IN ('A','C')";
    assert!(matches(n, &[("TAGS", "B")]));
    assert!(!matches(n, &[("TAGS", "A")]));
    assert!(!matches(n, &[]), "NOT IN over NULL is unknown too");
}

#[test]
fn numbers_and_strings() {
    let e = "a > 5 AND b = 'x'";
    assert!(matches(e, &[("a", "6"), ("b", "x")]));
    assert!(matches(e, &[("a", "5.5"), ("b", "x")]));
    assert!(!matches(e, &[("a", "5"), ("b", "x")]));
    assert!(!matches(e, &[("a", "6"), ("b", "y")]));
    assert!(!matches(e, &[("a", "abc"), ("b", "x")]), "not a number");
    assert!(!matches(e, &[("b", "x")]), "missing a");
    assert!(matches("a >= -2.5", &[("a", "-2.5")]));
    assert!(matches("a <= 10", &[("a", "10")]));
    assert!(matches("a < 10", &[("a", " 9 ")]));
    assert!(matches("a <> 1", &[("a", "2")]));
    assert!(matches("a != 1", &[("a", "2")]));
    assert!(!matches("a <> 1", &[]), "missing <> is unknown");
    assert!(matches("10 > a", &[("a", "2")]));
    assert!(matches("a = b", &[("a", "2"), ("b", "2.0")]));
    assert!(matches("s > 'abc'", &[("s", "abd")]));
}

#[test]
fn between_null_boolean() {
    assert!(matches("a BETWEEN 1 AND 3", &[("a", "3")]));
    assert!(!matches("a BETWEEN 1 AND 3", &[("a", "4")]));
    assert!(matches("a NOT BETWEEN 1 AND 3", &[("a", "4")]));
    assert!(!matches("a NOT BETWEEN 1 AND 3", &[]));
    assert!(matches("a IS NULL", &[]));
    assert!(!matches("a IS NULL", &[("a", "")]));
    assert!(matches("a IS NOT NULL", &[("a", "")]));
    assert!(matches("flag = TRUE", &[("flag", "true")]));
    assert!(matches("flag", &[("flag", "TRUE")]));
    assert!(!matches("flag", &[("flag", "no")]));
    assert!(matches("flag = false", &[("flag", "false")]));
    assert!(matches("TRUE", &[]));
    assert!(matches("a IN (1, 2)", &[("a", "2")]));
}

#[test]
fn three_valued_logic() {
    // unknown OR true = true; unknown AND false = false; NOT unknown = unknown
    assert!(matches("a > 1 OR b = 'x'", &[("b", "x")]));
    assert!(!matches("a > 1 AND b = 'x'", &[("b", "x")]));
    assert!(!matches("NOT (a > 1)", &[]));
    assert!(matches("NOT (a > 1)", &[("a", "0")]));
    assert!(matches("NOT (a > 1 AND b = 'y')", &[("b", "x")]));
    assert!(matches(
        "(a = 1 OR a = 2) AND NOT b IS NULL",
        &[("a", "2"), ("b", "")]
    ));
}

#[test]
fn malformed_expressions_give_the_parser_reason() {
    for bad in [
        "TAGS IN (",
        "a >",
        "",
        "   ",
        "a = 1 b",
        "a + 1 > 2",
        "a LIKE 'x%'",
        "a = NULL",
        "a IN (b)",
        "5",
        "'x'",
        "f(a) = 1",
        "a = (SELECT 1)",
    ] {
        let e = SqlFilter::compile(bad).expect_err(bad);
        assert_eq!(e.expression, bad);
        assert!(!e.reason.is_empty(), "{bad}");
    }
    let e = SqlFilter::compile("TAGS IN (").unwrap_err();
    assert!(e.to_string().contains("Expected"), "{e}");
    let long = format!("a = '{}'", "x".repeat(MAX_EXPRESSION_LEN));
    let e = SqlFilter::compile(&long).unwrap_err();
    assert_eq!(e.expression, long, "the error keeps the whole text");
    // ... but its message quotes only the start (and the length).
    let said = e.to_string();
    assert!(said.len() < 400, "{said}");
    assert!(
        said.contains("… (4102 bytes)") && said.contains("longer than 4096"),
        "{said}"
    );
    let multibyte = format!("a = '{}", "é".repeat(300)); // unterminated
    assert!(SqlFilter::compile(&multibyte)
        .unwrap_err()
        .to_string()
        .contains("(605 bytes)"));
    let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
    assert!(
        SqlFilter::compile(&deep).is_err(),
        "recursion limit, no stack overflow"
    );
}

#[test]
fn compiles_into_the_small_tree() {
    let f = SqlFilter::compile("TAGS IN ('A') AND a > 5").unwrap();
    assert_eq!(f.expression(), "TAGS IN ('A') AND a > 5");
    assert_eq!(
        f.root(),
        &Node::And(vec![
            Node::In {
                operand: Operand::Prop("TAGS".into()),
                list: vec![Literal::Str("A".into())],
                negated: false
            },
            Node::Cmp(
                CmpOp::Gt,
                Operand::Prop("a".into()),
                Operand::Lit(Literal::Long(5))
            )
        ])
    );
}

/// 2^53 + 1: the first integer an f64 cannot hold (it reads as 2^53).
const PAST_F64: &str = "9007199254740993";

#[test]
fn integers_compare_exactly_as_longs_past_2_pow_53() {
    let eq = format!("a = {PAST_F64}");
    assert!(matches(&eq, &[("a", PAST_F64)]));
    assert!(
        !matches(&eq, &[("a", "9007199254740992")]),
        "2^53 is not 2^53 + 1"
    );
    assert!(!matches(&eq, &[("a", "9007199254740994")]));
    assert!(!matches(&format!("a <> {PAST_F64}"), &[("a", PAST_F64)]));
    assert!(matches(
        &format!("a <> {PAST_F64}"),
        &[("a", "9007199254740992")]
    ));
    assert!(matches("a > 9007199254740992", &[("a", PAST_F64)]));
    assert!(!matches(
        &format!("a >= {PAST_F64}"),
        &[("a", "9007199254740992")]
    ));
    let between = "a BETWEEN 9007199254740993 AND 9007199254740995";
    assert!(matches(between, &[("a", "9007199254740994")]));
    assert!(!matches(between, &[("a", "9007199254740992")]));
    assert!(!matches(between, &[("a", "9007199254740996")]));
    let list = format!("a IN (1, {PAST_F64})");
    assert!(matches(&list, &[("a", PAST_F64)]));
    assert!(!matches(&list, &[("a", "9007199254740992")]));
    // Two properties that both read as integers compare as Longs too.
    assert!(!matches(
        "a = b",
        &[("a", PAST_F64), ("b", "9007199254740992")]
    ));
    assert!(matches(
        "a > b",
        &[("a", PAST_F64), ("b", "9007199254740992")]
    ));
    // The ends of the i64 range.
    assert!(matches(
        "a = 9223372036854775807",
        &[("a", "9223372036854775807")]
    ));
    assert!(!matches(
        "a = 9223372036854775807",
        &[("a", "9223372036854775806")]
    ));
    assert!(matches(
        "a = -9223372036854775808",
        &[("a", "-9223372036854775808")]
    ));
    assert!(matches(
        "a < -9223372036854775807",
        &[("a", "-9223372036854775808")]
    ));
    assert!(matches("a = -(5)", &[("a", "-5")]));
    // A decimal on either side is a Double comparison.
    assert!(matches("a = 2.0", &[("a", "2")]));
    assert!(matches("a = 2", &[("a", "2.0")]));
    assert!(matches("a < 2.5", &[("a", "2")]));
    assert!(matches("a = 2e3", &[("a", "2000")]));
    assert!(matches("a = b", &[("a", "2"), ("b", "2.0")]));
}

#[test]
fn inf_infinity_and_nan_are_not_numbers() {
    for v in [
        "inf",
        "-inf",
        "+inf",
        "INF",
        "infinity",
        "-Infinity",
        "NaN",
        "nan",
        "-NaN",
        "1e999",
    ] {
        for e in [
            "a > 0",
            "a < 0",
            "a = 0",
            "a <> 0",
            "a >= 1.5",
            "a <= -1.5",
            "a BETWEEN -1 AND 1",
            "a NOT BETWEEN -1 AND 1",
            "a IN (0, 1)",
            "a NOT IN (0, 1)",
            "NOT (a > 0)",
            "NOT (a = 0)",
        ] {
            assert!(!matches(e, &[("a", v)]), "{e} matched a = {v:?}");
        }
        // Still a property that is there, and text that equals itself.
        assert!(matches("a IS NOT NULL", &[("a", v)]));
        assert!(matches(&format!("a = '{v}'"), &[("a", v)]));
    }
}

#[test]
fn number_literals_outside_the_long_and_double_ranges_are_refused() {
    for (bad, says) in [
        ("a = 9223372036854775808", "out of range"),
        ("a = -9223372036854775809", "out of range"),
        ("a = 99999999999999999999999", "out of range"),
        ("a = -(9223372036854775808)", "out of range"),
        ("a = 1e999", "bad number"),
        ("a = -1e999", "bad number"),
    ] {
        let e = SqlFilter::compile(bad).expect_err(bad);
        assert!(e.reason.contains(says), "{bad}: {e}");
    }
    let f = SqlFilter::compile("a = -9223372036854775808 OR a = 1.5").unwrap();
    assert_eq!(
        f.root(),
        &Node::Or(vec![
            Node::Cmp(
                CmpOp::Eq,
                Operand::Prop("a".into()),
                Operand::Lit(Literal::Long(i64::MIN))
            ),
            Node::Cmp(
                CmpOp::Eq,
                Operand::Prop("a".into()),
                Operand::Lit(Literal::Double(1.5))
            ),
        ])
    );
}
