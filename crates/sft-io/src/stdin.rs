//! `-` as a data path: standard input, as `jq`, ripgrep and `datasets`' tools read it, so a
//! batch job can pipe rows in (`zcat rows.jsonl.gz | sft-data check -`). Standard input is
//! copied once into a temporary file: a job may read its rows more than once (`check`
//! reads for duplicates, `prepare` tallies then writes), and the format is sniffed from the
//! content as for any file without an extension (JSON lines, a JSON array, Parquet, Arrow;
//! gzip and zstd are undone). The copy is removed when the process ends, also by a signal.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the rows of standard input are called in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// Whether a path a person typed means standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The copy of standard input, made on first use.
static SPOOL: Mutex<Option<(PathBuf, u64)>> = Mutex::new(None);

/// The file holding standard input and its size, copied on the first call.
pub fn stdin_file() -> io::Result<(PathBuf, u64)> {
    let mut spool = SPOOL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = spool.as_ref() {
        return Ok(found.clone());
    }
    let file = tempfile::Builder::new()
        .prefix(".sft-stdin.")
        .suffix(".tmp")
        .tempfile()?;
    // Registered before it is filled: a signal during the copy removes it.
    let (mut file, path) = file.keep().map_err(|e| e.error)?;
    crate::write::register_temporary(&path);
    let size = io::copy(&mut io::stdin().lock(), &mut file)?;
    *spool = Some((path.clone(), size));
    Ok((path, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_dash_is_stdin() {
        assert!(is_stdin(Path::new("-")));
        assert!(!is_stdin(Path::new("./-")));
        assert!(!is_stdin(Path::new("-x")));
    }
}
