//! A plain socket's reads and writes as bare system calls (`syscall(2)`), not through glibc's
//! `recv`, `send` and `writev`.
//!
//! Those wrappers are cancellation points: in a process with more than one thread (tether
//! has its access-log writer, its signal and blocking threads) each call switches the thread's
//! asynchronous cancellation on and off around the system call, two atomic read-modify-write
//! loops. tether never cancels a thread, so that is ~30 instructions per call of pure overhead
//! — about a tenth of a WebSocket message's user-space cost. The calls here mean exactly what
//! std's do (std's `TcpStream` sends with `MSG_NOSIGNAL` and writes vectors with `writev`),
//! minus that; an interrupted call is made again, as a non-blocking socket's caller would.
//!
//! Only descriptors and byte slices: no tokio, no readiness (the caller's `try_io` owns that).

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

/// Reads what the socket holds into `buf`, up to its length: `Ok(0)` at the end of the stream,
/// `WouldBlock` when nothing is there.
pub fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is writable memory of `buf.len()` bytes for the duration of the call;
        // the kernel writes at most that many, and the null address arguments ask for no
        // source address.
        unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                buf.len(),
                0,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        }
    })
}

/// Sends what of `bytes` the socket takes (`MSG_NOSIGNAL`: a closed peer is an `EPIPE`
/// error, not a signal). With `more`, says that more follows (`MSG_MORE`): a last segment
/// shorter than the path's maximum is held by the kernel until more is sent or the socket is
/// shut down, when the FIN leaves in that same segment.
pub fn send(fd: RawFd, bytes: &[u8], more: bool) -> io::Result<usize> {
    let flags = match more {
        true => libc::MSG_NOSIGNAL | libc::MSG_MORE,
        false => libc::MSG_NOSIGNAL,
    };
    retry(|| {
        // SAFETY: `bytes` is readable memory of `bytes.len()` bytes for the duration of the
        // call; the null address arguments send on the connected socket.
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd,
                bytes.as_ptr(),
                bytes.len(),
                flags,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::socklen_t,
            )
        }
    })
}

/// Writes what of `slices`, in order, the socket takes.
pub fn writev(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // The kernel takes at most IOV_MAX (1024) vectors; more is an error, not a short write.
    let count = slices.len().min(1024);
    retry(|| {
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `struct iovec` on Unix, and each
        // points at readable memory of its length for the duration of the call.
        unsafe { libc::syscall(libc::SYS_writev, fd, slices.as_ptr(), count) }
    })
}

/// Makes the call until it is not interrupted; its result as a byte count or the error.
fn retry(mut call: impl FnMut() -> libc::c_long) -> io::Result<usize> {
    loop {
        let result = call();
        if result >= 0 {
            // A byte count, never more than the buffer's length (a usize).
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Read, Write};
    use std::mem::MaybeUninit;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        (near, far)
    }

    #[test]
    fn bytes_go_out_and_come_in_as_with_std() {
        let (near, mut far) = pair();
        assert_eq!(send(near.as_raw_fd(), b"one ", false).unwrap(), 4);
        let slices = [IoSlice::new(b"two "), IoSlice::new(b"three")];
        assert_eq!(writev(near.as_raw_fd(), &slices).unwrap(), 9);
        let mut got = [0u8; 13];
        far.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"one two three");

        far.write_all(b"back").unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16];
        let n = recv(near.as_raw_fd(), &mut buf).unwrap();
        // SAFETY: the kernel wrote the first `n` bytes.
        let read: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        assert_eq!(read, b"back");
    }

    #[test]
    fn an_empty_nonblocking_socket_would_block_and_a_closed_one_ends() {
        let (near, far) = pair();
        near.set_nonblocking(true).unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16];
        let error = recv(near.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        drop(far);
        // Closed: the end of the stream, then sending fails (with an error, not a signal).
        assert_eq!(recv(near.as_raw_fd(), &mut buf).unwrap(), 0);
        let failed = (0..100).find_map(|_| send(near.as_raw_fd(), b"x", false).err());
        assert!(failed.is_some(), "a send to a closed peer fails");
    }
}
