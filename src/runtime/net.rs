//! TCP for executors: glommio's non-buffered streams.
//!
//! A non-buffered stream holds no receive buffer while idle: `poll_read`
//! tries a non-blocking `recv` into the caller's buffer and otherwise only
//! registers interest. The shard relies on that to read every connection
//! into one shard-wide buffer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

pub use glommio::net::{TcpListener, TcpStream};

/// Binds a listener on the current executor (SO_REUSEPORT is always set).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(io::Error::from)
}

/// Accepts one connection.
pub async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    listener.accept().await.map_err(io::Error::from)
}

/// Connects to `addr` from the current executor.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect(addr).await.map_err(io::Error::from)
}

/// Reads what is available into `buf`; `Pending` registers the waker.
pub fn poll_read(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    Pin::new(stream).poll_read(cx, buf)
}

/// Writes what the socket accepts from `buf`; `Pending` registers the waker.
pub fn poll_write(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    Pin::new(stream).poll_write(cx, buf)
}

/// Detaches the socket from this executor so another one can adopt it
/// (see [`adopt`]). The fd travels as an `OwnedFd`, which is `Send`.
pub fn detach(stream: TcpStream) -> io::Result<OwnedFd> {
    // glommio streams cannot give up their fd, so duplicate it and let the
    // stream close the original: the socket stays open through the copy.
    // SAFETY: the fd is open for as long as `stream` lives, and we only
    // borrow it to duplicate it.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()?;
    drop(stream);
    Ok(fd)
}

/// Adopts a socket detached on another executor.
pub fn adopt(fd: OwnedFd) -> TcpStream {
    // SAFETY: `fd` is an open, connected TCP socket we own (from `detach`).
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}
