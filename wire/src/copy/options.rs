//! The options of a COPY statement: format, delimiter, NULL string, header,
//! quote and escape. A leaf of the COPY modules.

#[derive(Clone, Debug, PartialEq)]
pub enum CopyFormat {
    Text,
    Csv,
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
