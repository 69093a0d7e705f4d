//! Listeners as OPA's `--addr` describes them: `[http://|https://]host:port`
//! on TCP (without a scheme: `https` when a certificate is configured), or
//! `unix://PATH`, a socket file made with `--unix-socket-perm` and removed
//! when the listener closes, or `unix://@NAME`, a Linux abstract socket.
//! Unix sockets serve plain HTTP, as in OPA.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::Serves;

/// A bound listener.
pub(super) struct Listener {
    socket: Socket,
    pub serves: Serves,
    /// Whether connections are TLS.
    pub https: bool,
}

enum Socket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// The socket file, removed on close (none for an abstract socket).
        file: Option<PathBuf>,
        shown: String,
    },
}

/// An accepted connection.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Where an address listens.
#[derive(Debug, PartialEq, Eq)]
enum Address<'a> {
    Tcp { https: bool, host: &'a str },
    Unix(&'a str),
}

impl Listener {
    /// Binds `addr`. `tls`: a certificate is configured; `unix_perm`: the
    /// mode of socket files.
    pub async fn bind(addr: &str, serves: Serves, tls: bool, unix_perm: u32) -> Result<Listener> {
        let (socket, https) = match address(addr, tls)? {
            Address::Tcp { https, host } => {
                let socket = resolve(host).await?;
                let listener = TcpListener::bind(socket)
                    .await
                    .with_context(|| format!("cannot listen on `{addr}`"))?;
                (Socket::Tcp(listener), https)
            }
            Address::Unix(path) => (bind_unix(addr, path, unix_perm)?, false),
        };
        Ok(Listener {
            socket,
            serves,
            https,
        })
    }

    /// The TCP address bound (port resolved when `:0` was asked).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            Socket::Tcp(listener) => listener.local_addr().ok(),
            Socket::Unix { .. } => None,
        }
    }

    /// The address as logged at start-up.
    pub fn shown(&self) -> String {
        match &self.socket {
            Socket::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|e| e.to_string(), |a| a.to_string()),
            Socket::Unix { shown, .. } => shown.clone(),
        }
    }

    /// The next connection, and its peer's address (none over a unix socket).
    pub async fn accept(&self) -> std::io::Result<(Stream, Option<SocketAddr>)> {
        match &self.socket {
            Socket::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Decisions are small request/response pairs: do not batch them.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            Socket::Unix { listener, .. } => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // As Go's unix listener: the socket file goes with it.
        if let Socket::Unix {
            file: Some(file), ..
        } = self
        {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Parses `addr` as OPA's `parseURL`.
fn address(addr: &str, tls: bool) -> Result<Address<'_>> {
    let Some((scheme, rest)) = addr.split_once("://") else {
        return Ok(Address::Tcp {
            https: tls,
            host: addr,
        });
    };
    match scheme {
        "http" => Ok(Address::Tcp {
            https: false,
            host: rest,
        }),
        "https" if tls => Ok(Address::Tcp {
            https: true,
            host: rest,
        }),
        "https" => bail!("`{addr}`: TLS certificate required but not supplied"),
        "unix" if !rest.is_empty() => Ok(Address::Unix(rest)),
        "unix" => bail!("`{addr}`: no socket path"),
        _ => bail!("invalid url scheme {scheme:?}"),
    }
}

fn bind_unix(addr: &str, path: &str, perm: u32) -> Result<Socket> {
    let shown = format!("unix://{path}");
    if let Some(name) = path.strip_prefix('@') {
        let listener = bind_abstract(name).with_context(|| format!("cannot listen on `{addr}`"))?;
        return Ok(Socket::Unix {
            listener,
            file: None,
            shown,
        });
    }
    // As OPA: a socket file left by an earlier run is replaced.
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on `{addr}`"))?;
    let socket = Socket::Unix {
        listener,
        file: Some(PathBuf::from(path)),
        shown,
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))
        .with_context(|| format!("`{addr}`: cannot set the socket's permissions"))?;
    Ok(socket)
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &str) -> std::io::Result<UnixListener> {
    Err(std::io::Error::other(
        "abstract unix sockets exist on Linux only",
    ))
}

/// Reads `--unix-socket-perm`: an octal mode such as `755`; as Go's
/// `os.Chmod`, only the permission bits (`0o777`) are applied.
pub fn unix_socket_perm(text: &str) -> Result<u32> {
    u32::from_str_radix(text, 8)
        .map(|mode| mode & 0o777)
        .map_err(|_| anyhow!("invalid --unix-socket-perm `{text}`: an octal mode such as 755"))
}

/// Resolves `host:port` (host optional) to one socket address, preferring IPv4
/// as Go's listener does for `localhost`.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    let target = match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .with_context(|| format!("invalid listen address `{addr}`"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| anyhow!("listen address `{addr}` resolves to nothing"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{address, unix_socket_perm, Address};

    #[test]
    fn addresses_are_read_as_opa_reads_them() {
        let tcp = |https, host| Address::Tcp { https, host };
        assert_eq!(address(":8181", false).unwrap(), tcp(false, ":8181"));
        assert_eq!(address(":8181", true).unwrap(), tcp(true, ":8181"));
        assert_eq!(address("http://:8181", true).unwrap(), tcp(false, ":8181"));
        assert_eq!(address("https://:8181", true).unwrap(), tcp(true, ":8181"));
        assert_eq!(
            address("unix:///run/regent.sock", true).unwrap(),
            Address::Unix("/run/regent.sock")
        );
        let err = address("https://:8181", false).unwrap_err().to_string();
        assert!(
            err.contains("TLS certificate required but not supplied"),
            "{err}"
        );
        let err = address("ftp://:8181", true).unwrap_err().to_string();
        assert_eq!(err, "invalid url scheme \"ftp\"");
    }

    #[test]
    fn socket_permissions_are_octal() {
        assert_eq!(unix_socket_perm("755").unwrap(), 0o755);
        assert_eq!(unix_socket_perm("0660").unwrap(), 0o660);
        assert_eq!(unix_socket_perm("4755").unwrap(), 0o755);
        assert!(unix_socket_perm("9").is_err());
        assert!(unix_socket_perm("rw").is_err());
    }
}
