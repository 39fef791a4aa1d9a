//! `coalition keygen` (a member makes its own keys) and `coalition pki sign-request` (the
//! coalition CA issues the member's certificate from its request, never seeing a private key).

use crate::membership::{KeyId, MemberId};
use crate::pki::CertDir;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The member id the coalition knows you by.
    #[arg(long, value_name = "ID")]
    member: String,
    /// Your key directory (the layout of `--certs`: keys go under DIR/members/). Keep it private.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignRequestArgs {
    /// The coalition CA's PKI directory (holding ca.pem and ca.key).
    #[arg(long, env = "COALITION_CERTS", default_value = "certs")]
    certs: PathBuf,
    /// The member's certificate signing request (PEM).
    #[arg(long, value_name = "FILE")]
    csr: PathBuf,
    /// The member id the certificate is for; the request must name it.
    #[arg(long, value_name = "ID")]
    member: String,
    /// Where to write the certificate. Default: <certs>/members/<ID>.pem (where `pki revoke`
    /// finds it).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn keygen(args: KeygenArgs) -> Result<()> {
    let id = MemberId::parse(&args.member)?;
    let dir = CertDir::new(&args.out);
    let made = dir.keygen(&id)?;
    for f in &made.created.files {
        println!("created {}", f.display());
    }
    let public = hex::encode(made.public_key.as_bytes());
    println!(
        "signing public key: {public} (key id {})",
        KeyId::of(&made.public_key)
    );
    println!(
        "send the coalition admins: {} and the signing public key above; keep every *.key file here",
        made.request.display()
    );
    println!(
        "admins run: coalition pki sign-request --csr {}.csr --member {id}, and admit you with --key {public}",
        id
    );
    println!(
        "then put the certificate they return at {} and the coalition CA certificate at {}, and use --certs {} --as {id}",
        dir.member_cert_path(&id).display(),
        args.out.join("ca.pem").display(),
        args.out.display()
    );
    Ok(())
}

pub fn sign_request(args: SignRequestArgs) -> Result<()> {
    let id = MemberId::parse(&args.member)?;
    let dir = CertDir::new(&args.certs);
    let out = args.out.unwrap_or_else(|| dir.member_cert_path(&id));
    let issued = dir.sign_request(&args.csr, &id, &out)?;
    println!(
        "issued {id}'s certificate serial {}: {}; send it with the CA certificate {}",
        issued.serial,
        issued.certificate.display(),
        issued.ca.display()
    );
    Ok(())
}
