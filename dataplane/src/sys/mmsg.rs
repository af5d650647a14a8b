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
        self.recv_inner(fd, None)
    }

    /// One recvmmsg(2) into the batch, noting the senders in `from` if given.
    fn recv_inner(
        &mut self,
        fd: RawFd,
        from: Option<&mut Vec<Option<std::net::SocketAddr>>>,
    ) -> io::Result<usize> {
        self.lens.clear();
        let n = self.capacity();
        // SAFETY: iovec, mmsghdr and sockaddr_storage are plain C structs for which all-zero
        // is valid.
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        let named = from.is_some();
        for (i, ((v, h), name)) in iov
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(names.iter_mut())
            .take(n)
            .enumerate()
        {
            // SAFETY: `i < capacity`: the piece `[i * size, (i + 1) * size)` lies inside
            // `data`; the pieces are disjoint.
            v.iov_base = unsafe { base.add(i * self.size) }.cast();
            v.iov_len = self.size;
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            if named {
                h.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            }
        }
        // SAFETY: `hdrs[..n]` point at `iov[..n]` (disjoint, writable pieces of `self.data`)
        // and, if named, at `names[..n]`, all outliving the call; the kernel writes at most
        // `iov_len` bytes into each buffer and at most `msg_namelen` into each name. `fd`
        // belongs to a socket the caller holds.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let r = count(r)?;
        self.lens.extend(
            hdrs[..r]
                .iter()
                .map(|h| (h.msg_len as usize).min(self.size)),
        );
        if let Some(from) = from {
            from.extend(names[..r].iter().map(ipv4_of));
        }
        Ok(r)
    }
}

/// An IPv4 sender's address from a `sockaddr_storage` filled by the kernel.
fn ipv4_of(sa: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    if i32::from(sa.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says the storage holds a sockaddr_in, which it is large and aligned
    // enough for.
    let sin = unsafe { &*(std::ptr::from_ref(sa).cast::<libc::sockaddr_in>()) };
    Some(std::net::SocketAddr::from((
        std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    )))
}

/// Datagrams received with their senders' addresses ([`RecvBatch::recv_from`]).
#[derive(Debug, Default)]
pub struct Senders(Vec<Option<std::net::SocketAddr>>);

impl Senders {
    /// The sender of the `i`th datagram of the last receive (IPv4 only).
    pub fn get(&self, i: usize) -> Option<std::net::SocketAddr> {
        self.0.get(i).copied().flatten()
    }
}

impl RecvBatch {
    /// Like [`RecvBatch::recv`], also noting each datagram's sender in `from` (for UDP
    /// sockets: a VXLAN port learns behind whom each MAC sits).
    pub fn recv_from(&mut self, fd: RawFd, from: &mut Senders) -> io::Result<usize> {
        from.0.clear();
        self.recv_inner(fd, Some(&mut from.0))
    }

    /// Narrows the `i`th datagram of the last receive to `len` bytes starting at `start`
    /// (a tunnel strips its header); `len` 0 drops it.
    pub fn narrow(&mut self, i: usize, start: usize, len: usize) {
        let at = i * self.size;
        let have = self.lens[i];
        let start = start.min(have);
        let len = len.min(have - start);
        self.data.copy_within(at + start..at + start + len, at);
        self.lens[i] = len;
    }
}

/// Sends one datagram per frame to the destination of the same index on the UDP socket `fd`,
/// each `header` followed by the frame (gathered, not copied), in one sendmmsg(2); how many
/// went.
pub fn send_batch_to(
    fd: RawFd,
    header: &[u8],
    frames: &[&[u8]],
    dsts: &[socket2::SockAddr],
) -> io::Result<usize> {
    let n = frames.len().min(dsts.len()).min(MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for ((v, h), (frame, dst)) in iov
        .iter_mut()
        .zip(hdrs.iter_mut())
        .zip(frames.iter().zip(dsts))
    {
        v[0].iov_base = header.as_ptr().cast_mut().cast();
        v[0].iov_len = header.len();
        v[1].iov_base = frame.as_ptr().cast_mut().cast();
        v[1].iov_len = frame.len();
        h.msg_hdr.msg_iov = v.as_mut_ptr();
        h.msg_hdr.msg_iovlen = 2;
        h.msg_hdr.msg_name = dst.as_ptr().cast_mut().cast();
        h.msg_hdr.msg_namelen = dst.len();
    }
    // The headers point at `iov` (at `header`, the caller's frames and addresses), all of
    // which outlive the call.
    sendmmsg(fd, &mut hdrs[..n])
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
    // The headers point at `iov`, which points at the caller's frames; all outlive the call.
    sendmmsg(fd, &mut hdrs[..n])
}

/// sendmmsg(2) of `hdrs`, non-blocking; how many went (0 if none could: the receiver's queue
/// is full).
fn sendmmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: every header's pointers (iovecs, buffers, names) are valid for the call, as
    // the callers above set them up; the kernel only reads them and writes `msg_len`. `fd`
    // belongs to a socket the caller holds.
    let r = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    count(r)
}

/// A batch call's result: its count, 0 for `EAGAIN` (nothing waiting, or no room), else the
/// error.
fn count(r: libc::c_int) -> io::Result<usize> {
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
    fn addressed_batches_carry_a_header_and_report_their_senders() {
        use std::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = socket2::SockAddr::from(rx.local_addr().unwrap());
        let frames: [&[u8]; 3] = [b"one", b"three", b"five!"];
        let dsts = vec![dst; frames.len()];
        assert_eq!(
            send_batch_to(tx.as_raw_fd(), b"HDR:", &frames, &dsts).unwrap(),
            3
        );
        let mut batch = RecvBatch::new(8, 64);
        let mut from = Senders::default();
        assert_eq!(batch.recv_from(rx.as_raw_fd(), &mut from).unwrap(), 3);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&batch.frame(i)[..4], b"HDR:");
            assert_eq!(from.get(i), Some(tx.local_addr().unwrap()));
            batch.narrow(i, 4, f.len());
            assert_eq!(batch.frame(i), *f);
        }
        batch.narrow(0, 0, 0);
        assert!(batch.frame(0).is_empty());
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
