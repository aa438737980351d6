//! COPY FROM STDIN and COPY TO STDOUT, in PostgreSQL's text, CSV and binary formats.
//!
//! Invariants:
//! - COPY FROM is streamed: CopyData chunks are split into records as they arrive (a
//!   record may span chunks, a CSV field may span lines), and rows go to the SQL
//!   layer's [`CopyIn`], which commits them as one batch only at CopyDone. A
//!   CopyFail, a bad row or a vanished client leaves nothing visible.
//! - COPY TO is streamed: rows are formatted batch by batch into CopyData messages;
//!   the whole result is never held.

use hindsight_sql::ast::{
    CopyLegacyOption, CopyOption, CopySource, CopyTarget, ObjectNamePart, Statement,
};
use hindsight_sql::normalize_ident;

use crate::sqlstate::WireError;

mod binary;
mod csv;
mod options;
mod parser;
mod record;
mod text;

pub use binary::BinaryParser;
pub(crate) use binary::{write_header, write_trailer, write_tuple};
pub(crate) use options::unsupported;
pub use options::{CopyFormat, CopyOptions};
pub use parser::{RecordParser, format_record};

/// A COPY between a client and a table or query.
#[derive(Clone, Debug)]
pub struct CopyCommand {
    pub from_client: bool,
    pub source: CopySource,
    pub options: CopyOptions,
}

impl CopyCommand {
    /// A COPY statement's command, or None for any other statement.
    pub fn recognize(stmt: &Statement) -> Option<Result<CopyCommand, WireError>> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return None;
        };
        Some(Self::build(source, *to, target, options, legacy_options))
    }

    fn build(
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<CopyCommand, WireError> {
        match (to, target) {
            (false, CopyTarget::Stdin) | (true, CopyTarget::Stdout) => {}
            _ => {
                return Err(unsupported(
                    "COPY to or from a server file or program is not supported",
                ));
            }
        }
        if !to && matches!(source, CopySource::Query(_)) {
            return Err(unsupported("COPY FROM needs a table"));
        }
        let o = CopyOptions::parse(options, legacy)?;
        Ok(CopyCommand {
            from_client: !to,
            source: source.clone(),
            options: o,
        })
    }

    /// The table's name (normalized parts) and the columns listed.
    pub(crate) fn table(&self) -> Option<(Vec<String>, Vec<String>)> {
        match &self.source {
            CopySource::Table {
                table_name,
                columns,
            } => {
                let name = table_name
                    .0
                    .iter()
                    .map(|p| match p {
                        ObjectNamePart::Identifier(i) => Some(normalize_ident(i)),
                        ObjectNamePart::Function(_) => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some((name, columns.iter().map(normalize_ident).collect()))
            }
            CopySource::Query(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::options::CopyFormat;
    use super::parser::{codec, split_plain};
    use super::record::Record;
    use super::*;

    fn opts(csv: bool) -> CopyOptions {
        CopyOptions {
            format: if csv {
                CopyFormat::Csv
            } else {
                CopyFormat::Text
            },
            delimiter: if csv { b',' } else { b'\t' },
            null: if csv { String::new() } else { "\\N".into() },
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn owned(r: &Record) -> Vec<Option<String>> {
        r.fields().map(|f| f.map(str::to_string)).collect()
    }

    fn all(p: &mut RecordParser) -> Vec<Vec<Option<String>>> {
        let mut v = Vec::new();
        while let Some((r, _)) = p.next_record(true).unwrap() {
            v.push(owned(r));
        }
        v
    }

    #[test]
    fn text_records_unescape_and_span_chunks() {
        let mut p = RecordParser::new(opts(false));
        p.feed(b"1\ta\\tb\t\\N\n2\tx");
        assert_eq!(
            p.next_record(false)
                .unwrap()
                .map(|(r, line)| (owned(r), line)),
            Some((vec![Some("1".into()), Some("a\tb".into()), None], 1))
        );
        // The second line is incomplete until more data or the end arrives.
        assert!(p.next_record(false).unwrap().is_none());
        p.feed(b"y\t\\\\z\n\\.\n");
        assert_eq!(
            all(&mut p),
            vec![vec![
                Some("2".into()),
                Some("xy".into()),
                Some("\\z".into())
            ]]
        );
    }

    #[test]
    fn csv_quotes_nulls_and_embedded_newlines() {
        let mut o = opts(true);
        o.header = true;
        let mut p = RecordParser::new(o);
        p.feed(b"id,name,note\r\n1,\"a,b\",\n2,\"\",\"line1\nline2 \"\"q\"\"\"\n");
        assert_eq!(
            all(&mut p),
            vec![
                vec![Some("1".into()), Some("a,b".into()), None],
                vec![
                    Some("2".into()),
                    Some("".into()),
                    Some("line1\nline2 \"q\"".into())
                ],
            ]
        );
    }

    #[test]
    fn text_escapes_octal_hex_multibyte_and_trailing_backslash() {
        let mut p = RecordParser::new(opts(false));
        // \101 and \x41 are 'A'; \x without digits is 'x'; \é is 'é'; an escaped
        // newline stays inside the record; a trailing lone backslash is dropped.
        p.feed("\\101\\x41\\xg\t\\é\\\nz\tend\\".as_bytes());
        assert_eq!(
            all(&mut p),
            vec![vec![
                Some("AAxg".into()),
                Some("é\nz".into()),
                Some("end".into())
            ]]
        );
    }

    #[test]
    fn csv_custom_escape_and_quoted_null_string() {
        let mut o = opts(true);
        o.escape = b'\\';
        o.null = "NA".into();
        let mut p = RecordParser::new(o);
        p.feed(b"\"a\\\"b\",NA,\"NA\",\"x,y\"\nlast,\"\"");
        assert_eq!(
            all(&mut p),
            vec![
                vec![
                    Some("a\"b".into()),
                    None,
                    Some("NA".into()),
                    Some("x,y".into())
                ],
                vec![Some("last".into()), Some("".into())],
            ]
        );
    }

    #[test]
    fn plain_records_split_as_the_general_splitters_do() {
        let lines = [
            "",
            "a",
            ",",
            "1,,x",
            "a,b,",
            ",NA,\tq",
            "é,ü\tÿ",
            "NA",
            "\\N\t,",
        ];
        for csv in [false, true] {
            for null in ["", "NA", "\\N"] {
                for delimiter in [b',', b'\t'] {
                    let mut o = opts(csv);
                    o.null = null.into();
                    o.delimiter = delimiter;
                    for line in lines {
                        if line.contains('\\') && !csv {
                            continue; // not plain in text format
                        }
                        let (mut fast, mut slow) = (Record::default(), Record::default());
                        split_plain(&o, line, &mut fast);
                        codec(&o.format).split(&o, line, &mut slow);
                        assert_eq!(owned(&fast), owned(&slow), "{line:?} csv={csv} {null:?}");
                    }
                }
            }
        }
        // Whether a record is plain decides the splitter.
        let o = opts(true);
        assert_eq!(
            codec(&o.format).record_end(&o, b"1,2\n3", false),
            Some((3, 4, true))
        );
        assert_eq!(
            codec(&o.format).record_end(&o, b"1,\"a\nb\"\n", false),
            Some((7, 8, false))
        );
        assert_eq!(
            codec(&o.format).record_end(&o, b"\"x\"", true),
            Some((3, 3, false))
        );
        let o = opts(false);
        assert_eq!(
            codec(&o.format).record_end(&o, b"1\t\\N\n", false),
            Some((4, 5, false))
        );
        assert_eq!(
            codec(&o.format).record_end(&o, b"1\t2", true),
            Some((3, 3, true))
        );
    }

    #[test]
    fn formatted_records_parse_back() {
        for csv in [false, true] {
            let o = opts(csv);
            let rec = vec![Some("a\tb,\"c\"\nd".to_string()), None, Some(String::new())];
            let mut out = BytesMut::new();
            format_record(&o, &rec, &mut out);
            let mut p = RecordParser::new(o);
            p.feed(&out);
            assert_eq!(all(&mut p), vec![rec], "csv={csv}");
        }
    }
}
