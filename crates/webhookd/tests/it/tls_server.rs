//! A test PKI made in the test (rcgen) and a local HTTPS server that requires a client
//! certificate signed by its CA, for the mutual TLS tests. The server counts the handshakes it
//! refused and the requests it answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// A CA that issues server and client certificates.
pub struct TestCa {
    pub cert_pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert_pem: cert.pem(), cert, key }
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue(CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap())
    }

    /// A client certificate with this common name.
    pub fn client(&self, common_name: &str) -> Issued {
        self.client_until(common_name, None)
    }

    /// A client certificate with this common name, valid until `not_after` (rcgen's default,
    /// 4096-01-01, when `None`).
    pub fn client_until(
        &self,
        common_name: &str,
        not_after: Option<time::OffsetDateTime>,
    ) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(not_after) = not_after {
            params.not_after = not_after;
        }
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }
}

pub struct TlsServer {
    pub addr: SocketAddr,
    answered: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    /// Where each connection came from.
    peers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
}

impl TlsServer {
    /// Serves with `certificate` and requires client certificates signed by `clients_ca`.
    pub async fn start(certificate: &Issued, clients_ca: &TestCa) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(clients_ca.cert.der().clone()).unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certificate.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![certificate.der.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (answered_, refused_) = (answered.clone(), refused.clone());
        let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let peers_ = peers.clone();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                peers_.lock().unwrap().push(peer);
                let (acceptor, answered, refused) =
                    (acceptor.clone(), answered_.clone(), refused_.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let service = service_fn(move |_request| {
                        answered.fetch_add(1, Ordering::SeqCst);
                        async { Ok::<_, Infallible>(hyper::Response::new(String::from("ok"))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsServer { addr, answered, refused, peers }
    }

    pub fn url(&self) -> String {
        format!("https://{}/hook", self.addr)
    }

    /// The address each connection came from, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}
