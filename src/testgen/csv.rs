//! A small CSV reader for the decision tables (RFC 4180): quoted fields,
//! doubled quotes inside them, LF or CRLF line ends, a last line with or
//! without its newline. Blank lines are skipped.

use anyhow::{bail, Result};

/// One record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits `text` into records of fields.
pub fn parse(text: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => bail!("line {start}: unterminated quoted field"),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',' | '\n' | '\r') => {}
                        Some(c) => bail!("line {line}: unexpected {c:?} after a quoted field"),
                    }
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
        if !blank {
            records.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text).unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn quoted_fields_doubled_quotes_and_line_ends() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",\n\nlast,\"\",z";
        assert_eq!(
            fields(text),
            vec![
                vec!["a", "b", "c"],
                vec!["x, y", "say \"hi\"", ""],
                vec!["last", "", "z"],
            ]
        );
        let records = parse(text).unwrap();
        assert_eq!(records[2].line, 4);
    }

    #[test]
    fn quoted_newlines_and_errors() {
        assert_eq!(fields("\"a\nb\",c\n"), vec![vec!["a\nb", "c"]]);
        assert!(parse("\"open").is_err());
        assert!(parse("\"a\"b,c").is_err());
    }
}
