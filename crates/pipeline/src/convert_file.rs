//! A conversion to a local file, written under a temporary name in the output's folder and renamed into place at
//! the end, so an error or Ctrl-C never leaves a half-written image under the final name.

use imgport_disk::{write_image, Control, DiskImage, Error, FileSink, WriteOptions};
use std::path::{Path, PathBuf};

/// Refuses an output that would lose data: one that exists (unless `force`), or the input itself. Run before
/// the input is opened, so nothing is read or written for a conversion that cannot happen.
pub fn check_output(input: &Path, output: &Path, force: bool) -> Result<(), Error> {
    if !force && output.exists() {
        return Err(Error::invalid_argument("output exists (use --force to overwrite)").in_file(output));
    }
    if same_file(input, output) {
        return Err(Error::invalid_argument("output is the input image").in_file(output));
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes `src` as `opts` asks to `output` (replacing it only with `force`); returns the bytes written (holes
/// left unwritten are not counted). Watch for signals with `ctl` before calling: the temporary file is removed
/// when this returns early, which a signal's default action would not allow.
pub fn convert_to_file(
    src: &dyn DiskImage,
    opts: &WriteOptions,
    output: &Path,
    force: bool,
    ctl: &Control,
) -> Result<u64, Error> {
    let (tmp, mut sink) = TempOutput::create(output)?;
    write_image(src, opts, &mut sink, ctl)?;
    tmp.persist(force)?;
    Ok(sink.bytes_written())
}

/// An output file being written under a temporary name in its folder (`.NAME.XXXX.imgport-tmp`): removed when
/// dropped (an error, or Ctrl-C dropping the work that holds it), renamed into place by [`TempOutput::persist`].
pub struct TempOutput {
    tmp: tempfile::NamedTempFile,
    output: PathBuf,
}

impl TempOutput {
    /// Creates the temporary file next to `output`, and a sink writing into it (synced at its `finish`).
    pub fn create(output: &Path) -> Result<(TempOutput, FileSink), Error> {
        let dir = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".imgport-tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Error::io("cannot create output", e).in_file(output))?;
        let file = tmp.as_file().try_clone().map_err(|e| Error::io("cannot create output", e).in_file(output))?;
        let sink = FileSink::new(file, output.to_path_buf());
        Ok((TempOutput { tmp, output: output.to_path_buf() }, sink))
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the (synced) file into place; without `force`, never over an existing file.
    pub fn persist(self, force: bool) -> Result<(), Error> {
        let TempOutput { tmp, output } = self;
        let persisted = if force { tmp.persist(&output) } else { tmp.persist_noclobber(&output) };
        persisted.map_err(|e| Error::io("cannot rename output into place", e.error).in_file(&output))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgport_disk::{Format, MemImage};

    #[test]
    fn an_existing_output_or_the_input_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.raw");
        std::fs::write(&input, [0u8; 512]).expect("write");
        let other = dir.path().join("out.raw");
        assert!(check_output(&input, &other, false).is_ok());
        assert!(check_output(&input, &input, false).is_err());
        assert!(check_output(&input, &input, true).is_err(), "--force must not overwrite the input");
        std::fs::write(&other, b"kept").expect("write");
        assert!(check_output(&input, &other, false).is_err());
        assert!(check_output(&input, &other, true).is_ok());
    }

    #[test]
    fn written_under_a_temporary_name_then_renamed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.raw");
        let src = MemImage(vec![7u8; 4096]);
        let n = convert_to_file(&src, &WriteOptions::new(Format::Raw), &out, false, &Control::new()).expect("write");
        assert_eq!(std::fs::read(&out).expect("read"), vec![7u8; 4096]);
        assert!(n <= 4096);
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.raw")], "a temporary file was left behind");
    }
}
