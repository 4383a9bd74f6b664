//! Hostile subscription expressions: arbitrary text, token soups, deep
//! nesting and long operator chains must compile or give a [`FilterError`]
//! — never panic, never overflow the stack — and whatever compiles must
//! evaluate against any properties. Generated well-formed expressions
//! compile to the tree they were printed from.

use proptest::prelude::*;

use super::*;

/// The stack of a thread the broker compiles and evaluates filters on
/// (std's, tokio's and actix's default).
const THREAD_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` on a thread with [`THREAD_STACK`]: a stack overflow aborts the
/// test binary, so passing means the input fits.
fn on_broker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// Compiles `expr` and, if it compiles, evaluates it every way the broker
/// may; the expression must never panic.
fn exercise(expr: &str) -> Result<(), FilterError> {
    let f = SqlFilter::compile(expr)?;
    assert_eq!(f.expression(), expr);
    for value in [
        None,
        Some(""),
        Some("1"),
        Some("-2.5"),
        Some("true"),
        Some("x"),
    ] {
        let _ = f.matches(|_| value);
    }
    let _ = f.matches(|name| (name.len() % 2 == 0).then_some("3"));
    let _ = format!("{f:?}");
    assert_eq!(f.clone(), f);
    Ok(())
}

#[test]
fn deep_nesting_and_long_chains_are_errors_or_filters_not_overflows() {
    let n = MAX_EXPRESSION_LEN;
    let inputs = vec![
        "(".repeat(100_000),
        "(".repeat(n),
        ")".repeat(n),
        format!("{}a{}", "(".repeat(n / 2 - 1), ")".repeat(n / 2 - 1)),
        format!("{}a", "NOT ".repeat(n / 4 - 1)),
        format!("a = {}1", "- ".repeat(n / 2 - 4)),
        format!("a = {}1", "+".repeat(n - 5)),
        format!(
            "{}a = 1{}",
            "(a = 1 AND ".repeat(n / 12),
            ")".repeat(n / 12)
        ),
        format!("{}a{}", "NOT (a OR ".repeat(n / 11), ")".repeat(n / 11)),
        format!("{}a{}", "(a AND NOT ".repeat(n / 12), ")".repeat(n / 12)),
        // Chains the parser builds without recursing: 800 terms deep.
        format!("a{}", " OR a".repeat(n / 5 - 1)),
        format!("a{}", " AND a".repeat(n / 6 - 1)),
        format!("a = 1{}", " OR a = 1".repeat(n / 9 - 1)),
        format!("a{}", "=a".repeat(n / 2 - 1)),
        format!("a{}", " IS NULL".repeat(n / 8 - 1)),
        format!("f(a{}) = 1", " OR a".repeat(n / 5 - 3)),
        format!("a = f(a{})", " OR a".repeat(n / 5 - 3)),
        format!("a{} LIKE 'x'", " OR a".repeat(n / 5 - 4)),
        format!("a IN (1{})", ", 1".repeat(n / 3 - 4)),
        format!("a IN ({}1)", "(".repeat(n - 10)),
        format!("a BETWEEN {}1 AND 2", "-".repeat(n - 20)),
        format!("{}", "'".repeat(n)),
        format!("a = '{}'", "''".repeat(n / 2 - 4)),
    ];
    for expr in inputs {
        let shown = expr.chars().take(40).collect::<String>();
        let long = expr.len() > MAX_EXPRESSION_LEN;
        let got = on_broker_stack(move || exercise(&expr).map_err(|e| e.reason));
        if long {
            assert!(got.is_err(), "{shown}...");
        }
    }
}

#[test]
fn long_chains_compile_flat_and_evaluate() {
    let n = MAX_EXPRESSION_LEN;
    let ors = format!("a = 1{}", " OR a = 2".repeat(n / 9 - 1));
    let f = on_broker_stack(move || SqlFilter::compile(&ors)).unwrap();
    let Node::Or(terms) = f.root() else {
        panic!("{:?}", f.root())
    };
    assert_eq!(terms.len(), n / 9);
    assert!(f.matches(|_| Some("2")));
    assert!(!f.matches(|_| Some("3")));
    assert!(!f.matches(|_| None));
    // A parenthesised chain of the same operator is spliced in.
    let f = SqlFilter::compile("a AND (b AND c) AND ((d))").unwrap();
    let Node::And(terms) = f.root() else {
        panic!("{:?}", f.root())
    };
    assert_eq!(terms.len(), 4);
    // Errors in long expressions name the part without printing it.
    let bad = format!("f(a{}) = 1", " OR a".repeat(n / 5 - 3));
    let e = on_broker_stack(move || SqlFilter::compile(&bad)).unwrap_err();
    assert!(e.reason.contains("function f"), "{}", e.reason);
    let e = SqlFilter::compile("a LIKE 'x%'").unwrap_err();
    assert!(e.reason.contains("'a LIKE 'x%''"), "{}", e.reason);
}

/// Words and symbols the filter grammar (and SQL around it) is made of.
const TOKENS: &[&str] = &[
    "(", ")", "NOT", "AND", "OR", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "=", "<>", "!=",
    "<", "<=", ">", ">=", ",", "-", "+", "a", "TAGS", "b.c", "'x'", "''", "1", "-2.5", "1e308",
    "1e999", "0x1F", "'", "\"q\"", "*", "/", "%", "LIKE", "ESCAPE", ";", "SELECT", "f(", "[", "]",
    "::", "$1", "?", "@", "#", "--", "/*", "*/", "\u{0}", "é", "CASE", "WHEN", "THEN", "END",
    "CAST", "AS", "INT", "EXISTS", "INTERVAL", "ARRAY", "{", "}", ":", "\\", "`", "N'x'", "X'1'",
    ".", "..", "1.", ".5", "!", "~", "^", "|", "||", "&", "ANY", "ALL", "SOME",
];

fn token_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(TOKENS), any::<bool>()), 0..48).prop_map(
        |parts| {
            parts
                .into_iter()
                .map(|(t, space)| {
                    if space {
                        format!("{t} ")
                    } else {
                        t.to_string()
                    }
                })
                .collect()
        },
    )
}

/// A literal as the compiled tree holds it and as it is written.
fn literal_strategy() -> impl Strategy<Value = Literal> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(Literal::Long),
        any::<i64>().prop_map(Literal::Long),
        (-1e6f64..1e6).prop_map(Literal::Double),
        "[a-zA-Z0-9 '%_é]{0,8}".prop_map(Literal::Str),
        any::<bool>().prop_map(Literal::Bool),
    ]
}

fn prop_strategy() -> impl Strategy<Value = Operand> {
    // A prefix keeps generated names clear of SQL keywords.
    "p_[a-z0-9_]{0,6}".prop_map(Operand::Prop)
}

fn operand_strategy() -> impl Strategy<Value = Operand> {
    prop_oneof![prop_strategy(), literal_strategy().prop_map(Operand::Lit)]
}

fn cmp_strategy() -> impl Strategy<Value = CmpOp> {
    proptest::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ])
}

/// Well-formed trees: depth 4 at most (within the parser's limit once
/// printed with parentheses).
fn node_strategy() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (cmp_strategy(), operand_strategy(), operand_strategy())
            .prop_map(|(op, l, r)| Node::Cmp(op, l, r)),
        (
            operand_strategy(),
            proptest::collection::vec(literal_strategy(), 1..4),
            any::<bool>()
        )
            .prop_map(|(operand, list, negated)| Node::In {
                operand,
                list,
                negated
            }),
        (
            operand_strategy(),
            literal_strategy(),
            literal_strategy(),
            any::<bool>()
        )
            .prop_map(|(operand, low, high, negated)| Node::Between {
                operand,
                low,
                high,
                negated
            }),
        (operand_strategy(), any::<bool>())
            .prop_map(|(operand, negated)| Node::IsNull { operand, negated }),
        prop_oneof![
            prop_strategy(),
            any::<bool>().prop_map(|b| Operand::Lit(Literal::Bool(b)))
        ]
        .prop_map(Node::Truth),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..5).prop_map(Node::And),
            proptest::collection::vec(inner.clone(), 2..5).prop_map(Node::Or),
            inner.prop_map(|n| Node::Not(Box::new(n))),
        ]
    })
}

fn write_literal(l: &Literal) -> String {
    match l {
        Literal::Long(n) => format!("{n}"),
        // Display never uses an exponent and prints the shortest text that
        // reads back as the same f64; a decimal point keeps it a Double.
        Literal::Double(f) => match format!("{f}") {
            t if t.contains('.') => t,
            t => format!("{t}.0"),
        },
        Literal::Str(s) => format!("'{}'", s.replace('\'', "''")),
        Literal::Bool(b) => format!("{b}").to_uppercase(),
    }
}

fn write_operand(o: &Operand) -> String {
    match o {
        Operand::Prop(p) => p.clone(),
        Operand::Lit(l) => write_literal(l),
    }
}

/// `n` as filter text, every sub-expression in parentheses.
fn write(n: &Node) -> String {
    let op = |o: &CmpOp| match o {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    };
    let not = |negated: &bool| if *negated { "NOT " } else { "" };
    let join = |terms: &[Node], sep: &str| {
        terms
            .iter()
            .map(|t| format!("({})", write(t)))
            .collect::<Vec<_>>()
            .join(sep)
    };
    match n {
        Node::Cmp(o, l, r) => format!("{} {} {}", write_operand(l), op(o), write_operand(r)),
        Node::In {
            operand,
            list,
            negated,
        } => format!(
            "{} {}IN ({})",
            write_operand(operand),
            not(negated),
            list.iter()
                .map(write_literal)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Node::Between {
            operand,
            low,
            high,
            negated,
        } => format!(
            "{} {}BETWEEN {} AND {}",
            write_operand(operand),
            not(negated),
            write_literal(low),
            write_literal(high)
        ),
        Node::IsNull { operand, negated } => {
            format!("{} IS {}NULL", write_operand(operand), not(negated))
        }
        Node::And(terms) => join(terms, " AND "),
        Node::Or(terms) => join(terms, " OR "),
        Node::Not(inner) => format!("NOT ({})", write(inner)),
        Node::Truth(o) => write_operand(o),
    }
}

/// `n` as the compiler builds it: a chain of the same operator in a term
/// is spliced into its parent.
fn flatten(n: Node) -> Node {
    let splice = |terms: Vec<Node>, and: bool| {
        let mut out = Vec::new();
        for t in terms.into_iter().map(flatten) {
            match t {
                Node::And(inner) if and => out.extend(inner),
                Node::Or(inner) if !and => out.extend(inner),
                t => out.push(t),
            }
        }
        out
    };
    match n {
        Node::And(terms) => Node::And(splice(terms, true)),
        Node::Or(terms) => Node::Or(splice(terms, false)),
        Node::Not(inner) => Node::Not(Box::new(flatten(*inner))),
        other => other,
    }
}

/// The three-valued logic of the filter, written pairwise (how `a AND b
/// AND c` read before chains were flat): the flat evaluation must agree.
fn reference_eval<'a>(n: &Node, property: &impl Fn(&str) -> Option<&'a str>) -> Option<bool> {
    let and = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    };
    let or = |a: Option<bool>, b: Option<bool>| match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    };
    match n {
        Node::And(terms) => terms
            .iter()
            .map(|t| reference_eval(t, property))
            .reduce(and)
            .flatten(),
        Node::Or(terms) => terms
            .iter()
            .map(|t| reference_eval(t, property))
            .reduce(or)
            .flatten(),
        Node::Not(inner) => reference_eval(inner, property).map(|b| !b),
        leaf => eval(leaf, property),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text_never_panics(expr in "\\PC{0,120}") {
        let _ = exercise(&expr);
    }

    #[test]
    fn sql_like_text_never_panics(expr in "[a-zA-Z0-9_ ()'=<>!,.+\\-*]{0,160}") {
        let _ = exercise(&expr);
    }

    #[test]
    fn token_soups_never_panic(expr in token_soup()) {
        let _ = exercise(&expr);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn written_trees_compile_back_and_evaluate_alike(
        node in node_strategy(),
        value in proptest::option::of(prop_oneof![
            Just("1".to_string()), Just("true".to_string()), "[a-z0-9.\\-]{0,4}"
        ]),
    ) {
        let text = write(&node);
        prop_assume!(text.len() <= MAX_EXPRESSION_LEN);
        let f = SqlFilter::compile(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = flatten(node);
        prop_assert_eq!(f.root(), &want, "{}", text);
        let property = |_: &str| value.as_deref();
        prop_assert_eq!(eval(f.root(), &property), reference_eval(&want, &property));
    }
}
