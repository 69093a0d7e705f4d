//! Test reports in OPA's shapes: text (failures, or every test with `-v`,
//! then `PASS: N/M` and friends) and JSON (one object per test).

use std::io::Write;

use serde::Serialize;

use super::{TestResult, Verdict};

const RULE: &str =
    "--------------------------------------------------------------------------------";

pub fn text(out: &mut impl Write, results: &[TestResult], verbose: bool) -> std::io::Result<()> {
    let mut shown_file: Option<&str> = None;
    let mut any_shown = false;
    for r in results {
        let show = verbose || matches!(r.verdict, Verdict::Fail | Verdict::Error(_));
        if !show {
            continue;
        }
        if shown_file != Some(r.case.file.as_str()) {
            if any_shown {
                writeln!(out)?;
            }
            writeln!(out, "{}:", r.case.file)?;
            shown_file = Some(&r.case.file);
        }
        any_shown = true;
        let word = match &r.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error(_) => "ERROR",
            Verdict::Skip => "SKIPPED",
        };
        writeln!(
            out,
            "{}:{}: {}: {word} ({:?})",
            r.case.file,
            r.case.row,
            r.case.full_name(),
            r.duration
        )?;
        if let Verdict::Error(message) = &r.verdict {
            writeln!(out, "  {message}")?;
        }
    }
    if any_shown {
        writeln!(out, "{RULE}")?;
    }
    let total = results.len();
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|r| f(&r.verdict)).count();
    let pass = count(|v| matches!(v, Verdict::Pass));
    let fail = count(|v| matches!(v, Verdict::Fail));
    let error = count(|v| matches!(v, Verdict::Error(_)));
    let skip = count(|v| matches!(v, Verdict::Skip));
    if pass > 0 || total == 0 {
        writeln!(out, "PASS: {pass}/{total}")?;
    }
    if fail > 0 {
        writeln!(out, "FAIL: {fail}/{total}")?;
    }
    if skip > 0 {
        writeln!(out, "SKIPPED: {skip}/{total}")?;
    }
    if error > 0 {
        writeln!(out, "ERROR: {error}/{total}")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonLocation<'a> {
    file: &'a str,
    row: u32,
    col: u32,
}

#[derive(Serialize)]
struct JsonResult<'a> {
    location: JsonLocation<'a>,
    package: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fail: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip: bool,
    duration: u128,
}

#[derive(Serialize)]
struct JsonError<'a> {
    code: &'static str,
    message: &'a str,
}

pub fn json(out: &mut impl Write, results: &[TestResult]) -> std::io::Result<()> {
    let items: Vec<JsonResult> = results
        .iter()
        .map(|r| JsonResult {
            location: JsonLocation {
                file: &r.case.file,
                row: r.case.row,
                col: r.case.col,
            },
            package: &r.case.package,
            name: &r.case.name,
            fail: r.verdict == Verdict::Fail,
            error: match &r.verdict {
                Verdict::Error(message) => Some(JsonError {
                    code: "eval_internal_error",
                    message,
                }),
                _ => None,
            },
            skip: r.verdict == Verdict::Skip,
            duration: r.duration.as_nanos(),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &items)?;
    writeln!(out)
}
