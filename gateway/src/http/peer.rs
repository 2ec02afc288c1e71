//! [`Peer`]: the connection a request came on, as the handlers see it.
//! A leaf of the HTTP layer: `dispatch` hands it to the handlers that need
//! it (the dashboard stream).

use std::net::{IpAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// The connection a request came on: the client's address, and the
/// socket's descriptor, which only the dashboard stream uses (to end a
/// subscriber's connection when it is dropped, see
/// `crate::dashboard::stream`). Copied into every request: no reference
/// count to touch per request.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    ip: IpAddr,
    fd: RawFd,
}

impl Peer {
    /// # Safety
    ///
    /// `fd` must be the open socket of the connection whose requests are
    /// given to [`handle`] with this peer, and stay open while that
    /// connection is served: the stream route duplicates it while routing.
    pub unsafe fn new(ip: IpAddr, fd: RawFd) -> Peer {
        Peer { ip, fd }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The connection's socket on a descriptor of its own (`dup`), so it
    /// stays valid however long the caller keeps it.
    pub(crate) fn socket(&self) -> std::io::Result<TcpStream> {
        // SAFETY: by `new`'s contract the descriptor is this connection's
        // open socket while its requests are routed, and this is called
        // only from `route`, synchronously inside `handle`, which hyper
        // calls from the connection it is serving.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        fd.try_clone_to_owned().map(TcpStream::from)
    }
}

/// Caps the kernel's send buffer of `socket` at about `bytes` (Linux
/// doubles the value for its bookkeeping, and stops autotuning it). Left
/// alone, a socket whose peer reads nothing can hold megabytes before a
/// write blocks.
pub(crate) fn limit_send_buffer(socket: &TcpStream, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor `socket` owns, with a pointer to
    // a live `c_int` and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
