//! Certificates deskhook is told to trust (`[ari] ca_file`, the shared history's
//! `sslrootcert`): PEM files read into what rustls takes.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates in the PEM file `path`; `Err` says what is wrong with it.
pub(crate) fn ca_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<_, _>>())
        .map_err(|error| format!("cannot read {path} as PEM certificates ({error})"))?;
    if certificates.is_empty() {
        return Err(format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certificates)
}
