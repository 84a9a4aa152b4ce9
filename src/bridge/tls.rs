//! A link's TLS settings (`bridge_cafile`...) made into a rustls client
//! configuration, once per link start.

use std::sync::Arc;

use crate::config::BridgeConfig;
use crate::runtime::{client_config, TlsClientConfig, TlsClientOptions};

/// The link's TLS configuration: `None` without `bridge_cafile` or
/// `bridge_capath` (either one turns TLS on, as in Mosquitto). `Err` names
/// the bridge, the setting and the fix.
pub fn settings(config: &BridgeConfig) -> Result<Option<Arc<TlsClientConfig>>, String> {
    let tls = &config.tls;
    let fail = |reason: String| format!("bridge {}: {reason}", config.name);
    if tls.identity.is_some() || tls.psk.is_some() {
        return Err(fail(
            "bridge_identity/bridge_psk: TLS-PSK is not supported (rustls has no external PSK); use certificates (bridge_cafile, bridge_certfile, bridge_keyfile)".into(),
        ));
    }
    if tls.require_ocsp {
        return Err(fail(
            "bridge_require_ocsp: OCSP stapling checks are not supported; remove the line".into(),
        ));
    }
    if tls.cafile.is_none() && tls.capath.is_none() {
        if tls.certfile.is_some() || tls.keyfile.is_some() {
            return Err(fail(
                "bridge_certfile/bridge_keyfile need bridge_cafile or bridge_capath (which turn TLS on)".into(),
            ));
        }
        return Ok(None);
    }
    let options = TlsClientOptions {
        cafile: tls.cafile.as_deref(),
        capath: tls.capath.as_deref(),
        certfile: tls.certfile.as_deref(),
        keyfile: tls.keyfile.as_deref(),
        insecure: tls.insecure,
        tls_version: &tls.tls_version,
        alpn: tls.alpn.as_deref(),
    };
    client_config(&options)
        .map(Some)
        .map_err(|e| fail(e.to_string()))
}
