//! Deny by default, tenants, and runtime grants.

use std::path::Path;

use cairn_policy::{
    AccessRequest, Action, Authorizer, Bundle, Grant, MODEL_PATH, Object, POLICY_PATH, PolicyError,
    Verdict,
};
use casbin::prelude::{CoreApi, DefaultModel, Enforcer, StringAdapter};

fn shipped_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../policies")
            .join(path),
    )
    .unwrap()
}

fn bundle(policy: &str) -> Bundle {
    Bundle::from_files(vec![
        (MODEL_PATH.to_owned(), shipped_file(MODEL_PATH).into_bytes()),
        (POLICY_PATH.to_owned(), policy.as_bytes().to_vec()),
    ])
    .unwrap()
}

/// The shipped roles (every `p` and role-inheritance row), without the example grants.
fn roles_only() -> String {
    shipped_file(POLICY_PATH)
        .lines()
        .filter(|line| !line.starts_with("g, ") || line.starts_with("g, role:"))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn grant(principal: &str, role: &str, tenant: &str) -> Grant {
    Grant {
        principal: principal.to_owned(),
        role: role.to_owned(),
        tenant: tenant.to_owned(),
    }
}

fn request(principal: &str, tenant: &str, object: Object, action: Action) -> AccessRequest {
    AccessRequest::new(principal, tenant, object, action)
}

fn every_request(principals: &[&str], tenants: &[&str]) -> Vec<AccessRequest> {
    let mut requests = Vec::new();
    for principal in principals {
        for tenant in tenants {
            for object in Object::ALL {
                for action in Action::ALL {
                    requests.push(request(principal, tenant, object, action));
                }
            }
        }
    }
    requests
}

#[test]
fn an_empty_policy_denies_everything() {
    for policy in ["", "# only a comment\n\n"] {
        let authorizer = Authorizer::compile(&bundle(policy), &[]).unwrap();
        for request in every_request(&["user:alice", "alice", "x"], &["acme", "*", "beta"]) {
            let verdict = authorizer.check(&request);
            assert!(!verdict.allowed, "{request}");
            assert_eq!(verdict.rule, None);
        }
    }
}

#[test]
fn roles_without_grants_deny_everything() {
    let authorizer = Authorizer::compile(&bundle(&roles_only()), &[]).unwrap();
    for request in every_request(&["user:alice", "user:ops-admin"], &["acme", "*"]) {
        assert!(!authorizer.check(&request).allowed, "{request}");
    }
}

#[test]
fn an_unknown_role_denies() {
    let authorizer = Authorizer::compile(
        &bundle(&roles_only()),
        &[
            grant("user:zed", "role:superuser", "*"),
            grant("user:zed", "role:viewers", "acme"),
        ],
    )
    .unwrap();
    for request in every_request(&["user:zed"], &["acme", "*"]) {
        assert!(!authorizer.check(&request).allowed, "{request}");
    }
    assert_eq!(
        authorizer.roles_of("user:zed", "acme"),
        ["role:superuser", "role:viewers"]
    );
}

#[test]
fn no_grant_in_the_tenant_denies() {
    let authorizer = Authorizer::compile(&Bundle::built_in(), &[]).unwrap();
    // user:alice is an owner in acme only.
    let allowed = request("user:alice", "acme", Object::Feedback, Action::Read);
    assert!(authorizer.check(&allowed).allowed);
    for tenant in ["beta", "globex", "acme2", "acm", "*"] {
        let verdict = authorizer.check(&request(
            "user:alice",
            tenant,
            Object::Feedback,
            Action::Read,
        ));
        assert!(!verdict.allowed, "{tenant}");
        assert!(
            verdict.reason.contains("user:alice holds no role there"),
            "{}",
            verdict.reason
        );
    }
}

#[test]
fn a_missing_or_invalid_tenant_or_principal_denies_even_an_admin() {
    let authorizer = Authorizer::compile(&Bundle::built_in(), &[]).unwrap();
    let admin = "user:ops-admin";
    assert!(
        authorizer
            .check(&request(admin, "acme", Object::Feedback, Action::Read))
            .allowed
    );
    for tenant in ["", " ", "Acme", "ac::me", "acme*", "**", "a b"] {
        let verdict = authorizer.check(&request(admin, tenant, Object::Feedback, Action::Read));
        assert!(!verdict.allowed, "{tenant:?}");
        assert!(
            verdict
                .reason
                .starts_with("denied before the policy was asked"),
            "{}",
            verdict.reason
        );
    }
    for principal in [
        "",
        "role:admin",
        "role:viewer",
        "user::ops-admin",
        "user ops-admin",
    ] {
        let verdict = authorizer.check(&request(principal, "acme", Object::Feedback, Action::Read));
        assert!(!verdict.allowed, "{principal:?}");
    }
}

/// Why requests are validated before casbin: plain casbin says yes to these.
#[test]
fn plain_casbin_would_allow_what_the_authorizer_refuses() {
    let model = shipped_file(MODEL_PATH);
    let policy = shipped_file(POLICY_PATH);
    let enforcer = futures::executor::block_on(async {
        let model = DefaultModel::from_str(&model).await.unwrap();
        let mut enforcer = Enforcer::new(model, StringAdapter::new(policy))
            .await
            .unwrap();
        enforcer.get_role_manager().write().matching_fn(
            None,
            Some(|asked: &str, linked: &str| linked == "*" || linked == asked),
        );
        enforcer.build_role_links().unwrap();
        enforcer
    });
    // casbin's role manager says every name has itself as a role, so a principal spelled like a
    // role has that role's rights.
    assert!(
        enforcer
            .enforce(("role:admin", "acme", "policy", "admin"))
            .unwrap()
    );
    // An empty tenant still matches rows for every tenant and grants in `*`.
    assert!(
        enforcer
            .enforce(("user:ops-admin", "", "policy", "admin"))
            .unwrap()
    );
    let authorizer = Authorizer::compile(&Bundle::built_in(), &[]).unwrap();
    assert!(
        !authorizer
            .check(&request(
                "role:admin",
                "acme",
                Object::Policy,
                Action::Admin
            ))
            .allowed
    );
    assert!(
        !authorizer
            .check(&request(
                "user:ops-admin",
                "",
                Object::Policy,
                Action::Admin
            ))
            .allowed
    );
}

#[test]
fn a_grant_in_every_tenant_holds_everywhere_and_one_in_acme_only_in_acme() {
    let authorizer = Authorizer::compile(
        &bundle(&roles_only()),
        &[
            grant("user:everywhere", "role:viewer", "*"),
            grant("user:here", "role:viewer", "acme"),
        ],
    )
    .unwrap();
    let can_read = |principal: &str, tenant: &str| {
        authorizer
            .check(&request(principal, tenant, Object::Feedback, Action::Read))
            .allowed
    };
    for tenant in ["acme", "beta", "*", "globex.eu"] {
        assert!(can_read("user:everywhere", tenant), "{tenant}");
    }
    assert!(can_read("user:here", "acme"));
    for tenant in ["beta", "*", "acme.eu", "acm"] {
        assert!(!can_read("user:here", tenant), "{tenant}");
    }
}

#[test]
fn a_grant_combines_with_inheritance_in_every_tenant() {
    // Role inheritance lives in `*`, grants in one tenant: the chain crosses them.
    let authorizer = Authorizer::compile(
        &bundle(&roles_only()),
        &[grant("user:a", "role:admin", "acme")],
    )
    .unwrap();
    let verdict = authorizer.check(&request("user:a", "acme", Object::Lineage, Action::Read));
    assert!(verdict.allowed);
    let rule = verdict.rule.unwrap();
    assert!(
        rule.starts_with("p, role:viewer, *, lineage, read"),
        "{rule}"
    );
    assert!(
        rule.contains("g, user:a, role:admin, acme (runtime grant 0)"),
        "{rule}"
    );
    assert!(
        !authorizer
            .check(&request("user:a", "beta", Object::Lineage, Action::Read))
            .allowed
    );
    assert_eq!(authorizer.grant_count(), 1);
}

#[test]
fn a_grant_naming_a_role_as_principal_or_an_invalid_name_is_refused() {
    let cases = [
        grant("role:viewer", "role:admin", "acme"),
        grant("role:x", "role:viewer", "*"),
        grant("user::a", "role:viewer", "acme"),
        grant("", "role:viewer", "acme"),
        grant("user:a", "viewer", "acme"),
        grant("user:a", "role:a::b", "acme"),
        grant("user:a", "role:viewer", "Acme"),
        grant("user:a", "role:viewer", ""),
        grant("user:a", "role:viewer", "ac::me"),
    ];
    let base = bundle(&roles_only());
    for bad in cases {
        let grants = [grant("user:ok", "role:viewer", "acme"), bad.clone()];
        let error = Authorizer::compile(&base, &grants).unwrap_err();
        assert!(
            matches!(&error, PolicyError::InvalidGrant { index: 1, principal, .. } if *principal == bad.principal),
            "{bad:?}: {error}"
        );
    }
}

#[test]
fn verdicts_and_requests_travel_as_data() {
    let authorizer = Authorizer::compile(&Bundle::built_in(), &[]).unwrap();
    let asked = request("user:erin", "acme", Object::Personal, Action::Read);
    let verdict = authorizer.check(&asked);
    let bytes = postcard::to_allocvec(&(&asked, &verdict)).unwrap();
    let (back_request, back_verdict): (AccessRequest, Verdict) =
        postcard::from_bytes(&bytes).unwrap();
    assert_eq!((back_request, back_verdict), (asked, verdict));
    let grant = grant("user:a", "role:viewer", "*");
    let back: Grant = postcard::from_bytes(&postcard::to_allocvec(&grant).unwrap()).unwrap();
    assert_eq!(back, grant);
}

#[test]
fn an_authorizer_is_shared_across_threads() {
    let authorizer = std::sync::Arc::new(Authorizer::compile(&Bundle::built_in(), &[]).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|index| {
            let authorizer = authorizer.clone();
            std::thread::spawn(move || {
                let tenant = ["acme", "globex"][index % 2];
                (0..200)
                    .filter(|_| {
                        authorizer
                            .check(&request(
                                "user:alice",
                                tenant,
                                Object::Feedback,
                                Action::Read,
                            ))
                            .allowed
                    })
                    .count()
            })
        })
        .collect();
    let counts: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(counts, [200, 0, 200, 0]);
}
