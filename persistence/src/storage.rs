//! File I/O of the log, behind a small trait so tests can inject faults.
//!
//! [`FsStorage`] is the real thing. [`SimStorage`] keeps everything in memory,
//! keeps what was *written* apart from what was made *durable* (by `sync` for
//! file contents, by `sync_dir` for names), can lose power, and can fail the
//! Nth write, the Nth sync, or run out of space.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// An open file the log appends to.
pub trait StorageFile: Send {
    /// Appends all of `buf` (one write call per batch on a real disk).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Makes the file at least `len` bytes long by writing zeros past what
    /// was appended, without moving the append position. Appends into that
    /// space change no file size, so their `sync` needs no metadata write:
    /// on ext4 that halves an fdatasync (one device write instead of two).
    /// Readers see the zeros after the last record; a frame never starts
    /// with a zero length, so they end the log there. The default does
    /// nothing (the file just grows with each append).
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
}

/// The file-system operations the log uses. Paths are absolute or relative to
/// the process; every file lives directly in the log directory.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens for reading; returns the reader and the file's length.
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)>;
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Cuts a file to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (mut reader, len) = self.open_read(path)?;
        let mut buf = Vec::with_capacity(len as usize);
        reader.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Reads at most `max_len` bytes from `offset` on (fewer at the end of
    /// the file, none past it). The log tailer follows a segment that is
    /// still being written with this; the default skips through a reader.
    fn read_range(&self, path: &Path, offset: u64, max_len: u64) -> io::Result<Vec<u8>> {
        let (reader, len) = self.open_read(path)?;
        let mut reader = reader.take(offset.saturating_add(max_len));
        io::copy(&mut (&mut reader).take(offset), &mut io::sink())?;
        let mut buf = Vec::with_capacity(len.saturating_sub(offset).min(max_len) as usize);
        reader.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The file's length in bytes (preallocated zeros included).
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.open_read(path).map(|(_, len)| len)
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsStorage;

/// A file written at `end` with positioned writes (not `O_APPEND`: the file
/// may run past `end` into preallocated zeros).
struct FsFile {
    file: File,
    /// Where the next append goes.
    end: u64,
    /// The file's length (zeros past `end`).
    len: u64,
}

impl FsFile {
    fn new(file: File) -> io::Result<FsFile> {
        let len = file.metadata()?.len();
        Ok(FsFile {
            file,
            end: len,
            len,
        })
    }
}

impl StorageFile for FsFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(buf, self.end)?;
        self.end += buf.len() as u64;
        self.len = self.len.max(self.end);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Written zeros, not fallocate: ext4 keeps fallocated blocks
        // "unwritten", and converting them on first write is a metadata
        // change that the next fdatasync would have to write again.
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while self.len < len {
            let n = (len - self.len).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], self.len)?;
            self.len += n as u64;
        }
        Ok(())
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok((Box::new(file), len))
    }
    fn read_range(&self, path: &Path, offset: u64, max_len: u64) -> io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len.saturating_sub(offset).min(max_len) as usize);
        file.take(max_len).read_to_end(&mut buf)?;
        Ok(buf)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(FsFile::new(file)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(FsFile::new(file)?))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// One simulated file: `data` as written, the first `synced` bytes durable.
#[derive(Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: usize,
}

type SimHandle = Arc<Mutex<SimFile>>;

#[derive(Debug, Default)]
struct SimNames {
    dirs: Vec<PathBuf>,
    /// The namespace as the running process sees it.
    live: HashMap<PathBuf, SimHandle>,
    /// The namespace as of the last `sync_dir`: what survives power loss.
    durable: HashMap<PathBuf, SimHandle>,
}

/// Faults to inject; counters count down and fire when they reach zero.
#[derive(Debug)]
struct SimFaults {
    /// Appends left before one fails with EIO (u64::MAX = never).
    writes_ok: AtomicU64,
    /// Syncs (file or dir) left before one fails with EIO.
    syncs_ok: AtomicU64,
    /// Total bytes that may still be appended before ENOSPC (a partial append
    /// writes what fits, as a real full disk does).
    space_bytes: AtomicU64,
    /// While set, appends wait (tests fill the queue behind a stuck writer).
    hold_writes: std::sync::atomic::AtomicBool,
    /// Bumped by `power_loss`: files opened before it belong to the process
    /// that died, and their later appends and syncs fail instead of landing
    /// in the files the next process recovers from.
    epoch: AtomicU64,
}

/// An in-memory file system with fault injection and power loss.
#[derive(Clone, Debug)]
pub struct SimStorage {
    names: Arc<Mutex<SimNames>>,
    faults: Arc<SimFaults>,
}

impl Default for SimStorage {
    fn default() -> Self {
        SimStorage::new()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage {
            names: Arc::default(),
            faults: Arc::new(SimFaults {
                writes_ok: AtomicU64::new(u64::MAX),
                syncs_ok: AtomicU64::new(u64::MAX),
                space_bytes: AtomicU64::new(u64::MAX),
                hold_writes: std::sync::atomic::AtomicBool::new(false),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    /// The next `n` appends succeed, the one after fails with EIO.
    pub fn fail_write_after(&self, n: u64) {
        self.faults.writes_ok.store(n, Ordering::SeqCst);
    }

    /// The next `n` syncs succeed, the one after fails with EIO.
    pub fn fail_sync_after(&self, n: u64) {
        self.faults.syncs_ok.store(n, Ordering::SeqCst);
    }

    /// Only `bytes` more bytes fit; then appends fail with ENOSPC.
    pub fn disk_space(&self, bytes: u64) {
        self.faults.space_bytes.store(bytes, Ordering::SeqCst);
    }

    /// While `hold` is true, appends block: the writer looks stuck on a slow disk.
    pub fn hold_writes(&self, hold: bool) {
        self.faults.hold_writes.store(hold, Ordering::SeqCst);
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.fail_write_after(u64::MAX);
        self.fail_sync_after(u64::MAX);
        self.disk_space(u64::MAX);
    }

    /// Simulates power loss: names revert to the last `sync_dir`, and each
    /// file keeps its synced bytes plus `keep(path, unsynced_len)` bytes of
    /// what was written after (0 = drop all, a partial count = torn write).
    pub fn power_loss(&self, mut keep: impl FnMut(&Path, usize) -> usize) {
        let mut names = self.names.lock();
        self.faults.epoch.fetch_add(1, Ordering::SeqCst);
        let durable = names.durable.clone();
        for (path, handle) in &durable {
            let mut file = handle.lock();
            let unsynced = file.data.len() - file.synced;
            let kept = file.synced + keep(path, unsynced).min(unsynced);
            file.data.truncate(kept);
            file.synced = kept;
        }
        names.live = durable;
    }

    /// Bytes of a file as written (tests corrupt logs through this).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.names
            .lock()
            .live
            .get(path)
            .map(|h| h.lock().data.clone())
    }

    /// Replaces a file's bytes (written and durable).
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let names = self.names.lock();
        if let Some(h) = names.live.get(path) {
            let mut file = h.lock();
            file.synced = bytes.len();
            file.data = bytes;
        }
    }

    fn check_sync(&self) -> io::Result<()> {
        let left = self.faults.syncs_ok.load(Ordering::SeqCst);
        if left == u64::MAX {
            return Ok(());
        }
        if left == 0 {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.faults.syncs_ok.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn handle(&self, path: &Path) -> io::Result<SimHandle> {
        self.names
            .lock()
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }
}

struct SimWriter {
    file: SimHandle,
    storage: SimStorage,
    /// `SimFaults::epoch` when opened.
    epoch: u64,
}

impl SimWriter {
    fn check_alive(&self) -> io::Result<()> {
        if self.storage.faults.epoch.load(Ordering::SeqCst) != self.epoch {
            return Err(io::Error::other(
                "the process that opened this file lost power",
            ));
        }
        Ok(())
    }
}

impl StorageFile for SimWriter {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let faults = &self.storage.faults;
        while faults.hold_writes.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.check_alive()?;
        let left = faults.writes_ok.load(Ordering::SeqCst);
        if left == 0 {
            return Err(io::Error::other("injected write failure"));
        }
        if left != u64::MAX {
            faults.writes_ok.fetch_sub(1, Ordering::SeqCst);
        }
        let space = faults.space_bytes.load(Ordering::SeqCst);
        let mut file = self.file.lock();
        if space != u64::MAX {
            let fits = (space as usize).min(buf.len());
            file.data.extend_from_slice(&buf[..fits]);
            faults
                .space_bytes
                .store(space - fits as u64, Ordering::SeqCst);
            if fits < buf.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            return Ok(());
        }
        // Checked again under the file's lock, which `power_loss` also takes
        // (through the names' lock first): an append either lands before the
        // power goes or not at all.
        self.check_alive()?;
        file.data.extend_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.storage.check_sync()?;
        let mut file = self.file.lock();
        self.check_alive()?;
        file.synced = file.data.len();
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut names = self.names.lock();
        if !names.dirs.iter().any(|d| d == dir) {
            names.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let names = self.names.lock();
        if !names.dirs.iter().any(|d| d == dir) {
            return Err(not_found(dir));
        }
        Ok(names
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let data = self.handle(path)?.lock().data.clone();
        let len = data.len() as u64;
        Ok((Box::new(io::Cursor::new(data)), len))
    }
    fn read_range(&self, path: &Path, offset: u64, max_len: u64) -> io::Result<Vec<u8>> {
        let handle = self.handle(path)?;
        let file = handle.lock();
        let start = (offset.min(file.data.len() as u64)) as usize;
        let end = (offset.saturating_add(max_len).min(file.data.len() as u64)) as usize;
        Ok(file.data[start..end].to_vec())
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.handle(path)?.lock().data.len() as u64)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let file = SimHandle::default();
        self.names
            .lock()
            .live
            .insert(path.to_path_buf(), file.clone());
        Ok(Box::new(SimWriter {
            file,
            storage: self.clone(),
            epoch: self.faults.epoch.load(Ordering::SeqCst),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(SimWriter {
            file: self.handle(path)?,
            storage: self.clone(),
            epoch: self.faults.epoch.load(Ordering::SeqCst),
        }))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.check_sync()?;
        let handle = self.handle(path)?;
        let mut file = handle.lock();
        file.data.truncate(len as usize);
        file.synced = file.data.len();
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut names = self.names.lock();
        let file = names.live.remove(from).ok_or_else(|| not_found(from))?;
        names.live.insert(to.to_path_buf(), file);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.names
            .lock()
            .live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.check_sync()?;
        let mut names = self.names.lock();
        names.durable = names.live.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_file_appends_into_preallocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = FsStorage.create(&path).unwrap();
        f.append(b"head").unwrap();
        f.preallocate(100_000).unwrap();
        f.append(b"-one").unwrap();
        f.preallocate(50).unwrap(); // never shrinks
        f.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 100_000);
        assert_eq!(&bytes[..8], b"head-one");
        assert!(bytes[8..].iter().all(|&b| b == 0));
        // Reopened (after the caller cut the zeros), appends go at the end.
        FsStorage.truncate(&path, 8).unwrap();
        let mut f = FsStorage.open_append(&path).unwrap();
        f.append(b"-two").unwrap();
        f.append(&[7u8; 200_000]).unwrap(); // past the old preallocation
        f.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..12], b"head-one-two");
        assert_eq!(bytes.len(), 12 + 200_000);
    }
}
