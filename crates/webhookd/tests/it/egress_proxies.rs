//! Real egress proxies for the `--egress-proxy` tests, as child processes on loopback: Debian's
//! `tinyproxy` (HTTP) and `microsocks` (SOCKS5). Each connects onward from [`PROXY_SOURCE`], so
//! a request that arrives from any other address did not go through it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The address both proxies connect to destinations from (webhookd itself connects from
/// 127.0.0.1: any of 127.0.0.0/8 is loopback on Linux).
pub const PROXY_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The credentials both proxies require.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret";

/// A proxy process, killed when dropped.
pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    scheme: &'static str,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// tinyproxy requiring Basic credentials; `None` (a skip) when it is not installed outside CI.
    pub fn tinyproxy() -> Option<ProxyProcess> {
        let binary = installed("/usr/bin/tinyproxy")?;
        Some(Self::start("http", |dir, port| {
            let config = dir.join("tinyproxy.conf");
            let log = dir.join("tinyproxy.log");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListen 127.0.0.1\nBind {PROXY_SOURCE}\nAllow 127.0.0.1\n\
                     LogLevel Info\nLogFile \"{}\"\nMaxClients 100\nTimeout 30\n\
                     BasicAuth {USER} {PASSWORD}\n",
                    log.display()
                ),
            )
            .unwrap();
            let mut command = Command::new(binary);
            command.arg("-d").arg("-c").arg(&config);
            command
        }))
    }

    /// microsocks requiring credentials; `None` (a skip) when it is not installed outside CI.
    pub fn microsocks() -> Option<ProxyProcess> {
        let binary = installed("/usr/bin/microsocks")?;
        Some(Self::start("socks5", |_, port| {
            let mut command = Command::new(binary);
            command.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-b"]);
            command.arg(PROXY_SOURCE.to_string()).args(["-u", USER, "-P", PASSWORD]);
            command
        }))
    }

    /// The proxy's URL, with its credentials: the `--egress-proxy` value.
    pub fn url(&self) -> String {
        format!("{}://{USER}:{PASSWORD}@{}", self.scheme, self.addr)
    }

    /// The proxy's URL without credentials (which the proxy refuses).
    pub fn url_without_credentials(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Starts the command `make` returns for a free port, and waits until the port accepts
    /// connections; a port taken in between by someone else makes it try another.
    fn start(scheme: &'static str, make: impl Fn(&Path, u16) -> Command) -> ProxyProcess {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = make(dir.path(), port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if accepting(&mut child, addr) {
                return ProxyProcess { child, addr, scheme, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{scheme} proxy did not start on any of 5 free ports");
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `path` when it is installed, else `None` with a notice; under CI a missing proxy fails the
/// test rather than skipping it.
fn installed(path: &'static str) -> Option<&'static str> {
    if Path::new(path).exists() {
        return Some(path);
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false") {
        panic!("CI is set but {path} is missing: apt-get install {name}");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: egress proxy test ({path} is not installed)");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `addr` accepts a connection while `child` runs; `false` when it exited first
/// (its port was taken) or never listened.
fn accepting(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return child.try_wait().unwrap().is_none();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
