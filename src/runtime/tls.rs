//! Client TLS settings for outgoing links (the bridge): [`TlsClientOptions`]
//! mirrors Mosquitto's `bridge_*` TLS keys, [`client_config`] turns them
//! into the rustls configuration [`Transport::tls_client`] takes.
//!
//! - Trust: the CA certificates in `cafile` (PEM, one or more) and in every
//!   PEM file of `capath`; one of them is needed (as in Mosquitto, a bridge
//!   names the CAs it trusts: no system roots).
//! - Identity: `certfile` and `keyfile` (PEM; a PKCS#8, PKCS#1 RSA or SEC1
//!   EC key, unencrypted), both or neither.
//! - `tls_version`: `tlsv1.3` is TLS 1.3 only; `tlsv1.2` is 1.2 or 1.3, as
//!   in Mosquitto.
//! - `alpn`: one protocol name offered to the server.
//! - `insecure`: the server's chain is still verified against the CAs;
//!   only the check that the certificate names the host is skipped.
//!
//! Cryptography is rustls' `ring` provider. Errors name the key, the file
//! and the fix: `bridge_cafile /x/ca.pem: no certificates found (...)`.
//!
//! [`Transport::tls_client`]: super::Transport::tls_client

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WantsClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, DistinguishedName,
    RootCertStore, SignatureScheme, SupportedProtocolVersion,
};

use crate::limits::TLS_CAPATH_MAX_FILES;

/// The TLS settings of one outgoing link, named after the `bridge_*` keys
/// that set them (errors name those keys). Borrowed from the caller's
/// configuration for the one call to [`client_config`].
#[derive(Debug, Clone, Copy)]
pub struct TlsClientOptions<'a> {
    /// `bridge_cafile`: a PEM file of CA certificates.
    pub cafile: Option<&'a Path>,
    /// `bridge_capath`: a directory whose PEM files hold CA certificates.
    pub capath: Option<&'a Path>,
    /// `bridge_certfile`: the client certificate chain (PEM), leaf first.
    pub certfile: Option<&'a Path>,
    /// `bridge_keyfile`: the client certificate's private key (PEM).
    pub keyfile: Option<&'a Path>,
    /// `bridge_insecure`: accept a certificate that does not name the host.
    pub insecure: bool,
    /// `bridge_tls_version`: `tlsv1.2` or `tlsv1.3`.
    pub tls_version: &'a str,
    /// `bridge_alpn`: the protocol name offered with ALPN.
    pub alpn: Option<&'a str>,
}

impl Default for TlsClientOptions<'_> {
    /// Mosquitto's defaults: no files, host names checked, `tlsv1.2`.
    fn default() -> Self {
        TlsClientOptions {
            cafile: None,
            capath: None,
            certfile: None,
            keyfile: None,
            insecure: false,
            tls_version: "tlsv1.2",
            alpn: None,
        }
    }
}

/// Why [`client_config`] (or `tls_server::server_config`) could not build
/// a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file or directory named by `key` cannot be used.
    #[error("{key} {}: {reason}", path.display())]
    File {
        /// The setting that names it (`bridge_cafile`...).
        key: &'static str,
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A setting is missing or has a value that is not accepted.
    #[error("{key}: {reason}")]
    Setting {
        key: &'static str,
        /// What is wrong, and what to do.
        reason: String,
    },
}

impl TlsConfigError {
    /// The setting the error is about (`bridge_cafile`, `certfile`...).
    pub fn key(&self) -> &'static str {
        match self {
            TlsConfigError::File { key, .. } | TlsConfigError::Setting { key, .. } => key,
        }
    }

    pub(super) fn file(
        key: &'static str,
        path: &Path,
        reason: impl Into<String>,
    ) -> TlsConfigError {
        TlsConfigError::File {
            key,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(super) fn setting(key: &'static str, reason: impl Into<String>) -> TlsConfigError {
        TlsConfigError::Setting {
            key,
            reason: reason.into(),
        }
    }
}

/// Builds the client configuration for `opts`, reading its files now (a
/// changed file is read again only by a new call).
pub fn client_config(opts: &TlsClientOptions<'_>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(root_store(opts)?);
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| {
            TlsConfigError::setting(
                "bridge_cafile",
                format!("cannot verify servers with these CA certificates: {e}"),
            )
        })?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(protocol_versions(opts.tls_version)?)
        .map_err(|e| TlsConfigError::setting("bridge_tls_version", e.to_string()))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipHostName(verifier)))
    } else {
        builder.with_webpki_verifier(verifier)
    };
    let mut config = with_identity(builder, opts)?;
    if let Some(alpn) = opts.alpn {
        if alpn.is_empty() || alpn.len() > 255 {
            return Err(TlsConfigError::setting(
                "bridge_alpn",
                format!("{alpn:?}: a protocol name is 1 to 255 bytes"),
            ));
        }
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    Ok(Arc::new(config))
}

fn protocol_versions(
    tls_version: &str,
) -> Result<&'static [&'static SupportedProtocolVersion], TlsConfigError> {
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS12_UP: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match tls_version {
        "tlsv1.3" => Ok(&TLS13_ONLY),
        "tlsv1.2" => Ok(&TLS12_UP),
        other => Err(TlsConfigError::setting(
            "bridge_tls_version",
            format!(
                "{other:?} is not supported: use tlsv1.2 (TLS 1.2 or 1.3) or tlsv1.3 (TLS 1.3 only)"
            ),
        )),
    }
}

fn root_store(opts: &TlsClientOptions<'_>) -> Result<RootCertStore, TlsConfigError> {
    if opts.cafile.is_none() && opts.capath.is_none() {
        return Err(TlsConfigError::setting(
            "bridge_cafile",
            "neither bridge_cafile nor bridge_capath is set: name the CA certificates that \
             sign the remote broker's certificate",
        ));
    }
    ca_certificates(
        ("bridge_cafile", opts.cafile),
        ("bridge_capath", opts.capath),
    )
}

/// The CA certificates of a CA file and a CA directory (either may be
/// unset), each named by its setting `(key, path)` in errors.
pub(super) fn ca_certificates(
    (file_key, cafile): (&'static str, Option<&Path>),
    (dir_key, capath): (&'static str, Option<&Path>),
) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(cafile) = cafile {
        for (i, cert) in certificate_file(file_key, cafile)?.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                TlsConfigError::file(
                    file_key,
                    cafile,
                    format!("certificate {}: not a usable CA: {e}", i + 1),
                )
            })?;
        }
    }
    if let Some(capath) = capath {
        add_directory(&mut roots, dir_key, capath)?;
    }
    Ok(roots)
}

const PEM_CERTIFICATES: &str = "expected PEM \"-----BEGIN CERTIFICATE-----\" blocks";

/// Adds the certificates of every PEM file in `dir` (a hashed OpenSSL
/// directory or any other), skipping files without certificates and,
/// with a warning, certificates webpki cannot use; `key` names the setting.
fn add_directory(
    roots: &mut RootCertStore,
    key: &'static str,
    dir: &Path,
) -> Result<(), TlsConfigError> {
    let dir_error = |path: &Path, reason: String| TlsConfigError::file(key, path, reason);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(dir, format!("cannot read the directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(dir, format!("cannot read the directory: {e}")))?;
        if files.len() == TLS_CAPATH_MAX_FILES {
            return Err(dir_error(
                dir,
                format!("more than {TLS_CAPATH_MAX_FILES} files: use a directory of CA certificates only"),
            ));
        }
        files.push(entry.path());
    }
    files.sort();
    let before = roots.len();
    for file in files {
        // Follows links (a hashed directory is links); skips subdirectories.
        if !std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let certs = certificates(&file).map_err(|reason| dir_error(&file, reason))?;
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            log::warn!(
                "{key} {}: {ignored} certificate(s) not usable as a CA, ignored",
                file.display()
            );
        }
    }
    if roots.len() == before {
        return Err(dir_error(
            dir,
            format!("no certificates found in its files ({PEM_CERTIFICATES})"),
        ));
    }
    Ok(())
}

/// Adds the client certificate and key, if `opts` has them.
fn with_identity(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    opts: &TlsClientOptions<'_>,
) -> Result<ClientConfig, TlsConfigError> {
    let (certfile, keyfile) =
        match (opts.certfile, opts.keyfile) {
            (None, None) => return Ok(builder.with_no_client_auth()),
            (Some(certfile), Some(keyfile)) => (certfile, keyfile),
            (Some(_), None) => return Err(TlsConfigError::setting(
                "bridge_keyfile",
                "bridge_certfile is set without it: give the client certificate's private key too",
            )),
            (None, Some(_)) => {
                return Err(TlsConfigError::setting(
                    "bridge_certfile",
                    "bridge_keyfile is set without it: give the client certificate too",
                ))
            }
        };
    let certs = certificate_file("bridge_certfile", certfile)?;
    let key = private_key("bridge_keyfile", keyfile)?;
    builder.with_client_auth_cert(certs, key).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => {
                "not the key of the certificate in bridge_certfile".to_owned()
            }
            e => format!("cannot use the key: {e}"),
        };
        TlsConfigError::file("bridge_keyfile", keyfile, reason)
    })
}

/// The private key in the PEM file `key` names.
pub(super) fn private_key(
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => "no private key found (expected an unencrypted PEM \
                                         \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE \
                                         KEY\" block)"
                .to_owned(),
            e => pem_reason(e),
        };
        TlsConfigError::file(key, path, reason)
    })
}

/// The certificates in the PEM file `key` names; at least one.
pub(super) fn certificate_file(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    match certificates(path) {
        Ok(certs) if certs.is_empty() => Err(TlsConfigError::file(
            key,
            path,
            format!("no certificates found ({PEM_CERTIFICATES})"),
        )),
        Ok(certs) => Ok(certs),
        Err(reason) => Err(TlsConfigError::file(key, path, reason)),
    }
}

/// Every certificate in a PEM file (none if it has no certificate block).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(pem_reason)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_reason)
}

pub(super) fn pem_reason(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read: {e}"),
        e => format!("not valid PEM: {e}"),
    }
}

/// `bridge_insecure`: a [`WebPkiServerVerifier`] that accepts a certificate
/// not valid for the host name. The chain is verified first (webpki checks
/// the name last), so an unknown CA, an expired or a revoked certificate is
/// still refused.
#[derive(Debug)]
struct SkipHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for SkipHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}
