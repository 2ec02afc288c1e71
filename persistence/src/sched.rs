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
//! request (`sched_attr.sched_runtime` for the fair policies `SCHED_OTHER`,
//! `SCHED_BATCH` and `SCHED_IDLE`): a thread asking for
//! a short slice gets an earlier virtual deadline, so it preempts the running
//! thread when it wakes, without more CPU share than its nice value gives.
//! Unlike a lower nice value or a real-time policy, this needs no privilege.
//! Older kernels ignore the value for normal threads.
//!
//! With the slice alone the writer's wake-ups waited 40–52 µs. Where the
//! process may (`CAP_SYS_NICE`), the writer also lowers its nice value,
//! which gives it a larger weight: with both, 7–8 µs (BENCHMARKS.md,
//! "Decisions and what they rest on").

use std::io;
use std::time::Duration;

/// What became of a slice request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SliceOutcome {
    /// The kernel now reports the requested slice for the thread.
    Applied,
    /// The thread runs a policy outside the fair class (real-time or
    /// deadline, set by the operator); left as it is.
    NotFair,
    /// The kernel took the request but does not keep slices (before 6.12,
    /// or not Linux).
    Ignored,
}

/// Requests a time slice of `slice` for the calling thread, keeping its
/// policy and nice value. The kernel clamps the request to 100 µs–100 ms;
/// callers ask within that range.
#[cfg(target_os = "linux")]
pub(crate) fn request_slice(slice: Duration) -> io::Result<SliceOutcome> {
    let mut attr = get_attr()?;
    let fair = [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_IDLE]
        .iter()
        .any(|&p| attr.sched_policy == p as u32);
    if !fair {
        return Ok(SliceOutcome::NotFair);
    }
    let runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    attr.sched_runtime = runtime;
    // SAFETY: `attr` is a valid, initialized sched_attr whose `size` field
    // says how much of it the kernel may read; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0 as libc::pid_t,
            &attr as *const libc::sched_attr,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Before 6.12 a fair thread reads back 0; since, the slice in use.
    Ok(if get_attr()?.sched_runtime == runtime {
        SliceOutcome::Applied
    } else {
        SliceOutcome::Ignored
    })
}

/// Not Linux: nothing to ask.
#[cfg(not(target_os = "linux"))]
pub(crate) fn request_slice(_slice: Duration) -> io::Result<SliceOutcome> {
    Ok(SliceOutcome::Ignored)
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

/// Not Linux: left as it is.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nice(_nice: i32) -> io::Result<()> {
    Ok(())
}

/// The calling thread's scheduling attributes.
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
            0 as libc::pid_t,
            &mut attr as *mut libc::sched_attr,
            size as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel writes the size it filled in; `request_slice` passes the
    // struct back, so it must say how much of it there is to read.
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

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }

    /// On EEVDF kernels (6.12+) a fair thread gets the slice it asked for,
    /// and its nice value (raised here by one, which needs no privilege) is
    /// kept. Each case runs on its own thread: the settings are per thread
    /// and must not leak into other tests.
    #[test]
    fn slice_is_set_and_nice_kept() {
        std::thread::spawn(|| {
            let policy = get_attr().expect("sched_getattr").sched_policy;
            if policy != libc::SCHED_OTHER as u32 {
                eprintln!("skipped: the test thread runs policy {policy}");
                return;
            }
            let raised = (nice() + 1).min(19);
            set_nice(raised).unwrap();
            let asked = Duration::from_micros(150);
            let outcome = request_slice(asked).unwrap();
            assert_eq!(nice(), raised, "the nice value must not change");
            if kernel_at_least(6, 12) {
                assert_eq!(outcome, SliceOutcome::Applied);
                assert_eq!(get_attr().unwrap().sched_runtime, 150_000);
            } else {
                assert_eq!(outcome, SliceOutcome::Ignored);
            }
        })
        .join()
        .unwrap();
    }

    /// Raising the nice value needs no privilege; a slice requested
    /// afterwards keeps it; other threads are untouched.
    #[test]
    fn nice_is_set_per_thread() {
        let outside = nice();
        std::thread::spawn(move || {
            let raised = (outside + 2).min(19);
            set_nice(raised).unwrap();
            assert_eq!(nice(), raised);
            request_slice(Duration::from_micros(100)).unwrap();
            assert_eq!(nice(), raised);
        })
        .join()
        .unwrap();
        assert_eq!(nice(), outside, "only the calling thread changes");
    }
}
