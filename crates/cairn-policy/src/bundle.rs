//! A policy bundle: every file of a `policies/` directory, hashed together.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::access::{AccessPolicy, MODEL_PATH, POLICY_PATH};
use crate::authorizer::{Authorizer, hex};
use crate::error::PolicyError;
use crate::limits;

/// The key-derivation context of [`Bundle::hash`]: names the format, so a change of it is a new
/// context.
pub const BUNDLE_HASH_CONTEXT: &str = "cairn policy bundle v1";

/// The repository's own `policies/access`, `policies/retention` and `policies/tests` files,
/// compiled in. A test checks that this list is every file under those directories.
const BUILT_IN: [(&str, &[u8]); 6] = [
    (
        "access/README.md",
        include_bytes!("../../../policies/access/README.md"),
    ),
    (
        "access/model.conf",
        include_bytes!("../../../policies/access/model.conf"),
    ),
    (
        "access/policy.csv",
        include_bytes!("../../../policies/access/policy.csv"),
    ),
    (
        "retention/model.conf",
        include_bytes!("../../../policies/retention/model.conf"),
    ),
    (
        "retention/policy.csv",
        include_bytes!("../../../policies/retention/policy.csv"),
    ),
    (
        "tests/access.csv",
        include_bytes!("../../../policies/tests/access.csv"),
    ),
];

/// A policy bundle: every regular file under a `policies/` directory, by relative path
/// ('/'-separated), sorted; the access policy among them parsed and validated.
#[derive(Clone)]
pub struct Bundle {
    files: BTreeMap<String, Vec<u8>>,
    access: Arc<AccessPolicy>,
    hash: [u8; 32],
}

impl Bundle {
    /// Reads every file under `dir` (`access/model.conf`, `access/policy.csv`, `tests/*.csv`,
    /// and also `retention/**`, `scoring/**` and anything else: all hashed) and validates the
    /// access policy as [`Bundle::from_files`] does. Symbolic links are refused: the bundle is
    /// exactly what is hashed.
    pub fn load_dir(dir: &Path) -> Result<Bundle, PolicyError> {
        let mut files = Vec::new();
        let mut bytes_total = 0;
        read_tree(dir, "", &mut files, &mut bytes_total)?;
        Bundle::from_files(files)
    }

    /// A bundle from in-memory (path, bytes) pairs: paths relative, '/'-separated, no `.` or
    /// `..` component, each once. Parses the access model and policy, validates every role name,
    /// tenant and principal in `policy.csv`, and compiles an [`Authorizer`] from them; an error
    /// names the file and line.
    pub fn from_files(files: Vec<(String, Vec<u8>)>) -> Result<Bundle, PolicyError> {
        if files.len() > limits::BUNDLE_FILES_MAX {
            return Err(PolicyError::Limit {
                what: "bundle files".to_owned(),
                limit: limits::BUNDLE_FILES_MAX as u64,
                actual: files.len() as u64,
            });
        }
        let mut by_path = BTreeMap::new();
        let mut bytes_total = 0usize;
        for (path, bytes) in files {
            check_path(&path)?;
            check_file_size(&path, bytes.len())?;
            bytes_total += bytes.len();
            if bytes_total > limits::BUNDLE_BYTES_MAX {
                return Err(PolicyError::Limit {
                    what: "bundle bytes".to_owned(),
                    limit: limits::BUNDLE_BYTES_MAX as u64,
                    actual: bytes_total as u64,
                });
            }
            if by_path.insert(path.clone(), bytes).is_some() {
                return Err(PolicyError::InvalidFile {
                    file: path,
                    reason: "given twice".to_owned(),
                });
            }
        }
        let required = |path: &str| {
            by_path
                .get(path)
                .ok_or_else(|| PolicyError::InvalidFile {
                    file: path.to_owned(),
                    reason: format!("missing: a bundle holds {MODEL_PATH} and {POLICY_PATH}"),
                })
                .map(Vec::as_slice)
        };
        let access = AccessPolicy::parse(required(MODEL_PATH)?, required(POLICY_PATH)?)?;
        let hash = hash_files(&by_path);
        // casbin's own parse and role graph, so a bundle that loads always compiles.
        Authorizer::compile_policy(&access, hash, &[])?;
        if let Some(policy) = by_path.get(crate::retention::RETENTION_POLICY_PATH) {
            let model = by_path
                .get(crate::retention::RETENTION_MODEL_PATH)
                .ok_or_else(|| PolicyError::InvalidFile {
                    file: crate::retention::RETENTION_MODEL_PATH.to_owned(),
                    reason: format!(
                        "missing: {} needs it",
                        crate::retention::RETENTION_POLICY_PATH
                    ),
                })?;
            crate::retention::RetentionPolicy::parse(model, policy)?;
        }
        Ok(Bundle {
            files: by_path,
            access: Arc::new(access),
            hash,
        })
    }

    /// The repository's own `policies/access`, `policies/retention` and `policies/tests` files,
    /// compiled into the binary, so `cairn serve` works with no `policies/` directory. (The repository's scoring
    /// rules are built into `cairn-service` the same way, not into this bundle.)
    pub fn built_in() -> Bundle {
        let files = BUILT_IN
            .iter()
            .map(|(path, bytes)| ((*path).to_owned(), bytes.to_vec()))
            .collect();
        // The tests load the same files, so this cannot fail in a build that passed them.
        Bundle::from_files(files).expect("the built-in policy bundle is valid")
    }

    /// blake3 over the files: key derivation with [`BUNDLE_HASH_CONTEXT`], then for each file in
    /// path order: its path's length (u64, little-endian), the path, its content's length (u64,
    /// little-endian), the content. Lengths first, so no two bundles share an input.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Every file, by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
    }

    /// One file's bytes.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    pub(crate) fn access(&self) -> &AccessPolicy {
        &self.access
    }
}

impl PartialEq for Bundle {
    fn eq(&self, other: &Bundle) -> bool {
        // The access policy is a function of the files.
        self.files == other.files
    }
}

impl Eq for Bundle {}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("hash", &hex(&self.hash))
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn hash_files(files: &BTreeMap<String, Vec<u8>>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(BUNDLE_HASH_CONTEXT);
    for (path, bytes) in files {
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    *hasher.finalize().as_bytes()
}

fn check_path(path: &str) -> Result<(), PolicyError> {
    let invalid = |reason: &str| PolicyError::InvalidFile {
        file: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.len() > limits::PATH_BYTES_MAX {
        return Err(PolicyError::Limit {
            what: "bundle path bytes".to_owned(),
            limit: limits::PATH_BYTES_MAX as u64,
            actual: path.len() as u64,
        });
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(invalid("a bundle path is '/'-separated, without \\ or NUL"));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(invalid(
            "a bundle path is relative, without empty, . or .. components",
        ));
    }
    Ok(())
}

fn check_file_size(path: &str, bytes: usize) -> Result<(), PolicyError> {
    if bytes > limits::FILE_BYTES_MAX {
        return Err(PolicyError::Limit {
            what: format!("{path} bytes"),
            limit: limits::FILE_BYTES_MAX as u64,
            actual: bytes as u64,
        });
    }
    Ok(())
}

/// Reads the regular files under `dir` into `files`, with paths relative to the walk's root.
fn read_tree(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(String, Vec<u8>)>,
    bytes_total: &mut usize,
) -> Result<(), PolicyError> {
    let io = |path: &Path, error: std::io::Error| PolicyError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    };
    let entries = fs::read_dir(dir).map_err(|error| io(dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io(dir, error))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(PolicyError::InvalidFile {
                file: path.display().to_string(),
                reason: "a bundle path is UTF-8".to_owned(),
            });
        };
        let relative = match prefix.is_empty() {
            true => name,
            false => format!("{prefix}/{name}"),
        };
        let kind = fs::symlink_metadata(&path).map_err(|error| io(&path, error))?;
        if kind.is_dir() {
            read_tree(&path, &relative, files, bytes_total)?;
        } else if kind.is_file() {
            if files.len() == limits::BUNDLE_FILES_MAX {
                return Err(PolicyError::Limit {
                    what: "bundle files".to_owned(),
                    limit: limits::BUNDLE_FILES_MAX as u64,
                    actual: files.len() as u64 + 1,
                });
            }
            // Sizes before reading, so a huge file is refused without being read.
            check_file_size(&relative, kind.len() as usize)?;
            let bytes = fs::read(&path).map_err(|error| io(&path, error))?;
            check_file_size(&relative, bytes.len())?;
            *bytes_total += bytes.len();
            if *bytes_total > limits::BUNDLE_BYTES_MAX {
                return Err(PolicyError::Limit {
                    what: "bundle bytes".to_owned(),
                    limit: limits::BUNDLE_BYTES_MAX as u64,
                    actual: *bytes_total as u64,
                });
            }
            files.push((relative, bytes));
        } else {
            return Err(PolicyError::InvalidFile {
                file: relative,
                reason: "not a regular file or directory (symbolic links are refused: the bundle \
                         is exactly what is hashed)"
                    .to_owned(),
            });
        }
    }
    Ok(())
}
