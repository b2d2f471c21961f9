//! The little language of `filter --where`: comparisons of a row's fields and measures,
//! joined with `and`, `or`, `not` and parentheses.
//!
//! ```text
//! turns >= 4 and source == 'smoltalk'      chars < 20000 or not (lang == "en")
//! meta.score > 0.5                          completion contains 'http'
//! ```
//!
//! A name is one of the measures (`chars`, `turns`, `tokens` with a tokenizer, `format`),
//! else a field of the row, with dots for nested objects. Numbers compare as numbers,
//! strings as strings; a field the row does not have (or of another type) makes the
//! comparison false. A bare name is true when the field is `true`, a non-zero number or a
//! non-empty string.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare(String, Op, Value),
    Truthy(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Literal(Value),
    Op(Op),
    Open,
    Close,
    And,
    Or,
    Not,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or_else(|| format!("a string opened at character {} is not closed", i + 1))?;
            let s: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push(Token::Literal(Value::String(s)));
            i += end + 2;
        } else if "=!<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (op, len) = match two.as_str() {
                "==" => (Op::Eq, 2),
                "!=" => (Op::Ne, 2),
                "<=" => (Op::Le, 2),
                ">=" => (Op::Ge, 2),
                _ if c == '<' => (Op::Lt, 1),
                _ if c == '>' => (Op::Gt, 1),
                _ if c == '=' => (Op::Eq, 1),
                _ => {
                    return Err(format!(
                        "`{c}` at character {} is not an operator (==, !=, <, <=, >, >=)",
                        i + 1
                    ))
                }
            };
            out.push(Token::Op(op));
            i += len;
        } else if c.is_ascii_digit() || c == '-' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || ".-+_".contains(chars[i]))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let n: f64 = word
                .replace('_', "")
                .parse()
                .map_err(|_| format!("`{word}` is not a number"))?;
            out.push(Token::Literal(serde_json::json!(n)));
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "_.-".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.to_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                "contains" => Token::Op(Op::Contains),
                "true" => Token::Literal(Value::Bool(true)),
                "false" => Token::Literal(Value::Bool(false)),
                "null" => Token::Literal(Value::Null),
                _ => Token::Name(word),
            });
        } else {
            return Err(format!("unexpected `{c}` at character {}", i + 1));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Open) => {
                let e = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(e),
                    _ => Err("a `(` is not closed".into()),
                }
            }
            Some(Token::Name(name)) => match self.peek() {
                Some(Token::Op(op)) => {
                    let op = *op;
                    self.at += 1;
                    match self.next() {
                        Some(Token::Literal(v)) => Ok(Expr::Compare(name, op, v)),
                        _ => Err(format!(
                            "`{name}` is compared with nothing: put a number or a quoted string after the operator"
                        )),
                    }
                }
                _ => Ok(Expr::Truthy(name)),
            },
            Some(Token::Literal(v)) => Err(format!(
                "{v} where a field name was expected (write `FIELD == {v}`)"
            )),
            Some(other) => Err(format!("unexpected {other:?}")),
            None => Err("the expression ends too early".into()),
        }
    }
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        if p.tokens.is_empty() {
            return Err("the expression is empty".into());
        }
        let e = p.or()?;
        if p.at < p.tokens.len() {
            return Err(format!(
                "unexpected {:?} after a complete expression (join conditions with `and` or `or`)",
                p.tokens[p.at]
            ));
        }
        Ok(e)
    }

    /// The names the expression reads.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Expr::Compare(n, _, _) | Expr::Truthy(n) => vec![n.as_str()],
            Expr::Not(e) => e.names(),
            Expr::And(a, b) | Expr::Or(a, b) => {
                let mut v = a.names();
                v.extend(b.names());
                v
            }
        }
    }

    /// Whether the expression holds; `lookup` gives a name's value (`None`: missing).
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Expr::Not(e) => !e.eval(lookup),
            Expr::And(a, b) => a.eval(lookup) && b.eval(lookup),
            Expr::Or(a, b) => a.eval(lookup) || b.eval(lookup),
            Expr::Truthy(name) => match lookup(name) {
                Some(Value::Bool(b)) => b,
                Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                _ => false,
            },
            Expr::Compare(name, op, want) => {
                let Some(have) = lookup(name) else {
                    return false;
                };
                compare(&have, *op, want)
            }
        }
    }
}

fn compare(have: &Value, op: Op, want: &Value) -> bool {
    use std::cmp::Ordering;
    if op == Op::Contains {
        return match (have, want) {
            (Value::String(h), Value::String(w)) => h.contains(w.as_str()),
            (Value::Array(items), w) => items.contains(w),
            _ => false,
        };
    }
    let ordering = match (have, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(o) = ordering else {
        return op == Op::Ne;
    };
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Contains => unreachable!(),
    }
}

/// A field of a row by a dotted path (`meta.score`).
pub fn field(row: &Value, path: &str) -> Option<Value> {
    let mut v = row;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    Some(v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_evaluates() {
        let row = json!({"source": "a", "meta": {"score": 0.7}, "ok": true});
        let look = |n: &str| match n {
            "turns" => Some(json!(4)),
            _ => field(&row, n),
        };
        let holds = |e: &str| Expr::parse(e).unwrap().eval(&look);
        assert!(holds("turns >= 4 and source == 'a'"));
        assert!(!holds("turns > 4 or source != \"a\""));
        assert!(holds("not (meta.score < 0.5) and ok"));
        assert!(!holds("missing == 1"));
        assert!(holds("source contains 'a'"));
        for bad in [
            "",
            "turns >",
            "(turns > 1",
            "turns > 1 turns",
            "'a' == source",
            "x ! 1",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }
}
