//! The event socket's receive low-water mark (`SO_RCVLOWAT`): while the reader pauses between
//! reads, the kernel wakes it only once that many bytes wait, so a pause never lets the socket
//! fill up and make Asterisk's writes stall.

use std::os::fd::{AsRawFd, RawFd};

use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// The mark of one connected socket, remembered so that setting the same value again costs no
/// system call.
pub(crate) struct LowWater {
    fd: Option<RawFd>,
    current: usize,
}

impl LowWater {
    /// The mark of `stream`'s socket, which starts at one byte (the kernel's default). The
    /// socket must outlive every [`LowWater::set`] on it: the reader keeps both for one
    /// connection.
    pub(crate) fn of(stream: &MaybeTlsStream<TcpStream>) -> Self {
        match stream {
            MaybeTlsStream::Plain(tcp) => Self::on(tcp.as_raw_fd()),
            MaybeTlsStream::Rustls(tls) => Self::on(tls.get_ref().0.as_raw_fd()),
            _ => LowWater { fd: None, current: 1 },
        }
    }

    fn on(fd: RawFd) -> Self {
        LowWater { fd: Some(fd), current: 1 }
    }

    /// Makes the socket readable (for epoll) only once `bytes` wait, or it closed; false when
    /// the mark could not be set, and the socket wakes its reader for every byte as before.
    pub(crate) fn set(&mut self, bytes: usize) -> bool {
        let bytes = bytes.max(1);
        if self.current == bytes {
            return true;
        }
        let Some(fd) = self.fd else { return false };
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `fd` is the open socket of the connection the caller reads (see `of`), and
        // `value` is a live c_int of the size passed, read by the kernel during the call only.
        let result = unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, (&value as *const libc::c_int).cast(), size)
        };
        if result != 0 {
            tracing::debug!("cannot set the ARI socket's receive low-water mark: {}", std::io::Error::last_os_error());
            // Never try again on this socket: its reader falls back to short pauses.
            self.fd = None;
            return false;
        }
        self.current = bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Bytes waiting in the socket's receive queue.
    fn queued(fd: RawFd) -> usize {
        let mut count: libc::c_int = 0;
        // SAFETY: `fd` is an open socket of the test and `count` a live c_int for FIONREAD's answer.
        let result = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count as *mut libc::c_int) };
        assert_eq!(result, 0, "FIONREAD: {}", std::io::Error::last_os_error());
        usize::try_from(count).expect("a count")
    }

    /// Whether the kernel reports the socket readable now (the rule epoll applies too).
    fn readable_now(fd: RawFd) -> bool {
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd for an open socket of the test; a zero timeout never blocks.
        let result = unsafe { libc::poll(&mut poll, 1, 0) };
        assert!(result >= 0, "poll: {}", std::io::Error::last_os_error());
        poll.revents & libc::POLLIN != 0
    }

    fn until_queued(fd: RawFd, bytes: usize) {
        while queued(fd) < bytes {
            std::thread::yield_now();
        }
    }

    /// Below the mark the socket is not readable; past it, it is; lowering the mark makes what
    /// already waits readable at once.
    #[test]
    fn a_socket_is_readable_only_past_its_mark() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut writer = std::net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
        let (mut reader, _) = listener.accept().expect("accept");
        reader.set_nonblocking(true).expect("non-blocking");
        let fd = reader.as_raw_fd();

        let mut mark = LowWater::on(fd);
        assert!(mark.set(4096), "SO_RCVLOWAT is supported on Linux TCP sockets");
        writer.write_all(&[b'x'; 100]).expect("write");
        until_queued(fd, 100);
        assert!(!readable_now(fd), "readable with 100 bytes below a mark of 4096");

        writer.write_all(&[b'y'; 5000]).expect("write");
        until_queued(fd, 5100);
        assert!(readable_now(fd), "not readable past the mark");
        let mut buffer = vec![0u8; 8192];
        let mut taken = 0;
        while taken < 5100 {
            taken += reader.read(&mut buffer).expect("a non-blocking read takes whatever waits");
        }

        writer.write_all(&[b'z'; 10]).expect("write");
        until_queued(fd, 10);
        assert!(!readable_now(fd));
        assert!(mark.set(1));
        assert!(readable_now(fd), "lowering the mark did not make the waiting bytes readable");
        assert!(mark.set(1), "setting the same mark again needs no system call and succeeds");
    }
}
