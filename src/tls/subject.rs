//! A client certificate's subject as OPA names the caller with TLS
//! authentication: Go's `Subject.ToRDNSequence().String()`. Go rebuilds the
//! sequence from the fields it knows, in a fixed order (C, ST, L, STREET,
//! POSTALCODE, O, OU, CN, SERIALNUMBER; every value of one field in one
//! multi-valued RDN; other attributes dropped), then prints it reversed,
//! RFC 2253 style: `CN=client,OU=a+OU=b,O=Example,C=GB`.

use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The fields Go's `pkix.Name` keeps, in `ToRDNSequence` order: OID, name,
/// and whether the field holds one value (the last one seen) or all.
const FIELDS: [(&str, &str, bool); 9] = [
    ("2.5.4.6", "C", false),
    ("2.5.4.8", "ST", false),
    ("2.5.4.7", "L", false),
    ("2.5.4.9", "STREET", false),
    ("2.5.4.17", "POSTALCODE", false),
    ("2.5.4.10", "O", false),
    ("2.5.4.11", "OU", false),
    ("2.5.4.3", "CN", true),
    ("2.5.4.5", "SERIALNUMBER", true),
];

/// The identity of the certificate `der`, or `None` when it does not parse.
pub fn identity(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut values: Vec<Vec<String>> = vec![Vec::new(); FIELDS.len()];
    for rdn in cert.subject().iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let Some(field) = FIELDS.iter().position(|(id, _, _)| *id == oid) else {
                continue;
            };
            // Go keeps only values it reads as strings.
            let Some(value) = go_string(atv.attr_value()) else {
                continue;
            };
            if FIELDS[field].2 {
                values[field] = vec![value];
            } else {
                values[field].push(value);
            }
        }
    }
    let rdns: Vec<String> = FIELDS
        .iter()
        .zip(&values)
        .rev()
        // Go leaves out an empty CN or SERIALNUMBER, and fields without values.
        .filter(|((_, _, single), values)| match values.as_slice() {
            [] => false,
            [only] if *single => !only.is_empty(),
            _ => true,
        })
        .map(|((_, name, _), values)| {
            values
                .iter()
                .map(|v| format!("{name}={}", escape(v)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.join(","))
}

/// A value as Go's `asn1` reads it into a string: the string types it
/// knows, BMPString (UTF-16) and T61String (bytes as Latin-1) included;
/// `None` for anything else, which Go leaves out of the name.
fn go_string(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::NumericString | Tag::PrintableString | Tag::Utf8String | Tag::Ia5String => {
            std::str::from_utf8(data).ok().map(str::to_string)
        }
        Tag::BmpString => {
            let units = data
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// Go's escaping of a value: `,+"\<>;` always, a space first or last, a `#`
/// first.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let escaped = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => i == 0 || i == last,
            '#' => i == 0,
            _ => false,
        };
        if escaped {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape, go_string, Any, Tag};

    #[test]
    fn values_are_read_as_go_reads_them() {
        let read = |tag, data: &[u8]| go_string(&Any::from_tag_and_data(tag, data));
        assert_eq!(
            read(Tag::PrintableString, b"alice").as_deref(),
            Some("alice")
        );
        assert_eq!(
            read(Tag::BmpString, &[0, 0x41, 0, 0xe9]).as_deref(),
            Some("A\u{e9}")
        );
        assert_eq!(
            read(Tag::T61String, &[0x41, 0xe9]).as_deref(),
            Some("A\u{e9}")
        );
        assert_eq!(read(Tag::Integer, &[1]), None);
    }

    #[test]
    fn values_are_escaped_as_go_escapes_them() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#x#"), "\\#x#");
        assert_eq!(escape("a b"), "a b");
    }
}
