//! RocketMQ's SQL-92 property filter (feature `filter`): a consumer
//! subscribes with a boolean expression over message properties (and
//! `TAGS`, the tag), and the broker only returns messages for which it is
//! true. The client validates an expression before subscribing; the broker
//! compiles it and evaluates it during a read (`skylark-actors`' `filter`
//! plugs [`SqlFilter`] into its store).
//!
//! The text is parsed by the `sqlparser` crate (generic dialect) and compiled
//! into the small [`SqlFilter`] tree below, which is all the broker keeps; a
//! construct outside RocketMQ's subset is refused at compile time with the
//! reason, so a subscription is checked once, when it is made.
//!
//! Supported: `=`, `<>` (`!=`), `<`, `<=`, `>`, `>=`, `[NOT] IN (...)`,
//! `[NOT] BETWEEN a AND b`, `IS [NOT] NULL`, `AND`, `OR`, `NOT`, parentheses,
//! numeric (signed, decimal), string (`'x'`) and boolean (`TRUE`/`FALSE`)
//! literals. An identifier is a property name (case-sensitive; `TAGS` is the
//! tag, `KEYS` the keys).
//!
//! Semantics (RocketMQ / JMS selectors): properties are strings; compared
//! with a number they are read as numbers, with a boolean as `true`/`false`.
//! Numbers keep RocketMQ's two kinds apart: an integer (`42`, `-7`, any
//! i64) is a Long and two Longs compare exactly, so `a = 9007199254740993`
//! does not match `9007199254740992` (past 2^53 an f64 cannot tell them
//! apart); a decimal (`1.5`, `2e3`) is a Double, and a Long meets a Double
//! as an f64. Property text reads as a Long if it is an integer that fits
//! an i64, else as a Double if it is a finite decimal: `inf`, `infinity`
//! and `NaN` are not numbers. An integer literal outside the i64 range is
//! refused at compile time, as RocketMQ's parser refuses it.
//! A missing property — or one that does not read as the literal's type — is
//! NULL, and any comparison with NULL is *unknown*. `AND`, `OR` and `NOT`
//! follow three-valued logic (`NOT unknown` is unknown) and a message matches
//! only when the whole expression is *true*.
//!
//! Limits, so that hostile text costs an error and nothing else: at most
//! [`MAX_EXPRESSION_LEN`] bytes, and nesting (parentheses, `NOT`, unary
//! signs) about eight levels deep; chains of `AND` / `OR` may be as long
//! as the text allows (they compile into one flat node). Nothing here
//! recurses deeper than the parser's limit, so compiling, evaluating and
//! printing a filter fit a 2 MiB thread stack even in a debug build
//! (`fuzz_tests.rs` checks it).

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;

use sqlparser::ast::{BinaryOperator, Expr as SqlExpr, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// Longest accepted expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// The parser's recursion limit: about eight levels of parentheses around
/// `a = 1 AND (...)`, or 20 `NOT`s in a row; anything deeper is refused.
/// The parser's frames are large (tens of KiB a level in a debug build),
/// so 64 levels overflowed a 2 MiB thread stack — an abort of the whole
/// process, not an error.
const PARSER_RECURSION_LIMIT: usize = 20;

/// Longest expression whose offending part is quoted in an error: quoting
/// prints it, which recurses once per level of it, and only a short text
/// is sure to nest shallowly (`a = a = a ...` is a level every 2 bytes).
const QUOTE_MAX_LEN: usize = 256;

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SQL filter '{}': {reason}", quoted(expression))]
pub struct FilterError {
    pub expression: String,
    pub reason: String,
}

/// The expression as an error quotes it: whole up to [`QUOTE_MAX_LEN`]
/// bytes, else its start and its length (a refused 4 KiB text is not
/// echoed back whole).
fn quoted(expression: &str) -> std::borrow::Cow<'_, str> {
    if expression.len() <= QUOTE_MAX_LEN {
        return expression.into();
    }
    let mut end = QUOTE_MAX_LEN / 2;
    while !expression.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &expression[..end], expression.len()).into()
}

/// A literal of the expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer literal (RocketMQ's Long): compared exactly.
    Long(i64),
    /// A literal with a decimal point or an exponent (RocketMQ's Double).
    Double(f64),
    Str(String),
    Bool(bool),
}

/// A number, as a literal is written or as property text reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Long(i64),
    Double(f64),
}

impl Number {
    /// Property text as a number: a Long if it is an integer that fits an
    /// i64, else a Double if it is a finite decimal; `None` for anything
    /// else (`abc`, and `inf`, `infinity`, `NaN`, which Rust's f64 parser
    /// would accept).
    fn read(text: &str) -> Option<Number> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Some(Number::Long(n));
        }
        t.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Number::Double)
    }

    /// Two Longs compare exactly; a Double on either side makes it an f64
    /// comparison (RocketMQ widens a Long met by a Double).
    fn compare(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Long(a), Number::Long(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Long(n) => n as f64,
            Number::Double(f) => f,
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property, by name (`TAGS` included).
    Prop(String),
    Lit(Literal),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Cmp(CmpOp, Operand, Operand),
    In {
        operand: Operand,
        list: Vec<Literal>,
        negated: bool,
    },
    Between {
        operand: Operand,
        low: Literal,
        high: Literal,
        negated: bool,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
    /// Every term holds. A chain `a AND b AND c` is one node, however
    /// long: the parser builds such a chain without recursing, so a tree
    /// one level per term could be thousands deep and overflow the stack
    /// of whatever walks it (compile, evaluate, drop, print).
    And(Vec<Node>),
    /// Some term holds; flat like [`Node::And`].
    Or(Vec<Node>),
    Not(Box<Node>),
    /// A bare boolean operand (`TRUE`, or a property holding `true`).
    Truth(Operand),
}

/// A compiled filter, ready to evaluate against a message's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFilter {
    expression: String,
    root: Node,
}

impl SqlFilter {
    /// Parses and compiles `expression`.
    pub fn compile(expression: &str) -> Result<SqlFilter, FilterError> {
        let fail = |reason: String| FilterError {
            expression: expression.to_string(),
            reason,
        };
        if expression.trim().is_empty() {
            return Err(fail("the expression is empty".into()));
        }
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(fail(format!("longer than {MAX_EXPRESSION_LEN} bytes")));
        }
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .try_with_sql(expression)
            .map_err(|e| fail(e.to_string()))?;
        let expr = parser.parse_expr().map_err(|e| fail(e.to_string()))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(fail(format!(
                "unexpected '{}' after the expression{}",
                next.token, next.span.start
            )));
        }
        let root = compile(&expr).map_err(|r| fail(r.describe(expression.len())))?;
        Ok(SqlFilter {
            expression: expression.to_string(),
            root,
        })
    }

    /// The source text.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The compiled tree.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Whether a message with these properties matches (the expression is
    /// true; unknown does not match).
    pub fn matches<'a>(&self, property: impl Fn(&str) -> Option<&'a str>) -> bool {
        eval(&self.root, &property) == Some(true)
    }
}

/// Validates `expression` without keeping it: `Err` carries the reason.
pub fn validate(expression: &str) -> Result<(), FilterError> {
    SqlFilter::compile(expression).map(|_| ())
}

/// Why a parsed expression does not compile. An unsupported part is kept,
/// not printed, until the length of the whole text says whether printing
/// it is safe (see [`QUOTE_MAX_LEN`]).
enum Refusal<'e> {
    Reason(String),
    /// The part, and what is wrong with it (`"is not a literal"`).
    Unsupported(&'e SqlExpr, &'static str),
}

impl From<String> for Refusal<'_> {
    fn from(reason: String) -> Self {
        Refusal::Reason(reason)
    }
}

impl Refusal<'_> {
    fn describe(self, expression_len: usize) -> String {
        match self {
            Refusal::Reason(reason) => reason,
            Refusal::Unsupported(e, why) if expression_len <= QUOTE_MAX_LEN => {
                format!("'{e}' {why}")
            }
            Refusal::Unsupported(e, why) => format!("{} {why}", kind(e)),
        }
    }
}

/// A name for `e` that is not printed recursively.
fn kind(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Function(f) => format!("function {}", f.name),
        SqlExpr::BinaryOp { op, .. } => format!("an expression with '{op}'"),
        SqlExpr::UnaryOp { op, .. } => format!("an expression with '{op}'"),
        SqlExpr::Like { .. } | SqlExpr::ILike { .. } => "a LIKE".into(),
        _ => "an expression".into(),
    }
}

fn compile(e: &SqlExpr) -> Result<Node, Refusal<'_>> {
    Ok(match e {
        SqlExpr::Nested(inner) => compile(inner)?,
        SqlExpr::BinaryOp { left, op, right } => match op {
            BinaryOperator::And => Node::And(compile_chain(e, &BinaryOperator::And)?),
            BinaryOperator::Or => Node::Or(compile_chain(e, &BinaryOperator::Or)?),
            _ => {
                let op = match op {
                    BinaryOperator::Eq => CmpOp::Eq,
                    BinaryOperator::NotEq => CmpOp::Ne,
                    BinaryOperator::Lt => CmpOp::Lt,
                    BinaryOperator::LtEq => CmpOp::Le,
                    BinaryOperator::Gt => CmpOp::Gt,
                    BinaryOperator::GtEq => CmpOp::Ge,
                    other => return Err(format!("operator '{other}' is not supported").into()),
                };
                Node::Cmp(op, operand(left)?, operand(right)?)
            }
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Node::Not(Box::new(compile(expr)?)),
        SqlExpr::InList {
            expr,
            list,
            negated,
        } => Node::In {
            operand: operand(expr)?,
            list: list.iter().map(literal).collect::<Result<_, _>>()?,
            negated: *negated,
        },
        SqlExpr::Between {
            expr,
            negated,
            low,
            high,
        } => Node::Between {
            operand: operand(expr)?,
            low: literal(low)?,
            high: literal(high)?,
            negated: *negated,
        },
        SqlExpr::IsNull(e) => Node::IsNull {
            operand: operand(e)?,
            negated: false,
        },
        SqlExpr::IsNotNull(e) => Node::IsNull {
            operand: operand(e)?,
            negated: true,
        },
        SqlExpr::IsTrue(e) => Node::Cmp(CmpOp::Eq, operand(e)?, Operand::Lit(Literal::Bool(true))),
        SqlExpr::IsFalse(e) => {
            Node::Cmp(CmpOp::Eq, operand(e)?, Operand::Lit(Literal::Bool(false)))
        }
        SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) | SqlExpr::Value(_) => {
            match operand(e)? {
                Operand::Lit(Literal::Long(_) | Literal::Double(_) | Literal::Str(_)) => {
                    return Err(format!("'{e}' is not a boolean condition").into())
                }
                o => Node::Truth(o),
            }
        }
        other => return Err(Refusal::Unsupported(other, "is not supported in a filter")),
    })
}

/// The terms of the chain `t1 OP t2 OP ... tn` rooted at `e`, in order.
///
/// The parser builds such a chain left-deep and without recursion, so a
/// 4 KiB expression can be an 800-term chain: it is walked down its left
/// spine in a loop, and a term that is itself an `OP` chain (in
/// parentheses) is spliced in. What recursion is left follows the
/// parser's own (bounded) recursion: parentheses, `NOT`, the other
/// operator.
fn compile_chain<'e>(e: &'e SqlExpr, chain_op: &BinaryOperator) -> Result<Vec<Node>, Refusal<'e>> {
    let mut later = Vec::new();
    let mut first = e;
    loop {
        match first {
            SqlExpr::Nested(inner) => first = inner,
            SqlExpr::BinaryOp { left, op, right } if op == chain_op => {
                later.push(&**right);
                first = left;
            }
            _ => break,
        }
    }
    later.push(first);
    let mut terms = Vec::with_capacity(later.len());
    for term in later.into_iter().rev() {
        match (compile(term)?, chain_op) {
            (Node::And(inner), BinaryOperator::And) | (Node::Or(inner), BinaryOperator::Or) => {
                terms.extend(inner)
            }
            (node, _) => terms.push(node),
        }
    }
    Ok(terms)
}

fn operand(e: &SqlExpr) -> Result<Operand, Refusal<'_>> {
    match e {
        SqlExpr::Nested(inner) => operand(inner),
        SqlExpr::Identifier(id) => Ok(Operand::Prop(id.value.clone())),
        SqlExpr::CompoundIdentifier(ids) => Ok(Operand::Prop(
            ids.iter()
                .map(|i| i.value.as_str())
                .collect::<Vec<_>>()
                .join("."),
        )),
        _ => literal(e).map(Operand::Lit),
    }
}

fn literal(e: &SqlExpr) -> Result<Literal, Refusal<'_>> {
    match e {
        SqlExpr::Nested(inner) => literal(inner),
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => number_literal(n).map_err(Refusal::Reason),
            Value::SingleQuotedString(s) => Ok(Literal::Str(s.clone())),
            Value::Boolean(b) => Ok(Literal::Bool(*b)),
            Value::Null => Err(Refusal::Reason(
                "NULL is only allowed in IS [NOT] NULL".into(),
            )),
            other => Err(format!("literal {other} is not supported").into()),
        },
        SqlExpr::UnaryOp { op, expr } => {
            if let (UnaryOperator::Minus, Some(n)) = (op, number_text(expr)) {
                // `-9223372036854775808` is a Long although its digits
                // alone are not.
                return number_literal(&format!("-{n}")).map_err(Refusal::Reason);
            }
            match (op, literal(expr)?) {
                (UnaryOperator::Minus, Literal::Long(n)) => n
                    .checked_neg()
                    .map(Literal::Long)
                    .ok_or_else(|| format!("'{e}' is out of the integer range").into()),
                (UnaryOperator::Minus, Literal::Double(f)) => Ok(Literal::Double(-f)),
                (UnaryOperator::Plus, n @ (Literal::Long(_) | Literal::Double(_))) => Ok(n),
                _ => Err(format!("'{e}' is not a literal").into()),
            }
        }
        other => Err(Refusal::Unsupported(other, "is not a literal")),
    }
}

/// The digits of a number literal written as it is (not in parentheses).
fn number_text(e: &SqlExpr) -> Option<&str> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

/// A number literal: a Long when it is an integer (which must fit an i64,
/// as RocketMQ's parser requires), else a finite Double.
fn number_literal(text: &str) -> Result<Literal, String> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Literal::Long(n));
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "integer {text} is out of range ({}..={})",
            i64::MIN,
            i64::MAX
        ));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Literal::Double(f)),
        _ => Err(format!("bad number '{text}'")),
    }
}

/// A property or literal value at evaluation time.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    /// Property text, typed by what it is compared with.
    Text(&'a str),
    Lit(&'a Literal),
}

fn resolve<'a, 'b>(o: &'b Operand, property: &impl Fn(&str) -> Option<&'a str>) -> Option<Val<'b>>
where
    'a: 'b,
{
    match o {
        Operand::Prop(name) => property(name).map(Val::Text),
        Operand::Lit(l) => Some(Val::Lit(l)),
    }
}

/// A value read as the type of a literal.
#[derive(Debug, Clone, PartialEq)]
enum Typed<'a> {
    Num(Number),
    Str(&'a str),
    Bool(bool),
}

impl Typed<'_> {
    /// The order of two values of one type; `None` (unknown) across types.
    fn compare(&self, other: &Typed<'_>) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Typed::Num(a), Typed::Num(b)) => a.compare(*b),
            (Typed::Str(a), Typed::Str(b)) => Some(a.cmp(b)),
            (Typed::Bool(a), Typed::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

fn as_literal(l: &Literal) -> Typed<'_> {
    match l {
        Literal::Long(n) => Typed::Num(Number::Long(*n)),
        Literal::Double(f) => Typed::Num(Number::Double(*f)),
        Literal::Str(s) => Typed::Str(s),
        Literal::Bool(b) => Typed::Bool(*b),
    }
}

/// Reads `text` as the type of `like`; None when it does not read (NULL).
fn as_type_of<'a>(text: &'a str, like: &Typed<'_>) -> Option<Typed<'a>> {
    match like {
        Typed::Num(_) => Number::read(text).map(Typed::Num),
        Typed::Str(_) => Some(Typed::Str(text)),
        Typed::Bool(_) => match text.trim() {
            t if t.eq_ignore_ascii_case("true") => Some(Typed::Bool(true)),
            t if t.eq_ignore_ascii_case("false") => Some(Typed::Bool(false)),
            _ => None,
        },
    }
}

/// Both values under one type, or None (unknown).
fn unify<'a>(a: Val<'a>, b: Val<'a>) -> Option<(Typed<'a>, Typed<'a>)> {
    match (a, b) {
        (Val::Lit(x), Val::Lit(y)) => Some((as_literal(x), as_literal(y))),
        (Val::Text(t), Val::Lit(l)) => {
            let l = as_literal(l);
            Some((as_type_of(t, &l)?, l))
        }
        (Val::Lit(l), Val::Text(t)) => {
            let l = as_literal(l);
            Some((l.clone(), as_type_of(t, &l)?))
        }
        (Val::Text(x), Val::Text(y)) => match (Number::read(x), Number::read(y)) {
            (Some(a), Some(b)) => Some((Typed::Num(a), Typed::Num(b))),
            _ => Some((Typed::Str(x), Typed::Str(y))),
        },
    }
}

fn compare(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Option<bool> {
    let (a, b) = unify(a, b)?;
    let ord = a.compare(&b)?;
    use std::cmp::Ordering::*;
    Some(match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    })
}

fn eval<'a>(n: &Node, property: &impl Fn(&str) -> Option<&'a str>) -> Option<bool> {
    match n {
        Node::Cmp(op, l, r) => compare(*op, resolve(l, property)?, resolve(r, property)?),
        Node::In {
            operand,
            list,
            negated,
        } => {
            let v = resolve(operand, property)?;
            let mut unknown = false;
            for l in list {
                match compare(CmpOp::Eq, v, Val::Lit(l)) {
                    Some(true) => return Some(!negated),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(*negated)
        }
        Node::Between {
            operand,
            low,
            high,
            negated,
        } => {
            let v = resolve(operand, property)?;
            let ge = compare(CmpOp::Ge, v, Val::Lit(low))?;
            let le = compare(CmpOp::Le, v, Val::Lit(high))?;
            Some((ge && le) != *negated)
        }
        Node::IsNull { operand, negated } => Some(resolve(operand, property).is_none() != *negated),
        // Three-valued: one false term makes AND false whatever the
        // others are (one true makes OR true); else any unknown term makes
        // it unknown.
        Node::And(terms) => {
            let mut unknown = false;
            for t in terms {
                match eval(t, property) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(true)
        }
        Node::Or(terms) => {
            let mut unknown = false;
            for t in terms {
                match eval(t, property) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(false)
        }
        Node::Not(a) => eval(a, property).map(|b| !b),
        Node::Truth(o) => compare(
            CmpOp::Eq,
            resolve(o, property)?,
            Val::Lit(&Literal::Bool(true)),
        ),
    }
}
