//! Server TLS settings for a TLS listener: [`TlsServerOptions`] mirrors
//! Mosquitto's listener keys, [`server_config`] turns them into the rustls
//! configuration [`Transport::tls_server`] takes, and [`common_name`] reads
//! the client certificate's subject CN (`use_identity_as_username`).
//!
//! - Identity: `certfile` and `keyfile` (PEM; a PKCS#8, PKCS#1 RSA or SEC1
//!   EC key, unencrypted), both required.
//! - Client certificates: with `require_certificate` a client must present
//!   a certificate chaining to a CA of `cafile` / `capath` (and not revoked
//!   by a CRL of `crlfile`); without it none is asked for (Mosquitto's
//!   `SSL_VERIFY_NONE`).
//! - `tls_version`, Mosquitto's listener meaning: `tlsv1.2` is TLS 1.2
//!   only, `tlsv1.3` TLS 1.3 only, unset both. (The bridge's
//!   `bridge_tls_version tlsv1.2` is 1.2 *or* 1.3: that is the client's.)
//!
//! The configuration is built by the control plane, once per listener at
//! start and again on each reload, and shared by every shard
//! (`Arc<ServerConfig>` is `Send + Sync`; rustls' session cache inside it
//! takes a lock once per handshake, never per record).
//!
//! [`Transport::tls_server`]: super::Transport::tls_server

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::tls::{ca_certificates, certificate_file, pem_reason, private_key, TlsConfigError};

/// The TLS settings of one listener, named after the keys that set them
/// (errors name those keys). Borrowed from the caller's configuration for
/// the one call to [`server_config`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsServerOptions<'a> {
    /// `certfile`: the server's certificate chain (PEM), leaf first.
    pub certfile: Option<&'a Path>,
    /// `keyfile`: its private key (PEM).
    pub keyfile: Option<&'a Path>,
    /// `cafile`: CA certificates that sign client certificates.
    pub cafile: Option<&'a Path>,
    /// `capath`: a directory whose PEM files hold such CA certificates.
    pub capath: Option<&'a Path>,
    /// `crlfile`: CRLs (PEM) client certificates are checked against.
    pub crlfile: Option<&'a Path>,
    /// `require_certificate`: ask for a client certificate and refuse the
    /// handshake without a valid one.
    pub require_certificate: bool,
    /// `tls_version`: `tlsv1.2` or `tlsv1.3` (that version only); `None`:
    /// both.
    pub tls_version: Option<&'a str>,
}

/// Builds the server configuration for `opts`, reading its files now (a
/// changed file is read again only by a new call: a reload).
pub fn server_config(opts: &TlsServerOptions<'_>) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(protocol_versions(opts.tls_version)?)
        .map_err(|e| TlsConfigError::setting("tls_version", e.to_string()))?;
    let builder = if opts.require_certificate {
        let roots = Arc::new(client_roots(opts)?);
        let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
        if let Some(crlfile) = opts.crlfile {
            verifier = verifier.with_crls(revocation_lists(crlfile)?);
        }
        let verifier = verifier.build().map_err(|e| {
            TlsConfigError::setting(
                "cafile",
                format!("cannot verify client certificates with these CA certificates: {e}"),
            )
        })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let (certfile, keyfile) = match (opts.certfile, opts.keyfile) {
        (Some(certfile), Some(keyfile)) => (certfile, keyfile),
        _ => {
            return Err(TlsConfigError::setting(
                "certfile",
                "a TLS listener needs both certfile and keyfile",
            ))
        }
    };
    let certs = certificate_file("certfile", certfile)?;
    let key = private_key("keyfile", keyfile)?;
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => {
                "not the key of the certificate in certfile".to_owned()
            }
            e => format!("cannot use the key: {e}"),
        };
        TlsConfigError::file("keyfile", keyfile, reason)
    })?;
    Ok(Arc::new(config))
}

fn protocol_versions(
    tls_version: Option<&str>,
) -> Result<&'static [&'static SupportedProtocolVersion], TlsConfigError> {
    static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static BOTH: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match tls_version {
        None => Ok(&BOTH),
        Some("tlsv1.3") => Ok(&TLS13),
        Some("tlsv1.2") => Ok(&TLS12),
        Some(other) => Err(TlsConfigError::setting(
            "tls_version",
            format!("{other:?} is not supported: use tlsv1.2, tlsv1.3, or leave it unset for both"),
        )),
    }
}

fn client_roots(opts: &TlsServerOptions<'_>) -> Result<RootCertStore, TlsConfigError> {
    if opts.cafile.is_none() && opts.capath.is_none() {
        return Err(TlsConfigError::setting(
            "require_certificate",
            "neither cafile nor capath is set: name the CA certificates that sign client \
             certificates",
        ));
    }
    ca_certificates(("cafile", opts.cafile), ("capath", opts.capath))
}

fn revocation_lists(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| TlsConfigError::file("crlfile", path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::file("crlfile", path, pem_reason(e)))?;
    if crls.is_empty() {
        return Err(TlsConfigError::file(
            "crlfile",
            path,
            "no CRLs found (expected PEM \"-----BEGIN X509 CRL-----\" blocks)",
        ));
    }
    Ok(crls)
}

/// The subject's first common name (CN) in `cert` (DER), as Mosquitto's
/// `use_identity_as_username` takes it; `None` if it has none, or one that
/// is not UTF-8 text without NUL (what an MQTT username may be).
///
/// Reads only the path to the subject: Certificate > tbsCertificate >
/// (version, serial, signature, issuer, validity) > subject > RDN SETs >
/// (OID 2.5.4.3, string). Every length is checked against what is left;
/// no recursion.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, certificate, _) = tlv(cert.as_ref())?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serial, signature, issuer, validity.
    let mut skipped = 0;
    while skipped < 4 {
        let (tag, _, rest) = tlv(tbs)?;
        tbs = rest;
        if tag != VERSION {
            skipped += 1;
        }
    }
    let (tag, mut subject, _) = tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, rest) = tlv(subject)?;
        subject = rest;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attribute, rest) = tlv(rdn)?;
            rdn = rest;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = tlv(attribute)?;
            if tag != OID || oid != CN {
                continue;
            }
            let (tag, text, _) = tlv(value)?;
            // UTF8String, PrintableString, T61String, IA5String.
            if !matches!(tag, 0x0c | 0x13 | 0x14 | 0x16) {
                return None;
            }
            let text = std::str::from_utf8(text).ok()?;
            return (!text.contains('\0')).then(|| text.to_owned());
        }
    }
    None
}

/// One DER element of `input`: `(tag, contents, rest)`; `None` if it is
/// cut short, has a multi-byte tag or a length over 4 bytes.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (bytes, after) = (rest.get(..n)?, rest.get(n..)?);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        }
        _ => return None,
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().clone()
    }

    #[test]
    fn the_subject_cn_is_found_after_other_attributes() {
        let cert = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "shardmq"),
            (rcgen::DnType::CommonName, "sensor-17"),
        ]);
        assert_eq!(common_name(&cert).as_deref(), Some("sensor-17"));
    }

    #[test]
    fn no_cn_and_garbage_give_none() {
        let cert = certificate(&[(rcgen::DnType::OrganizationName, "shardmq")]);
        assert_eq!(common_name(&cert), None);
        let der = cert.as_ref();
        for cut in [0, 1, 2, der.len() / 3, der.len() / 2] {
            assert_eq!(
                common_name(&CertificateDer::from(&der[..cut])),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(
            common_name(&CertificateDer::from(&[0x30, 0x85, 1, 1, 1, 1, 1][..])),
            None
        );
    }

    #[test]
    fn a_version_outside_the_listener_meaning_is_refused() {
        let err = protocol_versions(Some("tlsv1.1")).unwrap_err();
        assert!(
            err.to_string().starts_with("tls_version: \"tlsv1.1\""),
            "{err}"
        );
        assert_eq!(protocol_versions(Some("tlsv1.2")).expect("1.2").len(), 1);
        assert_eq!(protocol_versions(None).expect("both").len(), 2);
    }
}
