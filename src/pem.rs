//! PEM certificates and keys as both programs read them: every mistake is one line naming the
//! file and what it was meant to hold, because rustls and tonic alone would only say
//! "transport error" at the first connection.

use std::{fmt, path::Path};

use rustls_pki_types::pem::PemObject;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that could not be read or does not hold what it should; the text is the whole
/// message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemError(String);

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PemError {}

/// The text of one PEM file. The bytes are kept because tonic takes identities and CA bundles as
/// PEM text, not as parsed DER.
#[derive(Debug)]
pub struct PemFile<'a> {
    path: &'a Path,
    /// What the file is for, in the operator's words: "TLS certificate", "core CA bundle".
    what: &'a str,
    bytes: Vec<u8>,
}

impl<'a> PemFile<'a> {
    pub fn read(path: &'a Path, what: &'a str) -> Result<Self, PemError> {
        let bytes = std::fs::read(path)
            .map_err(|error| PemError(format!("cannot read the {what} {}: {error}", path.display())))?;
        Ok(PemFile { path, what, bytes })
    }

    /// Every certificate in the file, in order; a file without one is a mistake.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, PemError> {
        let chain = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.invalid(&error.to_string()))?;
        if chain.is_empty() {
            return Err(self.invalid("no PEM CERTIFICATE block"));
        }
        Ok(chain)
    }

    /// The first private key in the file (PKCS#8, PKCS#1 or SEC1).
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, PemError> {
        PrivateKeyDer::from_pem_slice(&self.bytes)
            .map_err(|error| self.invalid(&format!("no usable PEM private key ({error})")))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn invalid(&self, reason: &str) -> PemError {
        PemError(format!("invalid {} {}: {reason}", self.what, self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("file.pem");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn each_mistake_names_the_file_and_its_purpose() {
        let (_dir, path) = file_with("not PEM at all");
        let file = PemFile::read(&path, "TLS certificate").expect("readable");
        let error = file.certificates().unwrap_err().to_string();
        assert_eq!(error, format!("invalid TLS certificate {}: no PEM CERTIFICATE block", path.display()));
        let error = file.private_key().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "invalid TLS certificate {}: no usable PEM private key (",
                path.display()
            )),
            "{error}"
        );
        let missing = path.with_file_name("absent.pem");
        let error = PemFile::read(&missing, "TLS key").unwrap_err().to_string();
        assert!(error.starts_with(&format!("cannot read the TLS key {}: ", missing.display())), "{error}");
    }
}
