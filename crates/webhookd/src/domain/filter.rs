//! A webhook's content filter (SPEC §10): a JSON object matched against an event's `data`,
//! parsed once into a tree of typed tests and evaluated per event without looking at the JSON
//! again.
//!
//! Keys are dotted paths into `data` (`agent.tier`; a number picks an array element:
//! `items.0.sku`); a value is a literal (equality) or an object of operators: `$eq`, `$neq`,
//! `$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte`, `$exists`, `$contains`. `$and`, `$or` (non-empty
//! arrays of filters) and `$not` (a filter) combine; the entries of one object must all hold.
//! A missing path satisfies only `$neq`, `$nin` and `$exists: false`; comparisons hold between
//! two numbers or two strings only (strings compare by code point, so ISO timestamps order);
//! equality is JSON equality with numbers compared by value (`30` equals `30.0`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// Longest filter, as compact JSON.
pub const TEXT_MAX: usize = 8 * 1024;
/// Deepest nesting of `$and`/`$or`/`$not`.
pub const DEPTH_MAX: usize = 8;
/// Most field tests in one filter.
pub const TESTS_MAX: usize = 100;

const OPERATORS: &str = "$eq, $neq, $in, $nin, $gt, $gte, $lt, $lte, $exists, $contains";

/// A parsed filter, with the JSON it was parsed from (stored and shown as given).
#[derive(Debug, Clone)]
pub struct Filter {
    source: Value,
    root: Node,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Filter {}

/// What is wrong with a filter, and where: `filter.duration.$gte`, `filter.$or[1].tags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone)]
enum Node {
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
    Field { path: Vec<Segment>, test: Test },
}

/// One step of a path: an object key, which is also an array index when it is a number.
#[derive(Debug, Clone)]
struct Segment {
    key: String,
    index: Option<usize>,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Compare(Comparison, Bound),
    Exists(bool),
    Contains(Value),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Bound {
    Number(f64),
    Text(String),
}

impl Filter {
    /// Parses a filter; the error names the path of the first problem.
    pub fn parse(source: &Value) -> Result<Self, FilterError> {
        let at = "filter";
        let Value::Object(map) = source else {
            return Err(error(at, "must be an object of conditions on the event's data, or null"));
        };
        if source.to_string().len() > TEXT_MAX {
            return Err(error(at, format!("is too long (at most {TEXT_MAX} bytes as JSON)")));
        }
        let mut parser = Parser { tests: 0 };
        let root = parser.object(map, at, 0)?;
        Ok(Self { source: source.clone(), root })
    }

    /// The filter as stored (JSON text written by [`Filter::to_json`]).
    pub fn from_stored(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Self::parse(&value).map_err(|e| format!("{}: {}", e.path, e.message))
    }

    /// A webhook's `content_filter` column: `NULL` is no filter.
    pub fn from_column(column: Option<&str>) -> Result<Option<Self>, String> {
        column.map(Self::from_stored).transpose()
    }

    pub fn to_json(&self) -> String {
        self.source.to_string()
    }

    pub fn as_value(&self) -> &Value {
        &self.source
    }

    /// Whether an event whose `data` is `data` passes.
    pub fn matches(&self, data: &Value) -> bool {
        self.root.eval(data)
    }
}

fn error(path: &str, message: impl Into<String>) -> FilterError {
    FilterError { path: path.to_string(), message: message.into() }
}

struct Parser {
    tests: usize,
}

impl Parser {
    /// An object of conditions, all of which must hold.
    fn object(
        &mut self,
        map: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Node, FilterError> {
        if depth > DEPTH_MAX {
            return Err(error(at, format!("nests too deeply (at most {DEPTH_MAX} levels)")));
        }
        let mut nodes = Vec::with_capacity(map.len());
        for (key, value) in map {
            let here = format!("{at}.{key}");
            let node = match key.as_str() {
                "$and" | "$or" => {
                    let items =
                        value.as_array().filter(|items| !items.is_empty()).ok_or_else(|| {
                            error(&here, "must be a non-empty array of filter objects")
                        })?;
                    let mut children = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let here = format!("{here}[{i}]");
                        let item = item
                            .as_object()
                            .ok_or_else(|| error(&here, "must be a filter object"))?;
                        children.push(self.object(item, &here, depth + 1)?);
                    }
                    if key == "$and" {
                        Node::All(children)
                    } else {
                        Node::Any(children)
                    }
                }
                "$not" => {
                    let item =
                        value.as_object().ok_or_else(|| error(&here, "must be a filter object"))?;
                    Node::Not(Box::new(self.object(item, &here, depth + 1)?))
                }
                operator if operator.starts_with('$') => {
                    return Err(error(
                        &here,
                        "is not a combinator: use $and, $or or $not here, or a field path",
                    ))
                }
                path => self.field(parse_path(path, &here)?, value, &here)?,
            };
            nodes.push(node);
        }
        Ok(if nodes.len() == 1 { nodes.remove(0) } else { Node::All(nodes) })
    }

    /// The tests on one path: a literal (equality) or an object of operators.
    fn field(&mut self, path: Vec<Segment>, value: &Value, at: &str) -> Result<Node, FilterError> {
        let operators = match value {
            Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
            literal => return self.test(path, Test::Eq(literal.clone()), at),
        };
        if operators.keys().any(|k| !k.starts_with('$')) {
            return Err(error(
                at,
                "mixes operators and fields: give either operators ($eq, $gte, …) or a literal",
            ));
        }
        let mut tests = Vec::with_capacity(operators.len());
        for (operator, operand) in operators {
            let here = format!("{at}.{operator}");
            let test = parse_test(operator, operand, &here)?;
            tests.push(self.test(path.clone(), test, &here)?);
        }
        Ok(if tests.len() == 1 { tests.remove(0) } else { Node::All(tests) })
    }

    fn test(&mut self, path: Vec<Segment>, test: Test, at: &str) -> Result<Node, FilterError> {
        self.tests += 1;
        if self.tests > TESTS_MAX {
            return Err(error(at, format!("is one test too many (at most {TESTS_MAX})")));
        }
        Ok(Node::Field { path, test })
    }
}

fn parse_path(path: &str, at: &str) -> Result<Vec<Segment>, FilterError> {
    if path.split('.').any(str::is_empty) {
        return Err(error(at, "is not a path: dotted names into data, e.g. agent.tier"));
    }
    Ok(path
        .split('.')
        .map(|key| Segment { key: key.to_string(), index: key.parse().ok() })
        .collect())
}

fn parse_test(operator: &str, operand: &Value, at: &str) -> Result<Test, FilterError> {
    let list =
        || operand.as_array().cloned().ok_or_else(|| error(at, "must be an array of values"));
    let bound = || match operand {
        Value::Number(n) => {
            n.as_f64().map(Bound::Number).ok_or_else(|| error(at, "is not a number"))
        }
        Value::String(s) => Ok(Bound::Text(s.clone())),
        _ => Err(error(at, "must be a number or a string")),
    };
    let compare = |comparison| bound().map(|b| Test::Compare(comparison, b));
    match operator {
        "$eq" => Ok(Test::Eq(operand.clone())),
        "$neq" => Ok(Test::Neq(operand.clone())),
        "$in" => list().map(Test::In),
        "$nin" => list().map(Test::Nin),
        "$gt" => compare(Comparison::Gt),
        "$gte" => compare(Comparison::Gte),
        "$lt" => compare(Comparison::Lt),
        "$lte" => compare(Comparison::Lte),
        "$exists" => {
            operand.as_bool().map(Test::Exists).ok_or_else(|| error(at, "must be true or false"))
        }
        "$contains" => Ok(Test::Contains(operand.clone())),
        _ => Err(error(at, format!("is not an operator; use one of {OPERATORS}"))),
    }
}

impl Node {
    fn eval(&self, data: &Value) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|node| node.eval(data)),
            Node::Any(nodes) => nodes.iter().any(|node| node.eval(data)),
            Node::Not(node) => !node.eval(data),
            Node::Field { path, test } => test.eval(lookup(data, path)),
        }
    }
}

fn lookup<'a>(data: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(data, |value, segment| match value {
        Value::Object(map) => map.get(&segment.key),
        Value::Array(items) => segment.index.and_then(|i| items.get(i)),
        _ => None,
    })
}

impl Test {
    fn eval(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Test::Exists(wanted), value) => value.is_some() == *wanted,
            (Test::Neq(operand), value) => !value.is_some_and(|v| json_eq(v, operand)),
            (Test::Nin(operands), value) => {
                !value.is_some_and(|v| operands.iter().any(|o| json_eq(v, o)))
            }
            (_, None) => false,
            (Test::Eq(operand), Some(value)) => json_eq(value, operand),
            (Test::In(operands), Some(value)) => operands.iter().any(|o| json_eq(value, o)),
            (Test::Compare(comparison, bound), Some(value)) => {
                let ordering = match (value, bound) {
                    (Value::Number(n), Bound::Number(b)) => {
                        n.as_f64().and_then(|n| n.partial_cmp(b))
                    }
                    (Value::String(s), Bound::Text(b)) => Some(s.as_str().cmp(b.as_str())),
                    _ => None,
                };
                ordering.is_some_and(|ordering| match comparison {
                    Comparison::Gt => ordering == Ordering::Greater,
                    Comparison::Gte => ordering != Ordering::Less,
                    Comparison::Lt => ordering == Ordering::Less,
                    Comparison::Lte => ordering != Ordering::Greater,
                })
            }
            (Test::Contains(operand), Some(value)) => match (value, operand) {
                (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                (Value::Array(items), operand) => items.iter().any(|item| json_eq(item, operand)),
                _ => false,
            },
        }
    }
}

/// JSON equality, numbers by value.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
