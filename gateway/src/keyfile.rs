//! Host secrets in `state_dir` (the CA key, the masking key, the recording key): private
//! files, created once, kept across restarts, never readable by others.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

/// The file's bytes, creating it from `make()` first when it does not exist (mode 0600).
/// An existing file that others can read is tightened to 0600.
///
/// A new key is written whole under a temporary name and then linked into place: a crash
/// never leaves a short key file, and of two racing starts the first link wins and both use
/// its key.
pub fn load_or_create(
    path: &Path,
    make: impl FnOnce() -> io::Result<Vec<u8>>,
) -> io::Result<Vec<u8>> {
    match read_private(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let bytes = make()?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()));
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created host key");
            Ok(bytes)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_private(path),
        Err(e) => Err(e),
    }
}

fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let bytes = fs::read(path)?;
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "host key was readable by others; mode set to 0600");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_then_reused_and_tightened() {
        let dir = std::env::temp_dir().join(format!("mcpgw-keyfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        assert_eq!(
            load_or_create(&path, || Ok(b"one".to_vec())).unwrap(),
            b"one"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            load_or_create(&path, || Ok(b"two".to_vec())).unwrap(),
            b"one",
            "kept"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create(&path, || unreachable!()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "tightened"
        );
        let failing = dir.join("f");
        assert!(load_or_create(&failing, || Err(io::Error::other("no entropy"))).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
