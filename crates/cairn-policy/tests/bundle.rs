//! Bundles: loading, hashing, the built-in copy, and the bundle's own policy tests.

use std::path::{Path, PathBuf};

use cairn_policy::{
    AccessRequest, Action, Authorizer, BUNDLE_HASH_CONTEXT, Bundle, MODEL_PATH, Object,
    POLICY_PATH, PolicyError, dry_run, run_tests,
};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn shipped_file(path: &str) -> Vec<u8> {
    std::fs::read(policies_dir().join(path)).unwrap()
}

/// The shipped model and policy, and these other files.
fn bundle_with(policy: &str, others: &[(&str, &str)]) -> Result<Bundle, PolicyError> {
    let mut files = vec![
        (MODEL_PATH.to_owned(), shipped_file(MODEL_PATH)),
        (POLICY_PATH.to_owned(), policy.as_bytes().to_vec()),
    ];
    for (path, text) in others {
        files.push(((*path).to_owned(), text.as_bytes().to_vec()));
    }
    Bundle::from_files(files)
}

fn shipped_policy() -> String {
    String::from_utf8(shipped_file(POLICY_PATH)).unwrap()
}

#[test]
fn the_repository_policies_load_and_pass_their_own_tests() {
    let bundle = Bundle::load_dir(&policies_dir()).unwrap();
    // Everything under policies/ is in the bundle and its hash, not only access/.
    assert!(bundle.files().any(|(path, _)| path.starts_with("scoring/")));
    assert!(bundle.file("tests/access.csv").is_some());
    let report = run_tests(&bundle).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.cases.len() >= 100, "{}", report.cases.len());
    let allowed = report.cases.iter().filter(|case| case.expected).count();
    assert!(allowed >= 40 && report.cases.len() - allowed >= 40);
    assert!(report.to_string().ends_with("failed"), "{report}");
}

#[test]
fn built_in_is_exactly_the_repository_access_retention_and_tests_files() {
    let on_disk = Bundle::load_dir(&policies_dir()).unwrap();
    let expected: Vec<(&str, &[u8])> = on_disk
        .files()
        .filter(|(path, _)| {
            path.starts_with("access/")
                || path.starts_with("retention/")
                || path.starts_with("tests/")
        })
        .collect();
    let built_in = Bundle::built_in();
    assert_eq!(built_in.files().collect::<Vec<_>>(), expected);
    assert!(run_tests(&built_in).unwrap().passed());
}

#[test]
fn the_hash_is_blake3_over_lengths_paths_and_contents_in_path_order() {
    let model = shipped_file(MODEL_PATH);
    let files = vec![
        ("scoring/b.toml".to_owned(), b"b = 1\n".to_vec()),
        (POLICY_PATH.to_owned(), b"".to_vec()),
        (MODEL_PATH.to_owned(), model.clone()),
    ];
    let bundle = Bundle::from_files(files.clone()).unwrap();
    let mut reversed = files.clone();
    reversed.reverse();
    assert_eq!(Bundle::from_files(reversed).unwrap().hash(), bundle.hash());

    let mut hasher = blake3::Hasher::new_derive_key(BUNDLE_HASH_CONTEXT);
    let mut sorted = files.clone();
    sorted.sort();
    for (path, bytes) in &sorted {
        hasher.update(&(path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    assert_eq!(bundle.hash(), *hasher.finalize().as_bytes());
    assert_eq!(BUNDLE_HASH_CONTEXT, "cairn policy bundle v1");

    // Any byte of any file, or a file's name, changes it.
    let mut changed = files.clone();
    changed[0].1 = b"b = 2\n".to_vec();
    assert_ne!(Bundle::from_files(changed).unwrap().hash(), bundle.hash());
    let mut renamed = files.clone();
    renamed[0].0 = "scoring/c.toml".to_owned();
    assert_ne!(Bundle::from_files(renamed).unwrap().hash(), bundle.hash());
    assert_eq!(bundle.file("scoring/b.toml"), Some(&b"b = 1\n"[..]));
    assert_eq!(bundle.file("scoring/a.toml"), None);
}

/// The smallest model cairn accepts, fixed here so the golden hash below does not follow edits
/// of the shipped model's comments.
const MINIMAL_MODEL: &str = "[request_definition]\nr = sub, dom, obj, act\n\
    [policy_definition]\np = sub, dom, obj, act\n\
    [role_definition]\ng = _, _, _\n\
    [policy_effect]\ne = some(where (p.eft == allow))\n\
    [matchers]\nm = r.obj == p.obj && r.act == p.act && (p.dom == \"*\" || p.dom == r.dom) && g(r.sub, p.sub, r.dom)\n";

#[test]
fn the_hash_format_is_frozen() {
    // The hash is recorded in every envelope: its format never changes without a new context.
    let bundle = Bundle::from_files(vec![
        (MODEL_PATH.to_owned(), MINIMAL_MODEL.as_bytes().to_vec()),
        (POLICY_PATH.to_owned(), b"# empty\n".to_vec()),
    ])
    .unwrap();
    let hex: String = bundle.hash().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "9f6b730f4539a77f1809cb12563ad84671b90555345ae0ae4278ab6e07d58286"
    );
}

#[test]
fn load_dir_reads_every_file_and_refuses_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("access")).unwrap();
    std::fs::create_dir_all(root.join("retention/deep")).unwrap();
    std::fs::write(root.join(MODEL_PATH), shipped_file(MODEL_PATH)).unwrap();
    std::fs::write(root.join(POLICY_PATH), shipped_policy()).unwrap();
    std::fs::write(root.join("retention/deep/rule.csv"), "x\n").unwrap();
    let bundle = Bundle::load_dir(root).unwrap();
    let paths: Vec<&str> = bundle.files().map(|(path, _)| path).collect();
    assert_eq!(paths, [MODEL_PATH, POLICY_PATH, "retention/deep/rule.csv"]);

    std::os::unix::fs::symlink(root.join(POLICY_PATH), root.join("access/link.csv")).unwrap();
    let error = Bundle::load_dir(root).unwrap_err();
    assert!(
        matches!(&error, PolicyError::InvalidFile { file, .. } if file == "access/link.csv"),
        "{error}"
    );

    let missing = Bundle::load_dir(&root.join("nowhere")).unwrap_err();
    assert!(matches!(missing, PolicyError::Io { .. }), "{missing}");
}

#[test]
fn a_bundle_without_model_or_policy_is_refused() {
    let error = Bundle::from_files(vec![(POLICY_PATH.to_owned(), b"".to_vec())]).unwrap_err();
    assert_eq!(
        error,
        PolicyError::InvalidFile {
            file: MODEL_PATH.to_owned(),
            reason: "missing: a bundle holds access/model.conf and access/policy.csv".to_owned()
        }
    );
    let error =
        Bundle::from_files(vec![(MODEL_PATH.to_owned(), shipped_file(MODEL_PATH))]).unwrap_err();
    assert!(matches!(error, PolicyError::InvalidFile { file, .. } if file == POLICY_PATH));
}

#[test]
fn bundle_paths_are_relative_and_unique() {
    for bad in ["../x", "/etc/passwd", "a//b", "./a", "a/./b", "a\\b", "a/"] {
        let error = bundle_with("", &[(bad, "x")]).unwrap_err();
        assert!(
            matches!(&error, PolicyError::InvalidFile { file, .. } if file == bad),
            "{bad}: {error}"
        );
    }
    let error = bundle_with("", &[(POLICY_PATH, "")]).unwrap_err();
    assert!(error.to_string().contains("given twice"), "{error}");
}

#[test]
fn an_invalid_policy_row_fails_the_load_naming_file_and_line() {
    let cases = [
        ("g, user:a::b, role:viewer, acme", "must not contain ::"),
        ("g, user:a, role:viewer, ac::me", "tenant"),
        ("g, user:a, role:viewer, Acme", "tenant \"Acme\""),
        (
            "g, role:x, role:viewer, acme",
            "role inheritance holds in every tenant",
        ),
        ("p, role:x::y, *, feedback, read", "role"),
        ("g, user:a, role:nobody, acme", "role:nobody is not defined"),
        ("p, role:viewer, *, everything, read", "object"),
    ];
    for (row, why) in cases {
        let policy = format!("{}{row}\n", shipped_policy());
        let line = policy.lines().count();
        let error = bundle_with(&policy, &[]).unwrap_err();
        match &error {
            PolicyError::InvalidLine {
                file,
                line: at,
                reason,
            } => {
                assert_eq!((file.as_str(), *at), (POLICY_PATH, line), "{row}");
                assert!(reason.contains(why), "{row}: {reason}");
            }
            other => panic!("{row}: {other}"),
        }
        assert!(
            error
                .to_string()
                .starts_with(&format!("{POLICY_PATH}:{line}: ")),
            "{error}"
        );
    }
}

#[test]
fn a_wrong_expectation_is_exactly_one_failure() {
    let tests = "# comment\n\
                 user:alice, acme, feedback, read, allow\n\
                 \n\
                 user:alice, acme, personal, read, allow\n\
                 user:dave, acme, feedback, read, deny\n";
    let bundle = bundle_with(&shipped_policy(), &[("tests/wrong.csv", tests)]).unwrap();
    let report = run_tests(&bundle).unwrap();
    assert_eq!(report.cases.len(), 3);
    assert!(!report.passed());
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1);
    let failure = failures[0];
    assert_eq!(
        (failure.file.as_str(), failure.line),
        ("tests/wrong.csv", 4)
    );
    assert_eq!(
        failure.request,
        AccessRequest::new("user:alice", "acme", Object::Personal, Action::Read)
    );
    assert!(failure.expected && !failure.verdict.allowed);
    let text = report.to_string();
    assert_eq!(
        text,
        "tests/wrong.csv:4: user:alice in tenant acme: personal/read: expected allow, got deny: \
         no role of user:alice in tenant acme allows personal/read (roles held there: \
         role:contributor, role:owner, role:triager, role:viewer)\n\
         3 policy test cases, 2 passed, 1 failed"
    );
}

#[test]
fn an_unparsable_test_file_names_file_and_line() {
    let cases = [
        ("user:alice, acme, feedback, read, maybe\n", 1),
        ("\n\nuser:alice, acme, feedback, read\n", 3),
        ("user:alice, acme, feedbacks, read, allow\n", 1),
        ("user:alice, acme, feedback, peek, allow\n", 1),
    ];
    for (tests, line) in cases {
        let bundle = bundle_with(&shipped_policy(), &[("tests/bad.csv", tests)]).unwrap();
        let error = run_tests(&bundle).unwrap_err();
        assert!(
            matches!(&error, PolicyError::InvalidLine { file, line: at, .. } if file == "tests/bad.csv" && *at == line),
            "{tests}: {error}"
        );
    }
    // Files outside tests/ or not .csv are not test files.
    let bundle = bundle_with(
        &shipped_policy(),
        &[("tests/notes.md", "anything"), ("other/x.csv", "x")],
    )
    .unwrap();
    assert_eq!(run_tests(&bundle).unwrap().cases.len(), 0);
}

#[test]
fn a_dry_run_lists_exactly_the_requests_that_flip() {
    let current_bundle = Bundle::built_in();
    let proposed_policy = shipped_policy()
        .replace(
            "g, user:alice, role:owner, acme\n",
            "g, user:alice, role:viewer, acme\n",
        )
        .replace(
            "g, user:dave, role:viewer, globex\n",
            "g, user:dave, role:contributor, globex\n",
        );
    let proposed_bundle = bundle_with(&proposed_policy, &[]).unwrap();
    assert_ne!(current_bundle.hash(), proposed_bundle.hash());
    let current = Authorizer::compile(&current_bundle, &[]).unwrap();
    let proposed = Authorizer::compile(&proposed_bundle, &[]).unwrap();
    let requests = [
        AccessRequest::new("user:alice", "acme", Object::Feedback, Action::Read),
        AccessRequest::new("user:alice", "acme", Object::Decision, Action::Decide),
        AccessRequest::new("user:dave", "globex", Object::Feedback, Action::Write),
        AccessRequest::new("user:dave", "globex", Object::Feedback, Action::Read),
        AccessRequest::new("user:bob", "acme", Object::Feedback, Action::Triage),
    ];
    let flips = dry_run(&current, &proposed, &requests);
    let flipped: Vec<(&AccessRequest, bool, bool)> = flips
        .iter()
        .map(|flip| (&flip.request, flip.was.allowed, flip.becomes.allowed))
        .collect();
    assert_eq!(
        flipped,
        [(&requests[1], true, false), (&requests[2], false, true)]
    );
    assert!(dry_run(&current, &current, &requests).is_empty());
    assert_eq!(current.bundle_hash(), current_bundle.hash());
    assert_eq!(proposed.bundle_hash(), proposed_bundle.hash());
}
