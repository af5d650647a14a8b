//! Many datagrams per system call: recvmmsg(2) into a [`RecvBatch`], sendmmsg(2) of a list of
//! frames. Used on the switch's datagram sockets (VDE data sockets), where one syscall per
//! frame was most of the switch's cost.

use std::{io, os::fd::RawFd};

/// Most datagrams one call moves.
pub const MAX_BATCH: usize = 64;

/// Room for up to [`MAX_BATCH`] datagrams of up to `size` bytes each, filled by one
/// [`RecvBatch::recv`].
#[derive(Debug)]
pub struct RecvBatch {
    data: Vec<u8>,
    size: usize,
    lens: Vec<usize>,
}

impl RecvBatch {
    /// A batch of `frames` (at most [`MAX_BATCH`]) buffers of `size` bytes. A datagram longer
    /// than `size` arrives cut to `size`: give one byte more than the largest valid frame to
    /// tell those apart.
    pub fn new(frames: usize, size: usize) -> Self {
        let frames = frames.clamp(1, MAX_BATCH);
        RecvBatch {
            data: vec![0; frames * size],
            size,
            lens: Vec::with_capacity(frames),
        }
    }

    /// Buffers in the batch.
    pub fn capacity(&self) -> usize {
        self.data.len() / self.size
    }

    /// Datagrams received by the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The `i`th datagram of the last receive.
    pub fn frame(&self, i: usize) -> &[u8] {
        let at = i * self.size;
        &self.data[at..at + self.lens[i]]
    }

    /// The `i`th datagram of the last receive, to change in place.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let at = i * self.size;
        &mut self.data[at..at + self.lens[i]]
    }

    /// Receives what is waiting on the non-blocking datagram socket `fd`, up to the batch's
    /// capacity, in one call; the count (0 if nothing was waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.lens.clear();
        let n = self.capacity();
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for (i, (v, h)) in iov.iter_mut().zip(hdrs.iter_mut()).take(n).enumerate() {
            // SAFETY: `i < capacity`, so the piece `[i * size, (i + 1) * size)` lies inside
            // `data`; the pieces are disjoint.
            v.iov_base = unsafe { base.add(i * self.size) }.cast();
            v.iov_len = self.size;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `hdrs[..n]` point at `iov[..n]`, which point at disjoint, writable pieces of
        // `self.data`; all of them outlive the call, and the kernel writes at most `iov_len`
        // bytes into each and the lengths into `msg_len`. `fd` belongs to a socket the caller
        // holds.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(0),
                _ => Err(e),
            };
        }
        let r = r as usize;
        self.lens.extend(
            hdrs[..r]
                .iter()
                .map(|h| (h.msg_len as usize).min(self.size)),
        );
        Ok(r)
    }
}

impl RecvBatch {
    /// Fills the batch one datagram at a time from `next` (which writes one into the buffer
    /// it is given and says its length, or `None` when nothing is waiting): for sockets
    /// whose datagrams need more than recvmmsg gives back, such as the sender's address.
    pub fn fill(
        &mut self,
        mut next: impl FnMut(&mut [u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<usize> {
        self.lens.clear();
        for i in 0..self.capacity() {
            let at = i * self.size;
            match next(&mut self.data[at..at + self.size])? {
                Some(n) => self.lens.push(n.min(self.size)),
                None => break,
            }
        }
        Ok(self.lens.len())
    }
}

/// Sends `frames` (at most [`MAX_BATCH`]) on the connected, non-blocking datagram socket `fd`
/// in one call; how many went. Fewer than all means the receiver's queue is full (the rest
/// would block) or the peer is gone: the caller drops the rest, as a switch does.
pub fn send_batch(fd: RawFd, frames: &[&[u8]]) -> io::Result<usize> {
    let n = frames.len().min(MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for ((v, h), f) in iov.iter_mut().zip(hdrs.iter_mut()).zip(frames) {
        v.iov_base = f.as_ptr().cast_mut().cast();
        v.iov_len = f.len();
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..n]` point at `iov[..n]`, which point at the caller's frames; the kernel
    // only reads them, and all outlive the call. `fd` belongs to a socket the caller holds.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(0),
            _ => Err(e),
        };
    }
    Ok(r as usize)
}

#[cfg(test)]
mod tests {
    use std::os::{fd::AsRawFd, unix::net::UnixDatagram};

    use super::*;

    #[test]
    fn a_batch_goes_and_comes_in_one_call_each_in_order_and_cut_to_size() {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let frames: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(a.as_raw_fd(), &refs).unwrap(), 10);
        let mut batch = RecvBatch::new(4, 25);
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 4);
        for (i, f) in frames.iter().take(4).enumerate() {
            assert_eq!(batch.frame(i), &f[..]);
        }
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 4);
        // 24 and 25 bytes fit; 26 and 27 are cut to the buffer.
        assert_eq!(batch.frame(3).len(), 25);
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 2);
        assert_eq!(batch.frame(1), &frames[9][..25]);
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 0);
        assert!(batch.is_empty());
    }

    #[test]
    fn a_full_receiver_takes_what_fits_and_a_gone_one_is_an_error() {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let f = [0u8; 1000];
        let refs = [&f[..]; MAX_BATCH];
        let mut total = 0;
        loop {
            let n = send_batch(a.as_raw_fd(), &refs).unwrap();
            total += n;
            if n < MAX_BATCH {
                break;
            }
            assert!(total < 1_000_000, "the queue never filled");
        }
        assert_eq!(send_batch(a.as_raw_fd(), &refs).unwrap(), 0);
        drop(b);
        assert!(send_batch(a.as_raw_fd(), &refs).is_err());
    }
}
