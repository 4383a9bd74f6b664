//! Crash-safe small metadata files (topic configs, consumer offsets, ...).
//!
//! A file is replaced atomically: written to `NAME.tmp`, fsynced, renamed
//! over `NAME`, and the directory fsynced, so after a crash a reader finds
//! either the old or the new content, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &data)
}

/// Replaces `path` with `data` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Where a file found corrupt is set aside instead of deleted:
/// `<path>.corrupt-<unix ms>`.
pub fn corrupt_copy_path(path: &Path) -> std::path::PathBuf {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{ms}"));
    aside.into()
}

/// Reads JSON from `path`; `Ok(None)` if the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.json");
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), None);
        write_json(&p, &vec![1u32, 2]).unwrap();
        write_json(&p, &vec![3u32]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), Some(vec![3]));
        assert!(!dir.path().join("sub/x.json.tmp").exists());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        fs::write(&p, b"{not json").unwrap();
        assert!(read_json::<Vec<u32>>(&p).is_err());
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        fs::write(&p, "[".repeat(1_000_000)).unwrap();
        assert!(read_json::<Vec<u32>>(&p).is_err());
        assert!(read_json::<serde_json::Value>(&p).is_err());
    }

    proptest::proptest! {
        // Each case writes a file: few of them.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_file_content_reads_or_is_invalid_data(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.json");
            fs::write(&p, &data).unwrap();
            type Offsets = std::collections::BTreeMap<String, Vec<(u32, u64)>>;
            if let Err(e) = read_json::<Offsets>(&p) {
                proptest::prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            }
        }
    }
}
