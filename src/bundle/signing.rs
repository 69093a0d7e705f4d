//! Bundle signatures as OPA defines them: `.signatures.json` holds exactly one
//! JWT whose `files` claim lists every file of the bundle with its hash.
//! Structured files (`data.json`, `data.yaml`, `.manifest`) are hashed in a
//! canonical JSON form (keys sorted, no whitespace) so that reformatting
//! them does not break a signature; every other file is hashed as bytes.
//! The JWT itself is signed and checked by the `jsonwebtoken` crate.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::Digest;

use super::BundleFile;

/// A key to verify signatures with: a PEM public key, or the HMAC secret.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub key: String,
    pub algorithm: Algorithm,
    pub scope: Option<String>,
}

/// How one bundle's signature is checked (OPA's `bundles.NAME.signing` with
/// the `keys` section, or `--verification-key` and friends).
#[derive(Clone, Debug, Default)]
pub struct Verification {
    pub keys: BTreeMap<String, KeySpec>,
    /// The configured key id; empty: the JWT's `kid` header or `keyid` claim.
    pub keyid: String,
    pub scope: Option<String>,
    /// Glob patterns of files that need not be signed.
    pub exclude_files: Vec<String>,
}

/// A key to sign with (`regent build --signing-key`).
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// A PEM private key, or the HMAC secret.
    pub key: String,
    pub algorithm: Algorithm,
    pub keyid: String,
}

#[derive(Serialize, Deserialize)]
struct SignaturesFile {
    signatures: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FileClaim {
    name: String,
    hash: String,
    algorithm: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    files: Vec<FileClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Parses an algorithm name as OPA spells it (`RS256`, `ES256`, `HS256`...).
pub fn parse_algorithm(name: &str) -> Result<Algorithm> {
    match name {
        "HS256" | "HS384" | "HS512" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512"
        | "ES256" | "ES384" => name
            .parse()
            .map_err(|_| anyhow!("unsupported algorithm '{name}'")),
        _ => bail!("unsupported algorithm '{name}'"),
    }
}

/// Reads a key given on the command line: a file's contents when `value`
/// names an existing file, else the value itself (as OPA does).
pub fn key_text(value: &str) -> Result<String> {
    let path = std::path::Path::new(value);
    if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("{value}: cannot read the key"))
    } else {
        Ok(value.to_string())
    }
}

/// The `.signatures.json` bytes signing `files` (which must not include it).
pub fn sign(files: &[BundleFile], key: &SigningKey) -> Result<Vec<u8>> {
    let claims = Claims {
        files: files
            .iter()
            .map(|f| {
                Ok(FileClaim {
                    name: f.name.clone(),
                    hash: hex(&hash_file(f, "SHA-256")?),
                    algorithm: "SHA-256".into(),
                })
            })
            .collect::<Result<_>>()?,
        keyid: Some(key.keyid.clone()),
        scope: None,
    };
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.keyid.clone());
    let encoding = encoding_key(key)?;
    let token = jsonwebtoken::encode(&header, &claims, &encoding).context("signing the bundle")?;
    let mut out = serde_json::to_vec_pretty(&SignaturesFile {
        signatures: vec![token],
    })?;
    out.push(b'\n');
    Ok(out)
}

fn encoding_key(key: &SigningKey) -> Result<EncodingKey> {
    let pem = key.key.as_bytes();
    match key.algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Ok(EncodingKey::from_secret(pem)),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem).context("reading the RSA signing key"),
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(pem).context("reading the EC signing key")
        }
        other => bail!("unsupported algorithm '{other:?}'"),
    }
}

fn decoding_key(key: &KeySpec) -> Result<DecodingKey> {
    let pem = key.key.as_bytes();
    match key.algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Ok(DecodingKey::from_secret(pem)),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            DecodingKey::from_rsa_pem(pem).context("reading the RSA verification key")
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            DecodingKey::from_ec_pem(pem).context("reading the EC verification key")
        }
        other => bail!("unsupported algorithm '{other:?}'"),
    }
}

impl Verification {
    /// Checks `signatures` (the `.signatures.json` bytes, if any) against
    /// the bundle's other files. Error texts follow OPA's.
    pub fn verify(&self, signatures: Option<&[u8]>, files: &[&BundleFile]) -> Result<()> {
        // As OPA: an unsigned bundle is refused only when a key id is
        // configured (keys without a `signing.keyid` verify what is signed).
        let Some(signatures) = signatures else {
            if self.keyid.is_empty() {
                return Ok(());
            }
            bail!("bundle missing .signatures.json file");
        };
        let parsed: SignaturesFile =
            serde_json::from_slice(signatures).map_err(|e| anyhow!(".signatures.json: {e}"))?;
        let token = match parsed.signatures.as_slice() {
            [] => bail!(".signatures.json: missing JWT (expected exactly one)"),
            [token] => token,
            _ => bail!(".signatures.json: multiple JWTs not supported (expected exactly one)"),
        };
        let header = jsonwebtoken::decode_header(token).context(".signatures.json: bad JWT")?;
        let keyid = if !self.keyid.is_empty() {
            self.keyid.clone()
        } else if let Some(kid) = header.kid.clone().filter(|k| !k.is_empty()) {
            kid
        } else {
            unverified_claims(token)?.keyid.unwrap_or_default()
        };
        if keyid.is_empty() {
            bail!("verification key ID is empty");
        }
        let key = self
            .keys
            .get(&keyid)
            .ok_or_else(|| anyhow!("verification key corresponding to ID {keyid} not found"))?;
        let mut validation = Validation::new(key.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &decoding_key(key)?, &validation)
            .map_err(|e| anyhow!("failed to verify the JWT: {e}"))?
            .claims;
        let scope = self
            .scope
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| key.scope.clone());
        if scope.unwrap_or_default() != claims.scope.clone().unwrap_or_default() {
            bail!("scope mismatch");
        }
        self.check_files(&claims.files, files)
    }

    fn check_files(&self, claimed: &[FileClaim], files: &[&BundleFile]) -> Result<()> {
        let mut claimed: BTreeMap<&str, &FileClaim> = claimed
            .iter()
            .map(|c| (c.name.trim_start_matches('/'), c))
            .collect();
        let excluded = self
            .exclude_files
            .iter()
            .map(|glob| {
                crate::walk::glob_regex(glob)
                    .map_err(|e| anyhow!("bad exclude_files pattern '{glob}': {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        for file in files {
            if excluded.iter().any(|re| re.is_match(&file.name)) {
                claimed.remove(file.name.as_str());
                continue;
            }
            let Some(claim) = claimed.remove(file.name.as_str()) else {
                bail!("file {} not included in bundle signature", file.name);
            };
            let got = hex(&hash_file(file, &claim.algorithm)?);
            if !got.eq_ignore_ascii_case(&claim.hash) {
                bail!(
                    "{}: digest mismatch (want: {}, got: {got})",
                    file.name,
                    claim.hash
                );
            }
        }
        if !claimed.is_empty() {
            let names: Vec<&str> = claimed.keys().copied().collect();
            bail!(
                "file(s) [{}] specified in bundle signatures but not found in the target bundle",
                names.join(" ")
            );
        }
        Ok(())
    }
}

/// The claims of `token` without checking its signature: only to find the
/// key id when neither the configuration nor the header names one.
fn unverified_claims(token: &str) -> Result<Claims> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!(".signatures.json: bad JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| anyhow!(".signatures.json: bad JWT payload"))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow!(".signatures.json: bad JWT payload: {e}"))
}

/// A file's digest: canonical JSON for structured files, raw bytes otherwise.
fn hash_file(file: &BundleFile, algorithm: &str) -> Result<Vec<u8>> {
    let canonical;
    let bytes: &[u8] = match file.base_name() {
        "data.json" | ".manifest" => {
            let text =
                std::str::from_utf8(&file.bytes).map_err(|e| anyhow!("{}: {e}", file.name))?;
            canonical = super::canonical::canonical_json(text)
                .map_err(|e| anyhow!("{}: {e}", file.name))?;
            canonical.as_bytes()
        }
        "data.yaml" => {
            let doc: Json =
                yaml_serde::from_slice(&file.bytes).map_err(|e| anyhow!("{}: {e}", file.name))?;
            canonical = super::canonical::canonical_json(&doc.to_string())
                .map_err(|e| anyhow!("{}: {e}", file.name))?;
            canonical.as_bytes()
        }
        _ => &file.bytes,
    };
    Ok(match algorithm {
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => bail!("unsupported hashing algorithm: {other}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> BundleFile {
        BundleFile::new(name, text)
    }

    fn hmac(keyid: &str, secret: &str) -> (SigningKey, Verification) {
        let signing = SigningKey {
            key: secret.into(),
            algorithm: Algorithm::HS256,
            keyid: keyid.into(),
        };
        let mut keys = BTreeMap::new();
        keys.insert(
            keyid.to_string(),
            KeySpec {
                key: secret.into(),
                algorithm: Algorithm::HS256,
                scope: None,
            },
        );
        let verification = Verification {
            keys,
            ..Verification::default()
        };
        (signing, verification)
    }

    #[test]
    fn signed_files_verify_and_changes_are_caught() {
        let files = vec![
            file("a.rego", "package a\n"),
            file("data.json", r#"{"b": 1, "a": [1, 2]}"#),
        ];
        let (key, verification) = hmac("k1", "secret");
        let sig = sign(&files, &key).unwrap();
        let refs: Vec<&BundleFile> = files.iter().collect();
        verification.verify(Some(&sig), &refs).unwrap();

        // Reformatted JSON keeps its canonical hash.
        let reformatted = file("data.json", "{\n  \"a\": [1,2],\n  \"b\": 1\n}");
        verification
            .verify(Some(&sig), &[&files[0], &reformatted])
            .unwrap();

        let tampered = file("a.rego", "package a\nallow := true\n");
        let err = verification
            .verify(Some(&sig), &[&tampered, &files[1]])
            .unwrap_err();
        assert!(err.to_string().contains("a.rego: digest mismatch"), "{err}");

        let extra = file("b.rego", "package b\n");
        let err = verification
            .verify(Some(&sig), &[&files[0], &files[1], &extra])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "file b.rego not included in bundle signature"
        );

        let err = verification.verify(Some(&sig), &[&files[0]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file(s) [data.json] specified in bundle signatures but not found in the target bundle"
        );
        // An unsigned file passes only when excluded.
        let only_rego = sign(&files[..1], &key).unwrap();
        assert!(verification.verify(Some(&only_rego), &refs).is_err());
        let mut excluding = verification.clone();
        excluding.exclude_files = vec!["*.json".into()];
        excluding.verify(Some(&only_rego), &refs).unwrap();

        // Unsigned: refused when a key id is configured, as OPA.
        verification.verify(None, &refs).unwrap();
        let mut with_id = verification.clone();
        with_id.keyid = "k1".into();
        let err = with_id.verify(None, &refs).unwrap_err();
        assert_eq!(err.to_string(), "bundle missing .signatures.json file");
    }

    #[test]
    fn wrong_keys_and_ids_are_refused() {
        let files = vec![file("a.rego", "package a\n")];
        let refs: Vec<&BundleFile> = files.iter().collect();
        let (key, _) = hmac("k1", "secret");
        let sig = sign(&files, &key).unwrap();
        let (_, other_secret) = hmac("k1", "other");
        let err = other_secret.verify(Some(&sig), &refs).unwrap_err();
        assert!(err.to_string().contains("failed to verify"), "{err}");
        let (_, other_id) = hmac("k2", "secret");
        let err = other_id.verify(Some(&sig), &refs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "verification key corresponding to ID k1 not found"
        );
    }

    #[test]
    fn algorithms_are_named_as_opa_names_them() {
        assert_eq!(parse_algorithm("PS256").unwrap(), Algorithm::PS256);
        assert!(parse_algorithm("none").is_err());
        assert!(parse_algorithm("EdDSA").is_err());
    }
}
