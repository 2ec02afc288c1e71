//! Asking the scheduler to run the log writer promptly.
//!
//! Under `fsync = "always"` every acknowledgement waits for the writer, and
//! the writer wakes three times per batch (first event, end of the
//! group-commit delay, end of the fdatasync). On a busy machine each wake-up
//! queued behind the I/O threads for ~100 µs on average (per-thread
//! `schedstat` under wrk on 2 cores, 250–310 ms of run-queue wait per second
//! for ~90 ms of CPU), which stretched every sync cycle and left the I/O
//! threads idle, all their connections waiting for durability.
//!
//! Linux's EEVDF scheduler (6.12 and later) takes a per-thread time slice
//! request (`sched_attr.sched_runtime` for `SCHED_OTHER`): a thread asking for
//! a short slice gets an earlier virtual deadline, so it preempts the running
//! thread when it wakes, without more CPU share than its nice value gives.
//! Unlike a lower nice value or a real-time policy, this needs no privilege.
//! Older kernels ignore the value for normal threads.
//!
//! Where the process may (`CAP_SYS_NICE`), the writer also lowers its nice
//! value, which gives it a larger weight: its wake-ups then waited 15–20 µs
//! instead of 40–50 µs with the slice alone.

use std::io;
use std::time::Duration;

/// Requests a time slice of `slice` for the calling thread, keeping its
/// policy and nice value. Returns the slice the kernel now reports for the
/// thread: `Some(slice)` where it took effect, `None` where the thread is
/// not a normal (`SCHED_OTHER`) thread or the kernel does not keep slices.
/// The kernel clamps the request to 100 µs–100 ms.
#[cfg(target_os = "linux")]
pub(crate) fn request_slice(slice: Duration) -> io::Result<Option<Duration>> {
    let mut attr = get_attr()?;
    if attr.sched_policy != libc::SCHED_OTHER as u32 {
        return Ok(None);
    }
    attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid, initialized sched_attr whose `size` field
    // says how much of it the kernel may read; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    current_slice()
}

/// Non-Linux: nothing to ask; the slice is whatever the OS gives.
#[cfg(not(target_os = "linux"))]
pub(crate) fn request_slice(_slice: Duration) -> io::Result<Option<Duration>> {
    Ok(None)
}

/// Sets the calling thread's nice value (on Linux, `setpriority` with
/// thread id 0 changes only the calling thread). Lowering it below what the
/// thread has needs `CAP_SYS_NICE`; the error then is `PermissionDenied`.
#[cfg(target_os = "linux")]
pub(crate) fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: setpriority has no memory-safety preconditions.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Non-Linux: left as it is.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nice(_nice: i32) -> io::Result<()> {
    Ok(())
}

/// The calling thread's requested slice, `None` if it has none (the kernel's
/// default applies).
#[cfg(target_os = "linux")]
pub(crate) fn current_slice() -> io::Result<Option<Duration>> {
    let attr = get_attr()?;
    Ok((attr.sched_runtime != 0).then(|| Duration::from_nanos(attr.sched_runtime)))
}

#[cfg(target_os = "linux")]
fn get_attr() -> io::Result<libc::sched_attr> {
    let size = std::mem::size_of::<libc::sched_attr>();
    // SAFETY: sched_attr is plain integers; all-zero is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size` bytes into `attr`, which is
    // exactly that large; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut libc::sched_attr,
            size as libc::c_uint,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel fills in the size it wrote; set_attr reads the same size.
    attr.size = size as u32;
    Ok(attr)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice() -> i32 {
        // SAFETY: getpriority has no memory-safety preconditions. Thread id
        // 0 is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    /// Where the kernel keeps slices (6.12+), the thread reports the slice
    /// it asked for, and its nice value (raised here, which needs no
    /// privilege) is left as it was. Runs on its own thread: the settings
    /// are per thread and must not leak into other tests.
    #[test]
    fn slice_is_set_and_nice_kept() {
        std::thread::spawn(|| {
            // SAFETY: as in `nice`.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) }, 0);
            let before = current_slice().unwrap();
            let asked = Duration::from_micros(150);
            let got = request_slice(asked).unwrap();
            assert_eq!(nice(), 3, "the nice value must not change");
            match got {
                Some(slice) => assert_eq!(slice, asked),
                // An older kernel: nothing changed.
                None => assert_eq!(current_slice().unwrap(), before),
            }
            if kernel_at_least(6, 12) {
                assert_eq!(got, Some(asked), "EEVDF kernels keep the slice");
            }
        })
        .join()
        .unwrap();
    }

    /// Raising the nice value needs no privilege; the slice requested
    /// afterwards keeps it.
    #[test]
    fn nice_is_set_per_thread() {
        let outside = nice();
        std::thread::spawn(|| {
            set_nice(7).unwrap();
            assert_eq!(nice(), 7);
            request_slice(Duration::from_micros(100)).unwrap();
            assert_eq!(nice(), 7);
        })
        .join()
        .unwrap();
        assert_eq!(nice(), outside, "only the calling thread changes");
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }
}
