//! Mutual TLS for links: both ends present a node certificate and both verify the other's
//! against the cluster CA alone. TLS 1.3 only (QUIC requires it), ring as the provider.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

use super::ca::NodeCert;
use super::name::node_name_from_cert;

/// ALPN protocol id of the link protocol. A peer speaking anything else fails the
/// handshake, so a future incompatible version can refuse old nodes cleanly.
pub const LINK_ALPN: &[u8] = b"sluice-link/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA certificate is not a usable trust anchor: {0}")]
    TrustAnchor(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("QUIC crypto configuration: {0}")]
    Quic(String),
}

/// Everything one node needs to open and accept links: its identity and the CA it trusts.
#[derive(Clone)]
pub struct LinkTls {
    name: String,
    server: Arc<QuicServerConfig>,
    client: Arc<QuicClientConfig>,
    /// Like `client`, but any node of the CA is accepted whatever its name: for dialing
    /// an address whose node is not known yet (a seed, a member gossip told us of).
    probe: Arc<QuicClientConfig>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit rather than the process default: another crate enabling a second provider
    // must not change (or make ambiguous) what the links use.
    Arc::new(rustls::crypto::ring::default_provider())
}

impl LinkTls {
    /// Configures a node that presents `node` and trusts only `ca`.
    pub fn new(ca: &CertificateDer<'static>, node: &NodeCert) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::TrustAnchor(e.to_string()))?;
        let roots = Arc::new(roots);
        let chain = vec![node.cert_der().clone()];

        // Anonymous clients are refused: `allow_unauthenticated` is never set.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::TrustAnchor(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), node.key_der())?;
        server.alpn_protocols = vec![LINK_ALPN.to_vec()];

        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), node.key_der())?;
        client.alpn_protocols = vec![LINK_ALPN.to_vec()];

        let any_node = Arc::new(AnyNodeOfCa(
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::TrustAnchor(e.to_string()))?,
        ));
        let mut probe = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(any_node)
            .with_client_auth_cert(chain, node.key_der())?;
        probe.alpn_protocols = vec![LINK_ALPN.to_vec()];

        Ok(Self {
            name: node.name().to_owned(),
            server: Arc::new(
                QuicServerConfig::try_from(server).map_err(|e| TlsError::Quic(e.to_string()))?,
            ),
            client: Arc::new(
                QuicClientConfig::try_from(client).map_err(|e| TlsError::Quic(e.to_string()))?,
            ),
            probe: Arc::new(
                QuicClientConfig::try_from(probe).map_err(|e| TlsError::Quic(e.to_string()))?,
            ),
        })
    }

    /// This node's name, as its certificate states it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A quinn server configuration that requires a client certificate from the CA.
    pub fn server_config(&self, transport: Arc<quinn::TransportConfig>) -> quinn::ServerConfig {
        let mut config = quinn::ServerConfig::with_crypto(self.server.clone());
        config.transport_config(transport);
        config
    }

    /// A quinn client configuration that accepts only servers certified by the CA and
    /// presents this node's certificate.
    pub fn client_config(&self, transport: Arc<quinn::TransportConfig>) -> quinn::ClientConfig {
        let mut config = quinn::ClientConfig::new(self.client.clone());
        config.transport_config(transport);
        config
    }
}

impl LinkTls {
    /// A quinn client configuration that accepts any server certified by the CA, whatever
    /// node it is: the caller reads the name from the connection.
    pub fn probe_config(&self, transport: Arc<quinn::TransportConfig>) -> quinn::ClientConfig {
        let mut config = quinn::ClientConfig::new(self.probe.clone());
        config.transport_config(transport);
        config
    }
}

/// The CA's own chain check, without the name check: which node answered is read from
/// its (verified) certificate afterwards.
#[derive(Debug)]
struct AnyNodeOfCa(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyNodeOfCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The node name in the verified certificate a connection's peer presented. `None` if
/// the handshake has not finished or the certificate names no node.
pub fn peer_node_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    node_name_from_cert(chain.first()?)
}
