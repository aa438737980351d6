//! The options of a COPY statement: format (text, csv, binary), delimiter, NULL
//! string, header, quote and escape, read from the statement's modern (`WITH (...)`) and legacy
//! (`CSV HEADER ...`) option lists. A leaf of the COPY modules.

use hindsight_sql::SqlError;
use hindsight_sql::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption};

use crate::sqlstate::WireError;

/// The error for a COPY form or option Hindsight does not take.
pub(crate) fn unsupported(what: &str) -> WireError {
    SqlError::unsupported(what.to_string())
        .with_hint(
            "use COPY ... FROM STDIN or COPY ... TO STDOUT (psql: \\copy) with FORMAT text, csv or binary",
        )
        .into()
}

#[derive(Clone, Debug, PartialEq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// PostgreSQL's binary format ([`super::binary`]); takes none of the other options.
    Binary,
}

/// Options of a COPY statement.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyOptions {
    /// The options a statement sets, over PostgreSQL's defaults (text: tab and
    /// `\N`; csv: comma and the empty string, unless set explicitly).
    pub(crate) fn parse(
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Result<CopyOptions, WireError> {
        let mut b = Builder {
            o: CopyOptions {
                format: CopyFormat::Text,
                delimiter: b'\t',
                null: "\\N".into(),
                header: false,
                quote: b'"',
                escape: b'"',
            },
            delimiter: None,
            null: None,
            set: Vec::new(),
        };
        for opt in options {
            b.modern(opt)?;
        }
        for opt in legacy {
            b.legacy(opt)?;
        }
        b.finish()
    }
}

/// Options as they are read: delimiter and NULL are kept apart until the format
/// (which sets their defaults) is known.
struct Builder {
    o: CopyOptions,
    delimiter: Option<u8>,
    null: Option<String>,
    /// The text-format options set explicitly (BINARY takes none of them).
    set: Vec<&'static str>,
}

impl Builder {
    fn modern(&mut self, opt: &CopyOption) -> Result<(), WireError> {
        match opt {
            CopyOption::Format(f) => {
                self.o.format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(unsupported(&format!(
                            "COPY format \"{other}\" is not supported"
                        )));
                    }
                }
            }
            CopyOption::Delimiter(c) => self.delimiter = Some(byte(*c, "delimiter")?),
            CopyOption::Null(s) => self.null = Some(s.clone()),
            CopyOption::Header(h) => self.header(*h),
            CopyOption::Quote(c) => self.quote(byte(*c, "quote")?),
            CopyOption::Escape(c) => self.escape(byte(*c, "escape")?),
            CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            other => return Err(not_taken(other)),
        }
        Ok(())
    }

    fn legacy(&mut self, opt: &CopyLegacyOption) -> Result<(), WireError> {
        match opt {
            CopyLegacyOption::Csv(csv) => {
                self.o.format = CopyFormat::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => self.header(true),
                        CopyLegacyCsvOption::Quote(q) => self.quote(byte(*q, "quote")?),
                        CopyLegacyCsvOption::Escape(e) => self.escape(byte(*e, "escape")?),
                        other => return Err(not_taken(other)),
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => self.delimiter = Some(byte(*c, "delimiter")?),
            CopyLegacyOption::Null(s) => self.null = Some(s.clone()),
            CopyLegacyOption::Header => self.header(true),
            CopyLegacyOption::Binary => self.o.format = CopyFormat::Binary,
            other => return Err(not_taken(other)),
        }
        Ok(())
    }

    fn header(&mut self, on: bool) {
        self.o.header = on;
        self.set.push("HEADER");
    }

    fn quote(&mut self, q: u8) {
        self.o.quote = q;
        self.set.push("QUOTE");
    }

    fn escape(&mut self, e: u8) {
        self.o.escape = e;
        self.set.push("ESCAPE");
    }

    fn finish(self) -> Result<CopyOptions, WireError> {
        if self.o.format == CopyFormat::Binary {
            let set = self.set.iter().copied();
            let text_only = set
                .chain(self.delimiter.map(|_| "DELIMITER"))
                .chain(self.null.as_ref().map(|_| "NULL"))
                .next();
            if let Some(name) = text_only {
                return Err(
                    SqlError::syntax(format!("cannot specify {name} in BINARY mode")).into(),
                );
            }
        }
        let mut o = self.o;
        if o.format == CopyFormat::Csv {
            o.delimiter = b',';
            o.null = String::new();
        }
        if let Some(d) = self.delimiter {
            o.delimiter = d;
        }
        if let Some(n) = self.null {
            o.null = n;
        }
        Ok(o)
    }
}

fn not_taken(opt: &dyn std::fmt::Display) -> WireError {
    unsupported(&format!("COPY option {opt} is not supported"))
}

/// A one-byte ASCII option value.
fn byte(c: char, what: &str) -> Result<u8, WireError> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| unsupported(&format!("COPY {what} must be a single one-byte character")))
}
