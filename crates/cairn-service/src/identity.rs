//! The server's identity: the log id, the ed25519 key that signs checkpoints, and the secret that
//! derives data-key ids from data subjects. Created on first start in `<data dir>/identity/`,
//! written atomically (temporary file, fsync, rename, fsync of the directory), and never rewritten.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_ledger::{CheckpointSigner, KeyId, LogId, PublicKey, TenantId};

use crate::error::ServiceError;

/// The identity of one ledger and its sealer.
pub struct ServerIdentity {
    /// Identifies the ledger in every checkpoint.
    pub log_id: LogId,
    /// Signs checkpoints.
    pub signer: CheckpointSigner,
    subject_key: [u8; 32],
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("log_id", &self.log_id)
            .field("public_key", &self.signer.public_key())
            .finish_non_exhaustive()
    }
}

const SIGNING_KEY_FILE: &str = "checkpoint-signing.key";
const LOG_ID_FILE: &str = "log.id";
const SUBJECT_KEY_FILE: &str = "subject-key-ids.key";

impl ServerIdentity {
    /// Loads the identity from `<data_dir>/identity/`, creating any missing part. Blocking.
    pub fn load_or_create(data_dir: &Path) -> Result<ServerIdentity, ServiceError> {
        let dir = data_dir.join("identity");
        fs::create_dir_all(&dir)
            .map_err(|source| io(format!("create {}", dir.display()), source))?;
        let log_id = LogId(load_or_create_secret(&dir, LOG_ID_FILE)?);
        let signer =
            CheckpointSigner::from_secret_bytes(load_or_create_secret(&dir, SIGNING_KEY_FILE)?);
        let subject_key = load_or_create_secret(&dir, SUBJECT_KEY_FILE)?;
        Ok(ServerIdentity {
            log_id,
            signer,
            subject_key,
        })
    }

    /// Loads the identity from `<data_dir>/identity/` without creating anything, for audits of a
    /// data directory: `None` if the directory holds no complete identity. Blocking.
    pub fn load(data_dir: &Path) -> Result<Option<ServerIdentity>, ServiceError> {
        let dir = data_dir.join("identity");
        let (Some(log_id), Some(signing_key), Some(subject_key)) = (
            read_secret(&dir, LOG_ID_FILE)?,
            read_secret(&dir, SIGNING_KEY_FILE)?,
            read_secret(&dir, SUBJECT_KEY_FILE)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(ServerIdentity::from_secrets(
            log_id,
            signing_key,
            subject_key,
        )))
    }

    /// An identity from fixed bytes (tests, tools).
    pub fn from_secrets(
        log_id: [u8; 32],
        signing_key: [u8; 32],
        subject_key: [u8; 32],
    ) -> ServerIdentity {
        ServerIdentity {
            log_id: LogId(log_id),
            signer: CheckpointSigner::from_secret_bytes(signing_key),
            subject_key,
        }
    }

    /// The key that verifies this server's checkpoints.
    pub fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// The key of the pseudonyms in exports for analysis: derived from the server's subject
    /// secret, so pseudonyms are stable across exports of one server and unlinkable without it.
    pub fn pseudonym_key(&self) -> cairn_domain::pseudonym::PseudonymKey {
        let mut hasher = blake3::Hasher::new_derive_key("cairn export pseudonym key v1");
        hasher.update(&self.subject_key);
        cairn_domain::pseudonym::PseudonymKey::from_bytes(*hasher.finalize().as_bytes())
    }

    /// The id of the first data key that seals one data subject's personal data in one tenant: a
    /// keyed blake3 of the pair, so the id reveals nothing about the subject without the server's
    /// secret, and erasing a subject is destroying its keys.
    pub fn subject_key_id(&self, tenant: &TenantId, subject: &str) -> KeyId {
        self.subject_key_id_at(tenant, subject, 0)
    }

    /// The id of a subject's data key of `generation`: each erasure of the subject's data (by
    /// retention or on request) ends a generation, and personal data recorded later is sealed under
    /// the next one. Generation 0 is [`ServerIdentity::subject_key_id`].
    pub fn subject_key_id_at(&self, tenant: &TenantId, subject: &str, generation: u32) -> KeyId {
        let mut hasher = blake3::Hasher::new_keyed(&self.subject_key);
        hasher.update(b"cairn subject key id v1\0");
        hasher.update(&(tenant.as_str().len() as u64).to_le_bytes());
        hasher.update(tenant.as_str().as_bytes());
        if generation == 0 {
            hasher.update(subject.as_bytes());
        } else {
            // Length-prefixed, so no subject's generation 0 can equal another's later one.
            hasher.update(&(subject.len() as u64).to_le_bytes());
            hasher.update(subject.as_bytes());
            hasher.update(b"\0generation\0");
            hasher.update(&generation.to_le_bytes());
        }
        let digest = hasher.finalize();
        KeyId(digest.as_bytes()[..16].try_into().expect("16 of 32 bytes"))
    }
}

fn io(context: String, source: std::io::Error) -> ServiceError {
    ServiceError::Io { context, source }
}

/// Reads a 32-byte identity file, `None` if it does not exist.
fn read_secret(dir: &Path, name: &str) -> Result<Option<[u8; 32]>, ServiceError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => bytes.as_slice().try_into().map(Some).map_err(|_| {
            io(
                format!("read {}", path.display()),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("expected 32 bytes, found {}", bytes.len()),
                ),
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(format!("read {}", path.display()), source)),
    }
}

fn load_or_create_secret(dir: &Path, name: &str) -> Result<[u8; 32], ServiceError> {
    if let Some(secret) = read_secret(dir, name)? {
        return Ok(secret);
    }
    let path = dir.join(name);
    let secret: [u8; 32] = cairn_store::random_bytes();
    write_atomically(dir, &path, &secret)?;
    tracing::info!(file = %path.display(), "created identity file");
    Ok(secret)
}

fn write_atomically(dir: &Path, path: &PathBuf, bytes: &[u8]) -> Result<(), ServiceError> {
    let temporary = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|source| io(format!("create {}", temporary.display()), source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| io(format!("write {}", temporary.display()), source))?;
    fs::rename(&temporary, path)
        .map_err(|source| io(format!("rename to {}", path.display()), source))?;
    fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|source| io(format!("sync {}", dir.display()), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerIdentity::load_or_create(dir.path()).unwrap();
        let again = ServerIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.log_id, again.log_id);
        assert_eq!(first.public_key(), again.public_key());
        let tenant = TenantId::new("acme").unwrap();
        assert_eq!(
            first.subject_key_id(&tenant, "u1"),
            again.subject_key_id(&tenant, "u1")
        );
        assert_ne!(
            first.subject_key_id(&tenant, "u1"),
            first.subject_key_id(&tenant, "u2")
        );
        let loaded = ServerIdentity::load(dir.path())
            .unwrap()
            .expect("complete identity");
        assert_eq!(loaded.log_id, first.log_id);
        assert_eq!(loaded.public_key(), first.public_key());
        let empty = tempfile::tempdir().unwrap();
        assert!(ServerIdentity::load(empty.path()).unwrap().is_none());
        assert!(
            !empty.path().join("identity").exists(),
            "load creates nothing"
        );
        let other = ServerIdentity::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(first.log_id, other.log_id);
        assert_ne!(
            first.subject_key_id(&tenant, "u1"),
            other.subject_key_id(&tenant, "u1")
        );
    }
}
