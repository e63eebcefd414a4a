//! A PostgreSQL server as `[storage] history = "postgres://…"` names it, read the way libpq reads it: the URL's user, host,
//! port, database and options, and TLS as `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, or `system` for the OS trust
//! store) ask. The URL holds a password: nothing here ever prints it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as WireSslMode};
use tokio_rustls::rustls;

/// How a connection is protected, as libpq's `sslmode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS always; the certificate is checked against `sslrootcert` only when that is given.
    Require,
    /// TLS with a certificate signed by `sslrootcert` (any host name).
    VerifyCa,
    /// TLS with a certificate signed by `sslrootcert` that names the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is unknown, expected disable, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL server to connect to, with its TLS set up.
#[derive(Clone)]
pub(crate) struct PgTarget {
    pub config: tokio_postgres::Config,
    pub ssl: SslMode,
    /// `sslrootcert`, when it names a file.
    pub root_cert: Option<PathBuf>,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PgTarget {
    /// Reads `url` (`postgres://` or `postgresql://`); an error says what is wrong without
    /// repeating the URL.
    pub(crate) fn parse(url: &str) -> Result<PgTarget, String> {
        let mut parsed = url::Url::parse(url).map_err(|error| format!("is not a URL ({error})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!("starts with {}://, expected postgres://user:password@host/database", parsed.scheme()));
        }
        let (mut ssl, mut root_cert_value) = (SslMode::Prefer, None);
        let mut rest = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => ssl = SslMode::parse(&value)?,
                "sslrootcert" => root_cert_value = Some(value.into_owned()),
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&rest);
        }
        let mut config: tokio_postgres::Config = parsed.as_str().parse().map_err(|error: tokio_postgres::Error| {
            format!("cannot be read ({})", crate::failure::error_chain(&error))
        })?;
        if config.get_hosts().is_empty() {
            return Err("names no host, expected postgres://user:password@host/database".into());
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err("names no user, expected postgres://user:password@host/database".into());
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or_default().to_string();
            config.dbname(user);
        }
        if config.get_application_name().is_none() {
            config.application_name("deskhook");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        config.ssl_mode(match ssl {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        });
        let root_cert = root_cert_value.filter(|value| value != "system").map(PathBuf::from);
        let tls = tls_connector(ssl, root_cert.as_ref())?;
        Ok(PgTarget { config, ssl, root_cert, tls })
    }

    /// `user@host:port/database (sslmode=…)`, for logs and `check`: no password.
    pub(crate) fn describe(&self) -> String {
        format!("{}@{}/{} (sslmode={})", self.user(), self.host_port(), self.database(), self.ssl.as_str())
    }

    pub(crate) fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub(crate) fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The first host and its port, as the server's logs and pg_hba.conf see it.
    pub(crate) fn host_port(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }
}

/// The rustls side of `ssl`: which certificates are accepted.
fn tls_connector(
    ssl: SslMode,
    root_cert: Option<&PathBuf>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS cannot be set up ({error})"))?;
    let verify = match (ssl, root_cert) {
        (SslMode::VerifyFull, _) => Verify::Full,
        (SslMode::VerifyCa, _) | (SslMode::Require | SslMode::Prefer, Some(_)) => Verify::Chain,
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => Verify::Nothing,
    };
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient { chain: None, provider }))
            .with_no_client_auth(),
        Verify::Full | Verify::Chain => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|error| format!("TLS cannot be set up ({error})"))?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                let lenient = Lenient { chain: Some(webpki), provider };
                builder.dangerous().with_custom_certificate_verifier(Arc::new(lenient)).with_no_client_auth()
            }
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    Full,
}

/// The certificates a server's must chain to: `sslrootcert`'s, or the system's.
fn roots(root_cert: Option<&PathBuf>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let path = path.to_string_lossy();
            for certificate in
                crate::tls::ca_certificates(&path).map_err(|problem| format!("sslrootcert: {problem}"))?
            {
                roots.add(certificate).map_err(|error| format!("sslrootcert: {path}: {error}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "the system trust store has no certificate; name the server's CA with sslrootcert=/path/ca.crt"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

/// The verifiers libpq's lenient modes mean: `require`/`prefer` without `sslrootcert` take any
/// certificate (`chain: None`), `verify-ca` checks the chain but not the host name. The
/// handshake's signatures are checked either way.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let Some(chain) = &self.chain else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_read_like_libpq_reads_it() {
        let target =
            PgTarget::parse("postgres://deskhook:pw@db.example:6432/calls?sslmode=verify-full").expect("parses");
        assert_eq!(target.ssl, SslMode::VerifyFull);
        assert_eq!(target.describe(), "deskhook@db.example:6432/calls (sslmode=verify-full)");
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(target.config.get_application_name(), Some("deskhook"));

        let plain = PgTarget::parse("postgresql://deskhook@127.0.0.1/").expect("parses");
        assert_eq!(plain.ssl, SslMode::Prefer, "libpq's default");
        assert_eq!(plain.database(), "deskhook", "the database defaults to the user's name");
        assert_eq!(plain.host_port(), "127.0.0.1:5432");

        let ca = PgTarget::parse(&format!(
            "postgres://u:p@localhost/db?sslmode=verify-ca&sslrootcert={}/tests/fixtures/tls/ca.crt&connect_timeout=2",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("parses");
        assert_eq!(ca.ssl, SslMode::VerifyCa);
        assert_eq!(ca.config.get_connect_timeout(), Some(&Duration::from_secs(2)));

        let pair = PgTarget::parse("postgres://u:p@db1,db2/db?target_session_attrs=read-write").expect("parses");
        assert_eq!(pair.config.get_hosts().len(), 2, "a primary and its standby");
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        for (url, expected) in [
            ("mysql://u:hunter2@h/db", "starts with mysql://"),
            ("postgres://u:hunter2@h/db?sslmode=verify", "sslmode=\"verify\" is unknown"),
            ("postgres://:hunter2@h/db", "names no user"),
            ("postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt", "sslrootcert"),
            ("postgres://u:hunter2@h/db?frobnicate=1", "frobnicate"),
        ] {
            let error = PgTarget::parse(url).expect_err(url);
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
        let target = PgTarget::parse("postgres://u:hunter2@h/db").expect("parses");
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
