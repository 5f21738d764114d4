//! File-system names for user-supplied job and stage names, and the store's file names.
//!
//! Names are escaped rather than sanitised lossily, so two different names can never
//! share a file: lowercase ASCII letters, digits and `_` are kept, every other byte
//! becomes `%xx` (lowercase hex). The result contains no `/`, `.`, `-` or upper-case
//! letters, so it is safe on case-insensitive file systems, cannot be `.` or `..`, and
//! the `-` separators in chunk file names stay unambiguous.

use std::fmt::Write as _;

use super::error::SnapshotError;
use super::store::ChunkId;

/// Longest encoded name accepted, leaving room for the epoch, partition and suffix
/// within the usual 255-byte file name limit.
pub const MAX_ENCODED_NAME: usize = 200;

/// Suffix of committed manifest files.
pub const MANIFEST_SUFFIX: &str = ".manifest";
/// Suffix of chunk files.
pub const CHUNK_SUFFIX: &str = ".chunk";
/// Suffix of files being written (renamed away once durable).
pub const TEMP_SUFFIX: &str = ".tmp";

/// Escapes a user-supplied `what` name ("job" or "stage") for use as a path component.
pub fn encode_name(what: &'static str, name: &str) -> Result<String, SnapshotError> {
    let invalid = |reason: String| SnapshotError::InvalidName {
        what,
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty".to_owned()));
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02x}");
        }
        if out.len() > MAX_ENCODED_NAME {
            return Err(invalid(format!(
                "longer than {MAX_ENCODED_NAME} bytes once encoded for the file system"
            )));
        }
    }
    Ok(out)
}

/// The file name of the manifest of `epoch`: 20 zero-padded digits, so names sort in
/// epoch order.
pub fn manifest_file_name(epoch: u64) -> String {
    format!("{epoch:020}{MANIFEST_SUFFIX}")
}

/// The epoch of a committed manifest file name, or `None` for any other file.
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(MANIFEST_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of the chunk `id` of `epoch`: `<epoch>-<encoded stage>-<partition>.chunk`.
pub fn chunk_file_name(epoch: u64, id: &ChunkId) -> Result<String, SnapshotError> {
    let stage = encode_name("stage", &id.stage)?;
    Ok(format!(
        "{epoch}-{stage}-{}{CHUNK_SUFFIX}",
        id.key_partition
    ))
}

/// The epoch of a chunk file name (finished or still a temp file), or `None` for any
/// file the store did not write.
pub fn parse_chunk_file_epoch(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(TEMP_SUFFIX).unwrap_or(name);
    let stem = stem.strip_suffix(CHUNK_SUFFIX)?;
    let (epoch, rest) = stem.split_once('-')?;
    let (stage, partition) = rest.rsplit_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stage.is_empty() || !all_digits(epoch) || !all_digits(partition) {
        return None;
    }
    epoch.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_injective_and_path_safe() {
        let names = [
            "a/b", "a%2fb", "A", "a", "..", ".", "a b", "a-b", "a_b", "ü",
        ];
        let encoded: Vec<String> = names
            .iter()
            .map(|n| encode_name("stage", n).unwrap())
            .collect();
        for (i, e) in encoded.iter().enumerate() {
            assert!(
                !e.contains('/') && !e.contains('.') && !e.contains('-'),
                "{e}"
            );
            for other in &encoded[i + 1..] {
                assert_ne!(e, other);
            }
        }
        assert_eq!(encode_name("stage", "a/b c").unwrap(), "a%2fb%20c");
    }

    #[test]
    fn empty_and_overlong_names_are_rejected() {
        let err = encode_name("job", "").unwrap_err();
        assert!(
            err.to_string().contains("job name \"\": must not be empty"),
            "{err}"
        );
        let long = "X".repeat(100);
        assert!(matches!(
            encode_name("stage", &long),
            Err(SnapshotError::InvalidName { what: "stage", .. })
        ));
        assert!(encode_name("stage", &"x".repeat(MAX_ENCODED_NAME)).is_ok());
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(manifest_file_name(42), "00000000000000000042.manifest");
        assert_eq!(
            parse_manifest_file_name(&manifest_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_manifest_file_name("42.manifest"), None);
        assert_eq!(
            parse_manifest_file_name("00000000000000000042.manifest.tmp"),
            None
        );

        let name = chunk_file_name(17, &ChunkId::new("my stage/x", 3)).unwrap();
        assert_eq!(name, "17-my%20stage%2fx-3.chunk");
        assert_eq!(parse_chunk_file_epoch(&name), Some(17));
        assert_eq!(parse_chunk_file_epoch(&format!("{name}.tmp")), Some(17));
        assert_eq!(parse_chunk_file_epoch("notes.txt"), None);
        assert_eq!(parse_chunk_file_epoch("x-y-1.chunk"), None);
    }
}
