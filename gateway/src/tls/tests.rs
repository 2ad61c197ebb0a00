use std::os::unix::fs::PermissionsExt as _;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A real handshake over an in-memory pipe: the client trusts only `ca_pem`.
async fn handshake(server: Arc<ServerConfig>, ca_pem: &str, name: &str) -> Result<Vec<u8>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector
        .connect(name, a)
        .await
        .map_err(|e| e.to_string())?;
    let alpn = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(buf, b"ok");
    server_task.await.unwrap()?;
    Ok(alpn)
}

#[tokio::test]
async fn host_ca_persists_and_mints_leaves_for_names_and_ips() {
    let dir = std::env::temp_dir().join(format!("mcpgw-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = HostCa::load_or_create(&dir).unwrap();
    let mode = std::fs::metadata(dir.join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key must be private");
    let again = HostCa::load_or_create(&dir).unwrap();
    assert_eq!(ca.cert_pem(), again.cert_pem(), "the CA survives a restart");

    for name in ["mcp.internal", "10.0.3.17", "fd00::17"] {
        // Leaves minted by the reloaded CA verify against the CA certificate, with ALPN h2.
        let config = again.server_config(name).unwrap();
        assert!(
            Arc::ptr_eq(&config, &again.server_config(name).unwrap()),
            "leaves are cached"
        );
        assert_eq!(
            handshake(config, ca.cert_pem(), name).await,
            Ok(b"h2".to_vec()),
            "{name}"
        );
    }
    // A leaf for one name does not pass for another.
    let wrong = handshake(
        again.server_config("a.internal").unwrap(),
        ca.cert_pem(),
        "b.internal",
    )
    .await;
    assert!(wrong.is_err(), "{wrong:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
