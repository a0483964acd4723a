//! What rendering gives the caller to write: a file of the archive, by its path in the output
//! folder. Shared by the archive pages and the feeds, which do not import each other.

/// A file of the archive: its path relative to `[paths] out` (with `/`), and its contents.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputFile {
    pub path: String,
    pub contents: String,
}
