//! Bearer tokens: a token file holds only blake3 hashes of tokens, each mapped to a principal and
//! the tenants the token may act in. The server never stores or logs a token itself.
//!
//! ```toml
//! [[token]]
//! hash = "blake3:5a1c..."   # blake3 of the token's text, lowercase hex
//! principal = "alice"
//! tenants = ["acme"]        # or ["*"]: any tenant (the access policy still decides)
//! ```
//!
//! Tokens are 32 random bytes, written as `cairn_` and 64 hex digits ([`new_token`]). They carry
//! that much entropy, so an unsalted fast hash is enough: a leaked file does not reveal a token,
//! and no dictionary applies.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::error::ServiceError;

/// The principal of the token `cairn serve` writes on first start (`DATA/admin.token`). The
/// shipped access policy gives it the admin role in every tenant; remove that row (and the token
/// file entry) once real administrators have their own tokens.
pub const BOOTSTRAP_ADMIN: &str = "cairn:admin";

/// Largest token file, in bytes.
pub const TOKEN_FILE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most tokens in one file.
pub const TOKENS_MAX: usize = 100_000;
/// Longest token a caller may present, in bytes.
pub const TOKEN_BYTES_MAX: usize = 256;
/// Most tenants one token may name.
pub const TOKEN_TENANTS_MAX: usize = 1024;
/// The prefix of a token's hash in the file.
const HASH_PREFIX: &str = "blake3:";
/// The prefix of every token [`new_token`] makes.
const TOKEN_PREFIX: &str = "cairn_";

/// Which tenants a credential may act in (the access policy decides the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// Any tenant, and calls about no one tenant.
    Any,
    /// Only these.
    Only(BTreeSet<String>),
}

impl TenantScope {
    /// Whether a call in `tenant` (`*` for a call about no one tenant) is within the scope.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            TenantScope::Any => true,
            TenantScope::Only(tenants) => tenant != "*" && tenants.contains(tenant),
        }
    }
}

/// Who an authenticated caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The principal: what the access policy's `g` rows and grants name.
    pub principal: String,
    /// Where the credential may be used.
    pub tenants: TenantScope,
}

/// The token file, loaded.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Caller>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    hash: String,
    principal: String,
    tenants: Vec<String>,
}

impl Tokens {
    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Tokens, ServiceError> {
        let invalid = |reason: String| ServiceError::InvalidPolicy {
            file: path.display().to_string(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|source| ServiceError::Io {
            context: format!("cannot read the token file {}", path.display()),
            source,
        })?;
        if metadata.len() > TOKEN_FILE_BYTES_MAX as u64 {
            return Err(invalid(format!(
                "{} bytes, over the limit of {TOKEN_FILE_BYTES_MAX}",
                metadata.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ServiceError::Io {
            context: format!("cannot read the token file {}", path.display()),
            source,
        })?;
        Tokens::parse(&text).map_err(invalid)
    }

    /// Parses a token file's text; the error says which entry is wrong and why.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        if text.len() > TOKEN_FILE_BYTES_MAX {
            return Err(format!(
                "{} bytes, over the limit of {TOKEN_FILE_BYTES_MAX}",
                text.len()
            ));
        }
        let file: TokenFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.token.len() > TOKENS_MAX {
            return Err(format!(
                "{} tokens, over the limit of {TOKENS_MAX}",
                file.token.len()
            ));
        }
        let mut by_hash = HashMap::with_capacity(file.token.len());
        for (index, entry) in file.token.into_iter().enumerate() {
            let at =
                |reason: String| format!("token {} ({}): {reason}", index + 1, entry.principal);
            let hash = parse_hash(&entry.hash).map_err(at)?;
            cairn_policy::validate_principal(&entry.principal)
                .map_err(|error| at(error.to_string()))?;
            let tenants = parse_scope(&entry.tenants).map_err(at)?;
            let caller = Caller {
                principal: entry.principal.clone(),
                tenants,
            };
            if by_hash.insert(hash, caller).is_some() {
                return Err(at("the same hash is listed twice".into()));
            }
        }
        Ok(Tokens { by_hash })
    }

    /// One token, for a file written by the server itself (the bootstrap admin).
    pub fn single(token: &str, caller: Caller) -> Tokens {
        Tokens {
            by_hash: HashMap::from([(hash_bytes(token), caller)]),
        }
    }

    /// The caller a presented token belongs to, if any.
    pub fn authenticate(&self, token: &str) -> Option<&Caller> {
        if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
            return None;
        }
        self.by_hash.get(&hash_bytes(token))
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A fresh random token.
pub fn new_token() -> String {
    let bytes: [u8; 32] = cairn_store::random_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TOKEN_PREFIX}{hex}")
}

/// The text a token file holds for `token`: `blake3:` and 64 hex digits.
pub fn token_hash(token: &str) -> String {
    format!("{HASH_PREFIX}{}", blake3::hash(token.as_bytes()).to_hex())
}

/// A token file entry for `token`, in the file's TOML.
pub fn token_entry(token: &str, principal: &str, tenants: &[String]) -> String {
    let tenants: Vec<String> = tenants.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[[token]]\nhash = \"{}\"\nprincipal = {principal:?}\ntenants = [{}]\n",
        token_hash(token),
        tenants.join(", ")
    )
}

fn hash_bytes(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let hex = text
        .strip_prefix(HASH_PREFIX)
        .ok_or_else(|| format!("hash must start with {HASH_PREFIX:?}"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("hash must be 64 lowercase hex digits after \"blake3:\"".into());
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).expect("ascii checked above");
        *byte = u8::from_str_radix(pair, 16).expect("hex checked above");
    }
    Ok(hash)
}

fn parse_scope(tenants: &[String]) -> Result<TenantScope, String> {
    if tenants.is_empty() {
        return Err("tenants must name at least one tenant, or \"*\"".into());
    }
    if tenants.len() > TOKEN_TENANTS_MAX {
        return Err(format!(
            "{} tenants, over the limit of {TOKEN_TENANTS_MAX}",
            tenants.len()
        ));
    }
    if tenants.iter().any(|t| t == "*") {
        return if tenants.len() == 1 {
            Ok(TenantScope::Any)
        } else {
            Err("\"*\" must be the only tenant when it is given".into())
        };
    }
    for tenant in tenants {
        cairn_ledger::TenantId::new(tenant.clone()).map_err(|e| e.to_string())?;
    }
    Ok(TenantScope::Only(tenants.iter().cloned().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_authenticates_its_principal_and_nothing_else_does() {
        let token = new_token();
        let file = token_entry(&token, "alice", &["acme".into(), "beta".into()])
            + token_entry(&new_token(), "root", &["*".into()]).as_str();
        let tokens = Tokens::parse(&file).unwrap();
        assert_eq!(tokens.len(), 2);
        let caller = tokens.authenticate(&token).unwrap();
        assert_eq!(caller.principal, "alice");
        assert!(caller.tenants.covers("acme") && caller.tenants.covers("beta"));
        assert!(!caller.tenants.covers("gamma") && !caller.tenants.covers("*"));
        assert!(tokens.authenticate(&new_token()).is_none());
        assert!(tokens.authenticate("").is_none());
        assert!(
            tokens
                .authenticate(&"x".repeat(TOKEN_BYTES_MAX + 1))
                .is_none()
        );
        // The file holds no token, only its hash.
        assert!(!file.contains(&token));
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry() {
        let good = token_hash("t");
        let cases = [
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"role:admin\"\ntenants = [\"acme\"]\n"
                ),
                "role:",
            ),
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"a::b\"\ntenants = [\"acme\"]\n"
                ),
                "::",
            ),
            (
                format!("[[token]]\nhash = \"{good}\"\nprincipal = \"alice\"\ntenants = []\n"),
                "at least one",
            ),
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"alice\"\ntenants = [\"Acme\"]\n"
                ),
                "tenant",
            ),
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"alice\"\ntenants = [\"*\", \"acme\"]\n"
                ),
                "only tenant",
            ),
            (
                "[[token]]\nhash = \"sha256:00\"\nprincipal = \"alice\"\ntenants = [\"acme\"]\n"
                    .into(),
                "blake3:",
            ),
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"alice\"\ntenants = [\"acme\"]\nrole = \"x\"\n"
                ),
                "unknown field",
            ),
            (
                format!(
                    "[[token]]\nhash = \"{good}\"\nprincipal = \"a\"\ntenants = [\"acme\"]\n[[token]]\nhash = \"{good}\"\nprincipal = \"b\"\ntenants = [\"acme\"]\n"
                ),
                "twice",
            ),
        ];
        for (text, expected) in cases {
            let error = Tokens::parse(&text).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn an_empty_file_knows_no_one() {
        let tokens = Tokens::parse("").unwrap();
        assert!(tokens.is_empty());
        assert!(tokens.authenticate("cairn_00").is_none());
    }
}
