//! A TCP proxy that tests cut and restore.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// A TCP proxy in front of a server (PostgreSQL, NATS, RabbitMQ) that the test can cut (every
/// connection dropped, new ones refused) and restore: an outage as webhookd sees it, without
/// stopping the server other tests use.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: Arc<Mutex<bool>>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy in front of the PostgreSQL of `database_url`, and that URL through the proxy.
    pub async fn before_postgres(database_url: &str) -> (Proxy, String) {
        let mut url = url::Url::parse(database_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let proxy = Proxy::start(upstream).await;
        url.set_port(Some(proxy.addr.port())).unwrap();
        (proxy, url.to_string())
    }

    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (cut_, connections_) = (cut.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *cut_.lock().await {
                    continue; // dropped: the connection is closed at once
                }
                let upstream = upstream.clone();
                connections_.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy { addr, cut, connections }
    }

    pub async fn cut(&self) {
        *self.cut.lock().await = true;
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }

    pub async fn restore(&self) {
        *self.cut.lock().await = false;
    }
}
