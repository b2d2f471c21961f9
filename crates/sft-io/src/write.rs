//! Writing datasets: JSON lines or Parquet, chosen by the file name, always atomically.
//!
//! Rows go to a temporary file beside the target and are renamed into place by
//! [`DatasetWriter::finish`]; a writer dropped without `finish` (an error, Ctrl-C) leaves
//! nothing behind. Parquet files get the natural nested schema (`messages:
//! list<struct<role, content, ...>>`), inferred from all rows, so Python `datasets`, pandas
//! and pyarrow read them unchanged; rows are spilled to a temporary JSON lines file first,
//! so memory stays flat whatever the size.

use std::fmt;
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_json::reader::{infer_json_schema, ReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tempfile::NamedTempFile;

/// Rows per Parquet row group: small enough that memory stays flat.
const ROW_GROUP_ROWS: usize = 16_384;

/// File formats rows can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    JsonLines,
    Parquet,
}

impl OutputFormat {
    /// From the file name: `.jsonl`/`.ndjson` or `.parquet`.
    pub fn from_path(path: &Path) -> Result<OutputFormat, String> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "jsonl" | "ndjson" | "jsonlines" => Ok(OutputFormat::JsonLines),
            "parquet" => Ok(OutputFormat::Parquet),
            _ => Err(format!(
                "{}: the output must end in .jsonl or .parquet",
                path.display()
            )),
        }
    }
}

#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for WriteError {}

/// Writes rows to a dataset file that appears only when [`finish`](Self::finish) succeeds.
pub struct DatasetWriter {
    path: PathBuf,
    format: OutputFormat,
    /// The JSON lines being written: the output itself, or the spill for Parquet.
    lines: BufWriter<Temp>,
    rows: u64,
    /// For Parquet: the JSON types each field has held, to store mixed ones as JSON text.
    kinds: crate::json_type::Kinds,
}

/// Temporary files of this process that are not finished yet, so that an interrupt can
/// remove them ([`remove_temporaries`]).
static LIVE_TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_TEMPORARIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary file this process has not finished yet: for a Ctrl-C handler,
/// before the process exits. Returns how many were removed.
pub fn remove_temporaries() -> usize {
    let mut live = live();
    let removed = live
        .drain(..)
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count();
    removed
}

/// A temporary file beside an output: `.NAME.PID.RANDOM.tmp`, known to
/// [`remove_temporaries`] until it is persisted or dropped.
pub(crate) struct Temp {
    /// Always set; taken out only by `persist`, which consumes the `Temp`.
    file: Option<NamedTempFile>,
    path: PathBuf,
}

impl Temp {
    fn file(&self) -> &NamedTempFile {
        self.file.as_ref().expect("set until persisted")
    }

    fn file_mut(&mut self) -> &mut NamedTempFile {
        self.file.as_mut().expect("set until persisted")
    }

    /// Moves the finished file into place.
    pub(crate) fn persist(mut self, path: &Path) -> Result<(), tempfile::PersistError> {
        let file = self.file.take().expect("set until persisted");
        // Still registered while it is renamed: an interrupt now removes it or finds it gone.
        file.persist(path).map(|_| ())
    }

    pub(crate) fn reopen(&self) -> io::Result<std::fs::File> {
        self.file().reopen()
    }

    pub(crate) fn as_file(&self) -> &std::fs::File {
        self.file().as_file()
    }

    pub(crate) fn as_file_mut(&mut self) -> &mut std::fs::File {
        self.file_mut().as_file_mut()
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        forget_temporary(&self.path);
        // A file not persisted is removed by NamedTempFile's own destructor, right after.
    }
}

impl Write for Temp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

/// Adds a temporary file of this process to those [`remove_temporaries`] removes.
pub(crate) fn register_temporary(path: &Path) {
    live().push(path.to_path_buf());
}

fn forget_temporary(path: &Path) {
    live().retain(|p| p != path);
}

/// The prefix of the temporary files of an output named `name`: `.NAME.`.
fn temp_prefix(path: &Path) -> String {
    path.file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
        .unwrap_or_else(|| ".out.".into())
}

pub(crate) fn temp_beside(path: &Path) -> io::Result<Temp> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = temp_prefix(path);
    remove_stale_temporaries(dir, &prefix);
    let name = format!("{prefix}{}.", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&name).suffix(".tmp");
    // Temporary files are private (0600) by default; the finished file should get the
    // permissions of any other new file (0666 less the umask).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // Registered before the file exists, so an interrupt in between leaves nothing.
    let mut live = live();
    let file = builder.tempfile_in(dir)?;
    let path = file.path().to_path_buf();
    live.push(path.clone());
    Ok(Temp {
        file: Some(file),
        path,
    })
}

/// A temporary file untouched for this long, whose process is gone, is stale. The wait
/// protects a job writing the same output from another machine or container (whose
/// process ids are not ours to see): a job that is writing keeps its file fresh.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// Removes the temporary files that earlier runs writing the same output left behind when
/// they were killed (`.NAME.PID.RANDOM.tmp` whose process is gone and that has not been
/// written for two minutes). Files of a process still running are left alone; so is
/// anything that is not one of ours.
fn remove_stale_temporaries(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        let stale = match middle.split_once('.') {
            Some((pid, random)) if !random.is_empty() && !random.contains('.') => {
                match pid.parse::<u32>() {
                    Ok(pid) => pid != std::process::id() && !process_alive(pid),
                    Err(_) => false,
                }
            }
            _ => false,
        };
        let quiet = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if stale && quiet && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a process runs, where the system says (`/proc`); elsewhere every process is
/// taken to run, so nothing of a live job is ever removed.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

impl DatasetWriter {
    pub fn create(path: &Path) -> Result<DatasetWriter, WriteError> {
        let format = OutputFormat::from_path(path).map_err(|message| WriteError {
            path: path.to_path_buf(),
            message,
        })?;
        Self::create_as(path, format)
    }

    pub fn create_as(path: &Path, format: OutputFormat) -> Result<DatasetWriter, WriteError> {
        let temp = temp_beside(path).map_err(|e| WriteError {
            path: path.to_path_buf(),
            message: format!("cannot create a file in its folder: {e}"),
        })?;
        Ok(DatasetWriter {
            path: path.to_path_buf(),
            format,
            lines: BufWriter::with_capacity(1 << 20, temp),
            rows: 0,
            kinds: Default::default(),
        })
    }

    fn error(&self, message: impl Into<String>) -> WriteError {
        WriteError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub fn write(&mut self, row: &Value) -> Result<(), WriteError> {
        serde_json::to_writer(&mut self.lines, row)
            .map_err(|e| e.to_string())
            .and_then(|_| self.lines.write_all(b"\n").map_err(|e| e.to_string()))
            .map_err(|e| self.error(e))?;
        if self.format == OutputFormat::Parquet {
            self.kinds.add(row);
        }
        self.rows += 1;
        Ok(())
    }

    /// The fields (as `messages[].content`) whose rows hold different JSON types, which a
    /// Parquet output stores as JSON text of the `arrow.json` extension type (Python
    /// `datasets` reads them back as the values). Empty for JSON lines.
    pub fn json_text_fields(&self) -> Vec<String> {
        self.kinds
            .mixed()
            .iter()
            .map(|p| crate::json_type::describe(p))
            .collect()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Completes the file and moves it into place. Returns the number of rows written.
    pub fn finish(self) -> Result<u64, WriteError> {
        let path = self.path.clone();
        let rows = self.rows;
        let format = self.format;
        let mixed = self.kinds.mixed();
        let temp = self.lines.into_inner().map_err(|e| WriteError {
            path: path.clone(),
            message: e.error().to_string(),
        })?;
        let temp = match format {
            OutputFormat::JsonLines => temp,
            OutputFormat::Parquet => {
                spill_to_parquet(temp, &path, &mixed).map_err(|message| WriteError {
                    path: path.clone(),
                    message,
                })?
            }
        };
        temp.as_file().sync_all().ok();
        temp.persist(&path).map_err(|e| WriteError {
            path,
            message: format!("cannot move the finished file into place: {}", e.error),
        })?;
        Ok(rows)
    }
}

/// Writes the spilled JSON lines as Parquet; the fields at `mixed` (different JSON types in
/// different rows) as JSON text with the `arrow.json` extension type.
fn spill_to_parquet(
    spill: Temp,
    path: &Path,
    mixed: &[crate::json_type::JsonPath],
) -> Result<Temp, String> {
    let mut spill = encode_mixed(spill, path, mixed)?;
    let schema = infer_schema(&mut spill)?;
    write_parquet(
        spill,
        path,
        Arc::new(crate::json_type::mark(&schema, mixed)),
    )
}

/// The spill with the values at `mixed` replaced by their JSON text.
fn encode_mixed(
    mut spill: Temp,
    path: &Path,
    mixed: &[crate::json_type::JsonPath],
) -> Result<Temp, String> {
    if !mixed.is_empty() {
        let mut encoded =
            BufWriter::with_capacity(1 << 20, temp_beside(path).map_err(|e| e.to_string())?);
        let file = spill.as_file_mut();
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        for line in io::BufRead::lines(BufReader::with_capacity(1 << 20, &*file)) {
            let line = line.map_err(|e| e.to_string())?;
            let mut row: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            crate::json_type::encode(&mut row, mixed);
            serde_json::to_writer(&mut encoded, &row).map_err(|e| e.to_string())?;
            encoded.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        spill = encoded.into_inner().map_err(|e| e.error().to_string())?;
    }
    Ok(spill)
}

fn infer_schema(spill: &mut Temp) -> Result<arrow_schema::Schema, String> {
    let file = spill.as_file_mut();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let (schema, _) = infer_json_schema(BufReader::new(&*file), None)
        .map_err(|e| format!("cannot derive a Parquet schema from the rows: {e}"))?;
    Ok(schema)
}

fn write_parquet(
    mut spill: Temp,
    path: &Path,
    schema: Arc<arrow_schema::Schema>,
) -> Result<Temp, String> {
    let file = spill.as_file_mut();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let reader = ReaderBuilder::new(schema.clone())
        .with_batch_size(4096)
        .with_coerce_primitive(true)
        .build(BufReader::with_capacity(1 << 20, &*file))
        .map_err(|e| e.to_string())?;
    let out = temp_beside(path).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        // Row groups are flushed as they fill, so memory does not grow with the file.
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(
        out.reopen().map_err(|e| e.to_string())?,
        schema,
        Some(props),
    )
    .map_err(|e| format!("cannot start the Parquet file: {e}: write .jsonl instead"))?;
    for batch in reader {
        let batch = batch.map_err(|e| {
            format!("the rows do not fit one Parquet schema ({e}): write .jsonl instead")
        })?;
        writer
            .write(&batch)
            .map_err(|e| format!("Parquet write failed: {e}"))?;
    }
    writer
        .close()
        .map_err(|e| format!("Parquet write failed: {e}"))?;
    Ok(out)
}

/// Finishes writers of one dataset's splits (train, test) with one schema, inferred from
/// the rows of all of them: Python `datasets` loads the splits of a `DatasetDict` with one
/// set of features, so a column that only some rows of one split have must be in every
/// split's file. JSON lines writers are finished as they are. Returns the rows of each.
pub fn finish_as_one_dataset(writers: Vec<DatasetWriter>) -> Result<Vec<u64>, WriteError> {
    if writers.iter().all(|w| w.format != OutputFormat::Parquet) {
        return writers.into_iter().map(DatasetWriter::finish).collect();
    }
    let mut kinds = crate::json_type::Kinds::default();
    for w in &writers {
        kinds.merge(&w.kinds);
    }
    let mixed = kinds.mixed();
    let mut spills = Vec::new();
    for w in writers {
        let (path, rows, format) = (w.path.clone(), w.rows, w.format);
        let error = |message: String| WriteError {
            path: path.clone(),
            message,
        };
        let temp = w
            .lines
            .into_inner()
            .map_err(|e| error(e.error().to_string()))?;
        let temp = match format {
            OutputFormat::Parquet => encode_mixed(temp, &path, &mixed).map_err(error)?,
            OutputFormat::JsonLines => temp,
        };
        spills.push((path, rows, format, temp));
    }
    let mut schemas = Vec::new();
    for (path, _, format, temp) in spills.iter_mut() {
        if *format == OutputFormat::Parquet {
            schemas.push(infer_schema(temp).map_err(|message| WriteError {
                path: path.clone(),
                message,
            })?);
        }
    }
    let merged = arrow_schema::Schema::try_merge(schemas).map_err(|e| WriteError {
        path: spills[0].0.clone(),
        message: format!(
            "the splits' rows do not fit one Parquet schema ({e}): write .jsonl instead"
        ),
    })?;
    let schema = Arc::new(crate::json_type::mark(&merged, &mixed));
    let mut finished = Vec::new();
    for (path, rows, format, temp) in spills {
        let temp = match format {
            OutputFormat::Parquet => {
                write_parquet(temp, &path, schema.clone()).map_err(|message| WriteError {
                    path: path.clone(),
                    message,
                })?
            }
            OutputFormat::JsonLines => temp,
        };
        finished.push((path, rows, temp));
    }
    let mut counts = Vec::new();
    for (path, rows, temp) in finished {
        temp.as_file().sync_all().ok();
        temp.persist(&path).map_err(|e| WriteError {
            path,
            message: format!("cannot move the finished file into place: {}", e.error),
        })?;
        counts.push(rows);
    }
    Ok(counts)
}

/// Writes `text` to `path` atomically (for reports and manifests).
pub fn write_atomic(path: &Path, text: &[u8]) -> Result<(), WriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(text).map_err(|e| WriteError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    file.finish()
}

/// Writes `path` atomically with what `body` writes: through a temporary file beside it,
/// synced to disk and renamed into place, so a reader never sees half of it and an
/// interrupted job leaves nothing at `path`. The one way every crate writes a whole file
/// (reports, manifests, model weights, checkpoints).
pub fn write_atomic_with(
    path: &Path,
    body: impl FnOnce(&mut AtomicFile) -> io::Result<()>,
) -> Result<(), WriteError> {
    let mut file = AtomicFile::create(path)?;
    body(&mut file).map_err(|e| WriteError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    file.finish()
}

/// A plain file written through a temporary file, for outputs that are not datasets.
pub struct AtomicFile {
    path: PathBuf,
    out: BufWriter<Temp>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, WriteError> {
        let temp = temp_beside(path).map_err(|e| WriteError {
            path: path.to_path_buf(),
            message: format!("cannot create a file in its folder: {e}"),
        })?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            out: BufWriter::new(temp),
        })
    }

    /// Syncs the file to disk and renames it into place.
    pub fn finish(self) -> Result<(), WriteError> {
        let path = self.path;
        let temp = self.out.into_inner().map_err(|e| WriteError {
            path: path.clone(),
            message: e.error().to_string(),
        })?;
        temp.as_file().sync_all().map_err(|e| WriteError {
            path: path.clone(),
            message: e.to_string(),
        })?;
        temp.persist(&path).map_err(|e| WriteError {
            path,
            message: e.error.to_string(),
        })?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(path: &Path) -> Vec<String> {
        let file = std::fs::File::open(path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn splits_of_one_dataset_share_one_schema() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
        let mut wa = DatasetWriter::create(&a).unwrap();
        let mut wb = DatasetWriter::create(&b).unwrap();
        wa.write(&serde_json::json!({"text": "x", "only_a": 1}))
            .unwrap();
        wb.write(&serde_json::json!({"text": "y", "mixed": "s"}))
            .unwrap();
        wa.write(&serde_json::json!({"text": "z", "mixed": 2}))
            .unwrap();
        let rows = finish_as_one_dataset(vec![wa, wb]).unwrap();
        assert_eq!(rows, vec![2, 1]);
        assert_eq!(columns(&a), columns(&b));
        assert_eq!(columns(&a).len(), 3);
    }
}
