//! One parsed COPY record, and the [`RecordFormat`] trait: what differs between
//! COPY formats (where a record ends, how its fields are unescaped, how a field is
//! written back). Text and CSV implement it.

use bytes::BytesMut;

use super::options::CopyOptions;

/// What differs between COPY formats.
pub(crate) trait RecordFormat: Sync {
    /// Where the record starting at `rest` ends (exclusive) and the next one starts,
    /// and whether it is plain: free of the bytes the format unescapes (the CSV quote,
    /// the text backslash), so its fields are its raw text between delimiters. At the
    /// end of input an unterminated last record counts.
    fn record_end(
        &self,
        o: &CopyOptions,
        rest: &[u8],
        at_end: bool,
    ) -> Option<(usize, usize, bool)>;

    /// Split a record that is not plain into `rec`'s fields.
    fn split(&self, o: &CopyOptions, line: &str, rec: &mut Record);

    /// Append one non-NULL field, escaped or quoted as the format needs.
    fn format_field(&self, o: &CopyOptions, v: &str, out: &mut BytesMut);
}

/// One parsed record: its fields' unescaped text, with each field's span and NULL
/// flag. Reused from record to record, so parsing allocates nothing once the buffers
/// have grown to the widest record.
#[derive(Debug, Default)]
pub struct Record {
    pub(super) text: String,
    /// (start, end) in `text` and is-NULL, per field.
    pub(super) spans: Vec<(usize, usize, bool)>,
}

impl Record {
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    /// End the field whose unescaped text was appended since the previous field's end.
    pub(super) fn end_field(&mut self, null: bool) {
        let start = self.spans.last().map_or(0, |s| s.1);
        self.spans.push((start, self.text.len(), null));
    }

    /// The fields in order (`None`: NULL).
    pub fn fields(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        self.spans.iter().map(|&(start, end, null)| {
            (!null).then(|| self.text.get(start..end).unwrap_or_default())
        })
    }
}
