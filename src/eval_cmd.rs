//! `regent eval` (OPA's `opa eval`): evaluate one query against policy and
//! data files and print the OPA-shaped result set.

use std::io::Read;

use anyhow::{anyhow, Context, Result};
use regorus::Value;

use crate::cli::{EvalArgs, OutputFormat};
use crate::policy::{Diagnostic, Sources};

/// Runs `regent eval`; returns false when `--fail`/`--fail-defined` asks for exit 1.
pub fn run(args: &EvalArgs) -> Result<bool> {
    let sources = Sources::load_paths(&args.data)?;
    let mut engine = sources.interpreter()?;
    engine.set_strict_builtin_errors(args.strict_builtin_errors);
    if let Some(input) = read_input(args)? {
        engine.set_input(input);
    }
    regorus::Source::from_contents(String::new(), args.query.clone())
        .and_then(|source| crate::policy::nesting::parse_query(&source))
        .map_err(|e| anyhow!("{}", Diagnostic::from_regorus(&e)))?;
    let results = engine
        .eval_query(args.query.clone(), false)
        .map_err(|e| anyhow!("{}", Diagnostic::from_regorus(&e)))?;
    let defined = !results.result.is_empty();
    match args.format {
        OutputFormat::Json => {
            let text = if defined {
                serde_json::to_string_pretty(&results)?
            } else {
                "{}".to_string()
            };
            println!("{text}");
        }
        OutputFormat::Pretty => {
            if !defined {
                println!("undefined");
            }
            for row in &results.result {
                for expr in &row.expressions {
                    println!("{}", serde_json::to_string_pretty(&expr.value)?);
                }
                if !row.bindings.is_empty_object() {
                    println!("{}", serde_json::to_string_pretty(&row.bindings)?);
                }
            }
        }
    }
    Ok(!(args.fail && !defined || args.fail_defined && defined))
}

fn read_input(args: &EvalArgs) -> Result<Option<Value>> {
    let (name, text) = if args.stdin_input {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        ("standard input".to_string(), text)
    } else if let Some(path) = &args.input {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        (path.display().to_string(), text)
    } else {
        return Ok(None);
    };
    let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    let value = if is_yaml {
        Value::from_yaml_str(&text)
    } else {
        Value::from_json_str(&text)
    };
    value.map(Some).map_err(|e| anyhow!("{name}: {e}"))
}

trait EmptyObject {
    fn is_empty_object(&self) -> bool;
}

impl EmptyObject for Value {
    fn is_empty_object(&self) -> bool {
        match self {
            Value::Object(o) => o.is_empty(),
            Value::Undefined => true,
            _ => false,
        }
    }
}
