//! TLS for every gRPC endpoint (rustls through tonic): certificates and keys come from PEM files
//! named in each binary's configuration, and every problem names the key it came from. Also a
//! small certificate authority for `shoal certs` and `shoal local`.
//!
//! Layout of the keys, the same in every binary:
//! - a server (coordinator, parameter server) has `tls_cert` + `tls_key`, and `tls_client_ca` to
//!   require client certificates signed by that CA (mutual TLS);
//! - a client (worker, parameter server towards the coordinator, CLI) has `tls_ca` to trust, and
//!   `tls_cert` + `tls_key` to present when the server asks for a certificate.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

fn read(key: &str, path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read `{path}`: {e}"))?;
    if !text.contains("-----BEGIN ") {
        return Err(format!("{key}: `{path}` is not a PEM file"));
    }
    Ok(text)
}

/// The server side: the endpoint's own certificate, and optionally the CA its clients' certificates
/// must chain to.
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
}

impl ServerTls {
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty() || !self.key.is_empty()
    }

    /// Reads the files; `None` when TLS is off. A client CA without a certificate is an error.
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, String> {
        if !self.enabled() {
            if !self.client_ca.is_empty() {
                return Err("tls_client_ca: needs tls_cert and tls_key (mutual TLS is on top of TLS)".into());
            }
            return Ok(None);
        }
        if self.cert.is_empty() || self.key.is_empty() {
            return Err(format!(
                "{}: required with the other",
                if self.cert.is_empty() { "tls_cert" } else { "tls_key" }
            ));
        }
        let identity = Identity::from_pem(read("tls_cert", &self.cert)?, read("tls_key", &self.key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if !self.client_ca.is_empty() {
            config = config.client_ca_root(Certificate::from_pem(read("tls_client_ca", &self.client_ca)?));
        }
        Ok(Some(config))
    }

    /// The same certificate, key and client CA as a rustls configuration, for the HTTPS endpoints
    /// (HTTP/1.1 only); `None` when TLS is off.
    pub fn rustls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if self.load()?.is_none() {
            return Ok(None);
        }
        let certs = CertificateDer::pem_slice_iter(read("tls_cert", &self.cert)?.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_cert: `{}`: {e}", self.cert))?;
        let key = PrivateKeyDer::from_pem_slice(read("tls_key", &self.key)?.as_bytes())
            .map_err(|e| format!("tls_key: `{}`: {e}", self.key))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = if self.client_ca.is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(read("tls_client_ca", &self.client_ca)?.as_bytes()) {
                let cert = cert.map_err(|e| format!("tls_client_ca: `{}`: {e}", self.client_ca))?;
                roots.add(cert).map_err(|e| format!("tls_client_ca: `{}`: {e}", self.client_ca))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| format!("tls_client_ca: `{}`: {e}", self.client_ca))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config =
            builder.with_single_cert(certs, key).map_err(|e| format!("tls_cert, tls_key: do not match: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(std::sync::Arc::new(config)))
    }
}

/// The client side: whom to trust, and what to present when asked.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    /// The name the server's certificate must carry, when it differs from the host in the URL.
    pub server_name: String,
    config: Option<ClientTlsConfig>,
}

impl ClientTls {
    /// Reads the files. TLS is on when `ca` is set.
    pub fn new(ca: &str, cert: &str, key: &str, server_name: &str) -> Result<Self, String> {
        let mut me = Self {
            ca: ca.to_owned(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            server_name: server_name.to_owned(),
            config: None,
        };
        if cert.is_empty() != key.is_empty() {
            return Err(format!("{}: required with the other", if cert.is_empty() { "tls_cert" } else { "tls_key" }));
        }
        if ca.is_empty() {
            if !cert.is_empty() {
                return Err("tls_ca: required to present a client certificate (TLS is on when tls_ca is set)".into());
            }
            return Ok(me);
        }
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("tls_ca", ca)?));
        if !cert.is_empty() {
            config = config.identity(Identity::from_pem(read("tls_cert", cert)?, read("tls_key", key)?));
        }
        if !server_name.is_empty() {
            config = config.domain_name(server_name);
        }
        me.config = Some(config);
        Ok(me)
    }

    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// `host:port` or a URL, as a URL with the scheme TLS calls for.
    pub fn url(&self, addr: &str) -> String {
        match addr.split_once("://") {
            Some((_, rest)) if self.enabled() => format!("https://{rest}"),
            Some(_) => addr.to_owned(),
            None if self.enabled() => format!("https://{addr}"),
            None => format!("http://{addr}"),
        }
    }

    /// An endpoint for `addr` (`host:port` or a URL), with TLS when enabled.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(self.url(addr)).map_err(|e| format!("`{addr}` is not a URL: {e}"))?;
        match &self.config {
            Some(config) => endpoint.tls_config(config.clone()).map_err(|e| format!("tls: {e}")),
            None => Ok(endpoint),
        }
    }
}

/// Files written by [`generate`].
pub struct Generated {
    pub dir: PathBuf,
}

impl Generated {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// For coordinators, parameter servers and workers: serves and connects.
    pub fn node_cert(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node-key.pem")
    }
    /// For users of the client API (the CLI).
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client-key.pem")
    }
}

/// Creates a certificate authority and two certificates signed by it in `dir`: `node.pem` (server
/// and client use, valid for localhost, 127.0.0.1, ::1 and `hosts`) and `client.pem` (client use).
/// Private keys are written readable by the owner only.
pub fn generate(dir: &Path, hosts: &[String], days: u32) -> Result<Generated, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("cannot create a certificate: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let now = time_now();
    let until = now + std::time::Duration::from_secs(u64::from(days.max(1)) * 86_400);
    let validity = |p: &mut CertificateParams| {
        p.not_before = now.into();
        p.not_after = until.into();
    };

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Shoal cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    let node_key = KeyPair::generate().map_err(err)?;
    let mut node = CertificateParams::new(names).map_err(|e| format!("hosts: {e}"))?;
    node.distinguished_name.push(DnType::CommonName, "shoal-node");
    node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut node);
    let node_cert = node.signed_by(&node_key, &issuer).map_err(err)?;

    let client_key = KeyPair::generate().map_err(err)?;
    let mut client = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    client.distinguished_name.push(DnType::CommonName, "shoal-client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut client);
    let client_cert = client.signed_by(&client_key, &issuer).map_err(err)?;

    let out = Generated { dir: dir.to_path_buf() };
    write(&out.ca(), &ca_cert.pem(), false)?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), true)?;
    write(&out.node_cert(), &node_cert.pem(), false)?;
    write(&out.node_key(), &node_key.serialize_pem(), true)?;
    write(&out.client_cert(), &client_cert.pem(), false)?;
    write(&out.client_key(), &client_key.serialize_pem(), true)?;
    Ok(out)
}

fn time_now() -> std::time::SystemTime {
    // A minute of slack for clocks a little behind this one.
    std::time::SystemTime::now() - std::time::Duration::from_secs(60)
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_on_both_sides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = generate(dir.path(), &["shoal-0.example".into()], 1).expect("generate");
        let s = |p: PathBuf| p.display().to_string();
        let server = ServerTls { cert: s(g.node_cert()), key: s(g.node_key()), client_ca: s(g.ca()) };
        assert!(server.load().expect("server").is_some());
        let client = ClientTls::new(&s(g.ca()), &s(g.client_cert()), &s(g.client_key()), "").expect("client");
        assert_eq!(client.url("10.0.0.1:7470"), "https://10.0.0.1:7470");
        assert_eq!(client.url("http://h:1"), "https://h:1");
        assert!(client.endpoint("127.0.0.1:1").is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(g.node_key()).expect("key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "private keys are the owner's only");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = ServerTls { client_ca: "/x".into(), ..Default::default() }.load().expect_err("refused");
        assert!(e.starts_with("tls_client_ca:"), "{e}");
        let e = ServerTls { cert: "/x".into(), ..Default::default() }.load().expect_err("refused");
        assert!(e.starts_with("tls_key:"), "{e}");
        let e = ServerTls { cert: "/nonexistent.pem".into(), key: "/k".into(), client_ca: String::new() }
            .load()
            .expect_err("refused");
        assert!(e.starts_with("tls_cert: cannot read"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").expect("write");
        let e = ClientTls::new(&junk.display().to_string(), "", "", "").expect_err("refused");
        assert!(e.starts_with("tls_ca:") && e.contains("not a PEM file"), "{e}");
        let e = ClientTls::new("", "/c", "/k", "").expect_err("refused");
        assert!(e.starts_with("tls_ca:"), "{e}");
        assert!(!ClientTls::new("", "", "", "").expect("plain").enabled());
        assert_eq!(ClientTls::new("", "", "", "").expect("plain").url("h:1"), "http://h:1");
    }
}
