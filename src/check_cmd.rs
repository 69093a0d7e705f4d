//! `regent check` (OPA's `opa check`): parse every module and compile them
//! together, printing each error as `file:row:col: code: message`.

use anyhow::Result;

use regorus::Source;

use crate::cli::{CheckArgs, OutputFormat};
use crate::policy::diagnostic::CodedDiagnostic;
use crate::policy::{nesting, Diagnostic, Snapshot, Sources};

/// Runs `regent check`; returns false when there were errors.
pub fn run(args: &CheckArgs) -> Result<bool> {
    let errors = check(&args.paths)?;
    match args.format {
        OutputFormat::Pretty => {
            for (code, d) in &errors {
                match &d.location {
                    Some(l) => eprintln!("{}:{}:{}: {code}: {}", l.file, l.row, l.col, d.message),
                    None => eprintln!("{code}: {}", d.message),
                }
            }
            if !errors.is_empty() {
                eprintln!(
                    "{} error{} found",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
            }
        }
        OutputFormat::Json => {
            let list: Vec<CodedDiagnostic> =
                errors.iter().map(|(code, d)| d.with_code(code)).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "errors": list }))?
            );
        }
    }
    Ok(errors.is_empty())
}

/// Every parse error of every module; when all parse, the compile errors.
pub fn check<S: AsRef<str>>(paths: &[S]) -> Result<Vec<(&'static str, Diagnostic)>> {
    let sources = Sources::load_paths(paths)?;
    let mut errors = Vec::new();
    for m in &sources.modules {
        let parsed = Source::from_contents(m.id.clone(), m.text.clone())
            .and_then(|source| nesting::parse_module(&source).map(|_| ()));
        if let Err(err) = parsed {
            errors.push(("rego_parse_error", Diagnostic::from_regorus(&err)));
        }
    }
    if errors.is_empty() {
        if let Err(err) = Snapshot::build(sources) {
            let diagnostic = Diagnostic::from_regorus(&err);
            errors.push((diagnostic.compile_code(), diagnostic));
        }
    }
    Ok(errors)
}
