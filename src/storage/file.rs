//! The local backend, `file:///dir`: the same layout as S3. An upload is written to a hidden
//! temporary file in the same directory (mode 0600) and published with a hard link, which
//! fails when the name exists, so nothing is ever overwritten and a reader never sees half a
//! file.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use nix::fcntl::{Flock, FlockArg};

use super::{Expect, Finished, ObjectInfo, PendingUpload, StorageError, Versioned};

/// A local file's version: the SHA-256 of its content.
fn content_tag(body: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A file's content, `None` when it does not exist (small files only: called under the lock).
fn read_now(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(body) => Ok(Some(body)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(StorageError::Io {
            op: "run".into(),
            target: "a file operation".into(),
            detail: e.to_string(),
        })
    })
}

/// Bytes read per chunk of a download.
const READ_CHUNK: usize = 1024 * 1024;

#[derive(Clone)]
pub(crate) struct FileStore {
    dir: PathBuf,
}

/// `.<name>.<id>.partial`: an unfinished upload of `name`.
fn temp_name(name: &str, id: &str) -> String {
    format!(".{name}.{id}.partial")
}

/// The id of an unfinished upload of `name`, if `file_name` is one.
fn temp_id<'a>(name: &str, file_name: &'a str) -> Option<&'a str> {
    file_name
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('.')?
        .strip_suffix(".partial")
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
}

fn io_error(op: &str, path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io {
        op: op.to_string(),
        target: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn modified(meta: &std::fs::Metadata) -> Option<i64> {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

impl FileStore {
    pub(crate) fn new(dir: &Path) -> FileStore {
        FileStore {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The subdirectory `name`.
    pub(crate) fn child(&self, name: &str) -> FileStore {
        FileStore::new(&self.dir.join(name))
    }

    /// The directory's entries; none when it does not exist.
    async fn entries(&self) -> Result<Vec<tokio::fs::DirEntry>, StorageError> {
        let mut all = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
            Err(e) => return Err(io_error("list", &self.dir, e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("list", &self.dir, e))?
        {
            all.push(entry);
        }
        Ok(all)
    }

    /// Every unfinished upload in the directory, with its object's name.
    pub(crate) async fn list_all_uploads(
        &self,
    ) -> Result<Vec<(String, PendingUpload)>, StorageError> {
        let mut found = Vec::new();
        for entry in self.entries().await? {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((name, id)) = file_name
                .strip_prefix('.')
                .and_then(|rest| rest.strip_suffix(".partial"))
                .and_then(|rest| rest.rsplit_once('.'))
                .filter(|(name, id)| temp_id(name, &file_name) == Some(*id))
            else {
                continue;
            };
            let initiated = entry.metadata().await.ok().and_then(|meta| {
                meta.created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .or_else(|| modified(&meta))
            });
            found.push((
                name.to_string(),
                PendingUpload {
                    id: id.to_string(),
                    initiated,
                },
            ));
        }
        Ok(found)
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("file://{}", self.path(name).display())
    }

    pub(crate) async fn read_small(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() > limit as u64 => Err(StorageError::Io {
                op: "read".into(),
                target: path.display().to_string(),
                detail: format!("it is larger than {limit} bytes; it is not a shipgate file"),
            }),
            Ok(_) => tokio::fs::read(&path)
                .await
                .map(Some)
                .map_err(|e| io_error("read", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    pub(crate) async fn head(&self, name: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                name: name.to_string(),
                size: meta.len(),
                modified: modified(&meta),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    pub(crate) async fn put_new(&self, name: &str, body: &[u8]) -> Result<(), StorageError> {
        let mut upload = self.begin(name).await?;
        let result = async {
            upload.write_part(body).await?;
            upload.finish().await
        }
        .await;
        if result.is_err() {
            let _ = upload.abort().await;
        }
        result.map(|_| ())
    }

    pub(crate) async fn begin(&self, name: &str) -> Result<FileUpload, StorageError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error("create the directory", &self.dir, e))?;
        let id = crate::util::random_hex(6);
        let temp = self.dir.join(temp_name(name, &id));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await
            .map_err(|e| io_error("create", &temp, e))?;
        Ok(FileUpload {
            id,
            file: Some(file),
            temp,
            target: self.path(name),
            dir: self.dir.clone(),
            written: 0,
            parts: 0,
        })
    }

    pub(crate) async fn list_uploads(
        &self,
        name: &str,
    ) -> Result<Vec<PendingUpload>, StorageError> {
        Ok(self
            .list_all_uploads()
            .await?
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, upload)| upload)
            .collect())
    }

    pub(crate) async fn abort_upload(&self, name: &str, id: &str) -> Result<(), StorageError> {
        let file_name = temp_name(name, id);
        if temp_id(name, &file_name) != Some(id) {
            return Err(StorageError::BadLocation {
                location: crate::actions::quote(&file_name),
                reason: "it is not an unfinished upload".into(),
            });
        }
        self.delete(&file_name).await
    }

    pub(crate) fn abort_hint(&self, name: &str, id: &str) -> String {
        format!("delete `{}`", self.path(&temp_name(name, id)).display())
    }

    /// Writes a temporary file and renames it over `name`.
    pub(crate) async fn put_replace(&self, name: &str, body: &[u8]) -> Result<(), StorageError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error("create the directory", &self.dir, e))?;
        let temp = self
            .dir
            .join(format!(".{name}.{}.tmp", crate::util::random_hex(6)));
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .await?;
            file.write_all(body).await?;
            file.sync_all().await?;
            tokio::fs::rename(&temp, self.path(name)).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(io_error("write", &self.path(name), e));
        }
        Ok(())
    }

    pub(crate) async fn get(&self, name: &str) -> Result<Option<FileDownload>, StorageError> {
        let path = self.path(name);
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Some(FileDownload { file, path })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    pub(crate) async fn list(&self, start: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut found = Vec::new();
        for entry in self.entries().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(start) {
                continue;
            }
            let meta = entry
                .metadata()
                .await
                .map_err(|e| io_error("read", &entry.path(), e))?;
            if meta.is_file() {
                found.push(ObjectInfo {
                    name,
                    size: meta.len(),
                    modified: modified(&meta),
                });
            }
        }
        Ok(found)
    }

    pub(crate) async fn read_versioned(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Versioned>, StorageError> {
        let path = self.path(name);
        let Some(body) = self.read_small(name, limit).await? else {
            return Ok(None);
        };
        let modified = match tokio::fs::metadata(&path).await {
            Ok(meta) => modified(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        Ok(Some(Versioned {
            tag: content_tag(&body),
            body,
            modified,
            now: Some(jiff::Timestamp::now().as_second()),
        }))
    }

    /// Compare-and-swap under an exclusive lock (`flock`) on `.<name>.lock`, which every
    /// conditional write and delete of `name` takes: the content is compared with `expect`,
    /// then a new file is written and renamed over it (or linked, when nothing may be there).
    pub(crate) async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        expect: Expect<'_>,
    ) -> Result<String, StorageError> {
        let store = self.clone();
        let name = name.to_string();
        let expect = match expect {
            Expect::Absent => None,
            Expect::Tag(tag) => Some(tag.to_string()),
        };
        blocking(move || {
            let _lock = store.lock(&name)?;
            let path = store.path(&name);
            let current = read_now(&path)?;
            match (&expect, &current) {
                (None, Some(_)) => {
                    return Err(StorageError::Exists {
                        location: store.url(&name),
                    });
                }
                (Some(tag), Some(body)) if *tag == content_tag(body) => {}
                (Some(_), _) => {
                    return Err(StorageError::Changed {
                        location: store.url(&name),
                    });
                }
                (None, None) => {}
            }
            let temp = store
                .dir
                .join(format!(".{name}.{}.tmp", crate::util::random_hex(6)));
            let written = (|| {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)?;
                file.write_all(&body)?;
                file.sync_all()?;
                if expect.is_none() {
                    std::fs::hard_link(&temp, &path)?;
                    std::fs::remove_file(&temp)
                } else {
                    std::fs::rename(&temp, &path)
                }
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(io_error("write", &path, e));
            }
            Ok(content_tag(&body))
        })
        .await
    }

    pub(crate) async fn delete_if(&self, name: &str, tag: &str) -> Result<(), StorageError> {
        let store = self.clone();
        let name = name.to_string();
        let tag = tag.to_string();
        blocking(move || {
            let _lock = store.lock(&name)?;
            let path = store.path(&name);
            match read_now(&path)? {
                None => Ok(()),
                Some(body) if content_tag(&body) == tag => match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(io_error("delete", &path, e)),
                },
                Some(_) => Err(StorageError::Changed {
                    location: store.url(&name),
                }),
            }
        })
        .await
    }

    /// The exclusive lock of `name`'s compare-and-swap, held until dropped.
    fn lock(&self, name: &str) -> Result<Flock<std::fs::File>, StorageError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| io_error("create the directory", &self.dir, e))?;
        let path = self.dir.join(format!(".{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_error("open the lock file", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_error("lock", &path, std::io::Error::from(e)))
    }

    /// Removes this destination's directory once nothing is left in it (a deleted directory
    /// backup's `backup-<id>/`); a directory with anything in it, or none, is left as it is.
    pub(crate) async fn remove_if_empty(&self) -> Result<(), StorageError> {
        match tokio::fs::remove_dir(&self.dir).await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(io_error("remove the empty directory", &self.dir, e)),
        }
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let path = self.path(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", &path, e)),
        }
    }
}

pub(crate) struct FileUpload {
    /// The random part of the temporary file's name.
    id: String,
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    written: u64,
    parts: u32,
}

impl FileUpload {
    pub(crate) fn id(&self) -> String {
        self.id.clone()
    }

    pub(crate) fn uploaded(&self) -> u64 {
        self.written
    }

    pub(crate) async fn write_part(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let file = self.file.as_mut().ok_or_else(|| StorageError::Io {
            op: "write".into(),
            target: self.temp.display().to_string(),
            detail: "the upload is already closed".into(),
        })?;
        file.write_all(data)
            .await
            .map_err(|e| io_error("write", &self.temp, e))?;
        self.written += data.len() as u64;
        self.parts += 1;
        Ok(())
    }

    pub(crate) async fn finish(&mut self) -> Result<Finished, StorageError> {
        let mut file = self.file.take().ok_or_else(|| StorageError::Io {
            op: "finish".into(),
            target: self.temp.display().to_string(),
            detail: "the upload is already closed".into(),
        })?;
        file.flush()
            .await
            .map_err(|e| io_error("write", &self.temp, e))?;
        file.sync_all()
            .await
            .map_err(|e| io_error("write", &self.temp, e))?;
        drop(file);
        // A hard link never replaces an existing file: this is the no-overwrite publish.
        match tokio::fs::hard_link(&self.temp, &self.target).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StorageError::Exists {
                    location: format!("file://{}", self.target.display()),
                });
            }
            Err(e) => return Err(io_error("publish", &self.target, e)),
        }
        let _ = tokio::fs::remove_file(&self.temp).await;
        if let Ok(dir) = tokio::fs::File::open(&self.dir).await {
            let _ = dir.sync_all().await;
        }
        Ok(Finished {
            parts: self.parts.max(1),
            size: self.written,
        })
    }

    pub(crate) async fn abort(&mut self) -> Result<(), String> {
        self.file = None;
        match tokio::fs::remove_file(&self.temp).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!(
                "the unfinished file `{}` could not be removed ({e}); delete it by hand",
                self.temp.display()
            )),
        }
    }
}

pub(crate) struct FileDownload {
    file: tokio::fs::File,
    path: PathBuf,
}

impl FileDownload {
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, StorageError> {
        let mut buf = vec![0u8; READ_CHUNK];
        let n = self
            .file
            .read(&mut buf)
            .await
            .map_err(|e| io_error("read", &self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some(Bytes::from(buf)))
    }
}
