//! A private certificate authority, generated per run, and the server
//! certificates it issues (pure Rust, with `rcgen`; no `openssl` command).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{io_error, Error};

/// A test certificate authority: a fresh key and self-signed certificate.
///
/// Clients of the harness trust this CA and nothing else (see
/// [`crate::client_tls`]); its key never leaves the process.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A server certificate with its private key, both PEM.
#[derive(Clone)]
pub struct ServerCertificate {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where [`TestCa::write_server_files`] put a server's certificate files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate (`ca.pem`): what clients and peers verify against.
    pub ca: PathBuf,
    /// The server certificate (`server.crt`).
    pub cert: PathBuf,
    /// The server key (`server.key`).
    pub key: PathBuf,
    /// Key and certificate in one file (`server.pem`), as ejabberd wants it.
    pub combined: PathBuf,
}

/// Validity from 1 January of last year to 1 January in two years: Erlang's
/// `pkix` (ejabberd) calls rcgen's default end date, the year 4096,
/// expired.
fn set_validity(params: &mut CertificateParams) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let year = 1970 + i32::try_from(seconds / 31_556_952).unwrap_or(56);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

fn cert_error(subject: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::Certificate {
        subject: subject.to_owned(),
        source,
    }
}

impl TestCa {
    /// Generates a new CA (ECDSA P-256).
    pub fn generate() -> Result<Self, Error> {
        let subject = "test CA";
        let key = KeyPair::generate().map_err(cert_error(subject))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params
            .distinguished_name
            .push(DnType::CommonName, "atm-rs test CA (private, per run)");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        set_validity(&mut params);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(cert_error(subject))?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a server certificate for `domains` (DNS names) and `ips`,
    /// usable for serverAuth (c2s, s2s) and clientAuth (outgoing s2s with
    /// certificate authentication).
    pub fn issue(&self, domains: &[&str], ips: &[IpAddr]) -> Result<ServerCertificate, Error> {
        let subject = domains.first().copied().unwrap_or("server");
        let key = KeyPair::generate().map_err(cert_error(subject))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, subject);
        let mut names = Vec::new();
        for domain in domains {
            let name = (*domain)
                .to_owned()
                .try_into()
                .map_err(cert_error(subject))?;
            names.push(SanType::DnsName(name));
        }
        names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = names;
        params.is_ca = IsCa::ExplicitNoCa;
        set_validity(&mut params);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_error(subject))?;
        Ok(ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for `domains` and `ips` and writes it, its key
    /// and the CA certificate into `dir` (created if missing).
    pub fn write_server_files(
        &self,
        dir: &Path,
        domains: &[&str],
        ips: &[IpAddr],
    ) -> Result<CertFiles, Error> {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        let issued = self.issue(domains, ips)?;
        let files = CertFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            combined: dir.join("server.pem"),
        };
        write(&files.ca, &self.pem())?;
        write(&files.cert, &issued.cert_pem)?;
        write(&files.key, &issued.key_pem)?;
        write(
            &files.combined,
            &format!("{}{}", issued.key_pem, issued.cert_pem),
        )?;
        Ok(files)
    }
}

/// Writes `text` to `path`.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(io_error("writing", path))
}
