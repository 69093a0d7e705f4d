//! The `Limit` column: a Python condition on the resource, in the few forms
//! the tables use: `resource["a"]["b"] <op> <value>` with `==`, `!=`, `in`,
//! `not in`, and values that are strings, `None`, or lists of those.

use anyhow::{bail, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
}

/// A parsed condition. `None` in `values` is Python's `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub path: Vec<String>,
    pub op: Op,
    pub values: Vec<Option<String>>,
}

impl Limit {
    pub fn parse(text: &str) -> Result<Limit> {
        let mut p = Parser { s: text.trim() };
        if !p.eat("resource") {
            bail!("limit {text:?}: must start with `resource`");
        }
        let mut path = Vec::new();
        while p.eat("[") {
            match p.value()? {
                Some(key) => path.push(key),
                None => bail!("limit {text:?}: a key must be a string"),
            }
            if !p.eat("]") {
                bail!("limit {text:?}: expected `]`");
            }
        }
        if path.is_empty() {
            bail!("limit {text:?}: expected `resource[...]`");
        }
        let op = if p.eat("==") {
            Op::Eq
        } else if p.eat("!=") {
            Op::Ne
        } else if p.eat("not in") {
            Op::NotIn
        } else if p.eat("in") {
            Op::In
        } else {
            bail!("limit {text:?}: expected ==, !=, in or not in");
        };
        let values = match op {
            Op::Eq | Op::Ne => vec![p.value()?],
            Op::In | Op::NotIn => p.list()?,
        };
        if !p.s.trim().is_empty() {
            bail!("limit {text:?}: unexpected {:?}", p.s.trim());
        }
        Ok(Limit { path, op, values })
    }

    /// Evaluates the condition on `resource` (a missing key or a non-object
    /// on the way reads as `None`; non-string values compare as their JSON).
    pub fn holds(&self, resource: &Value) -> bool {
        let mut v = resource;
        for key in &self.path {
            v = v.get(key).unwrap_or(&Value::Null);
        }
        let actual = match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let found = self.values.contains(&actual);
        match self.op {
            Op::Eq | Op::In => found,
            Op::Ne | Op::NotIn => !found,
        }
    }
}

struct Parser<'a> {
    s: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, token: &str) -> bool {
        let rest = self.s.trim_start();
        match rest.strip_prefix(token) {
            Some(after) => {
                self.s = after;
                true
            }
            None => false,
        }
    }

    /// A string literal or `None`.
    fn value(&mut self) -> Result<Option<String>> {
        if self.eat("None") {
            return Ok(None);
        }
        let rest = self.s.trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            bail!("expected a string or None at {rest:?}");
        };
        let body = &rest[1..];
        let Some(end) = body.find(quote) else {
            bail!("unterminated string at {rest:?}");
        };
        self.s = &body[end + 1..];
        Ok(Some(body[..end].to_string()))
    }

    fn list(&mut self) -> Result<Vec<Option<String>>> {
        if !self.eat("[") {
            bail!("expected a list at {:?}", self.s);
        }
        let mut out = Vec::new();
        if self.eat("]") {
            return Ok(out);
        }
        loop {
            out.push(self.value()?);
            if self.eat("]") {
                return Ok(out);
            }
            if !self.eat(",") {
                bail!("expected `,` or `]` at {:?}", self.s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_forms() {
        let ne = Limit::parse(r#"resource["role"] != "owner""#).unwrap();
        assert_eq!(ne.path, vec!["role"]);
        assert!(ne.holds(&json!({"role": "worker"})));
        assert!(!ne.holds(&json!({"role": "owner"})));

        let not_in = Limit::parse(r#"resource["role"] not in ["maintainer", "owner"]"#).unwrap();
        assert_eq!(not_in.op, Op::NotIn);
        assert!(not_in.holds(&json!({"role": "supervisor"})));
        assert!(!not_in.holds(&json!({"role": "maintainer"})));

        let none = Limit::parse(r#"resource["membership"]["role"] != None"#).unwrap();
        assert_eq!(none.values, vec![None]);
        assert!(none.holds(&json!({"membership": {"role": "worker"}})));
        assert!(!none.holds(&json!({"membership": {"role": null}})));
        assert!(!none.holds(&json!({"membership": null})));

        let is_in = Limit::parse("resource['role'] in ['owner', None]").unwrap();
        assert!(is_in.holds(&json!({})));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "role != 'owner'",
            "resource != 'x'",
            "resource['role'] < 'x'",
            "resource['role'] == 'x' and True",
            "resource[1] == 'x'",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
    }
}
