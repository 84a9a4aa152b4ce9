//! Outgoing TCP connections with a chosen source address (the load
//! harness spreads connections over `127.0.0.x` to get past one address's
//! 64k ephemeral ports).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::net::{poll_write, TcpStream};

/// Connects to `addr` from the current executor, bound to `source` when
/// given (the port is picked at connect time, `IP_BIND_ADDRESS_NO_PORT`),
/// with `TCP_NODELAY` set. Resolves once the handshake has completed.
pub async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nodelay(true)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // SAFETY: we own the freshly created socket and hand it over whole.
    let mut stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    // A zero-length send fails with EAGAIN while the handshake is in
    // progress, succeeds once it is done and reports a refused connect.
    futures_lite::future::poll_fn(|cx| poll_write(&mut stream, cx, &[])).await?;
    Ok(stream)
}

fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
