//! Who is asking (client-certificate authentication: CN is the user, O the
//! groups) and whether they may (one function, so RBAC can replace it).

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The identity of a connection: None when the client sent no certificate.
/// rustls has already checked that a certificate sent chains to the CA.
pub fn from_certificates(certs: Option<&[CertificateDer<'_>]>) -> Option<User> {
    let leaf = certs?.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}

/// What a request wants to do, as an authorizer sees it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Every authenticated user may do everything, for now; RBAC goes here.
pub fn authorize(user: &User, _attributes: &Attributes<'_>) -> Result<(), ApiError> {
    let _ = user;
    Ok(())
}
