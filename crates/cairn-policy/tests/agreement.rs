//! The authorizer's verdict is casbin's: random requests over the shipped policy, against a plain
//! casbin enforcer that reads the same files through casbin's own CSV adapter.

use std::path::Path;
use std::sync::OnceLock;

use cairn_policy::{
    AccessRequest, Action, Authorizer, Bundle, Grant, MODEL_PATH, Object, POLICY_PATH,
};
use casbin::prelude::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use proptest::prelude::*;

fn shipped_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../policies")
            .join(path),
    )
    .unwrap()
}

/// The runtime grants of both sides: the plain enforcer gets them as extra CSV rows.
const GRANTS: [(&str, &str, &str); 4] = [
    ("user:grace", "role:triager", "beta"),
    ("user:grace", "role:steward", "*"),
    ("user:heidi", "role:auditor", "acme"),
    ("user:alice", "role:steward", "globex"),
];

fn plain_casbin() -> Enforcer {
    let mut policy = shipped_file(POLICY_PATH);
    for (principal, role, tenant) in GRANTS {
        policy.push_str(&format!("g, {principal}, {role}, {tenant}\n"));
    }
    futures::executor::block_on(async {
        let model = DefaultModel::from_str(&shipped_file(MODEL_PATH))
            .await
            .unwrap();
        let mut enforcer = Enforcer::new(model, StringAdapter::new(policy))
            .await
            .unwrap();
        enforcer.get_role_manager().write().matching_fn(
            None,
            Some(|asked: &str, linked: &str| linked == "*" || linked == asked),
        );
        enforcer.build_role_links().unwrap();
        enforcer
    })
}

fn authorizer() -> Authorizer {
    let grants: Vec<Grant> = GRANTS
        .iter()
        .map(|(principal, role, tenant)| Grant {
            principal: (*principal).to_owned(),
            role: (*role).to_owned(),
            tenant: (*tenant).to_owned(),
        })
        .collect();
    Authorizer::compile(&Bundle::built_in(), &grants).unwrap()
}

const PRINCIPALS: [&str; 12] = [
    "user:alice",
    "user:bob",
    "user:carol",
    "user:dave",
    "user:erin",
    "user:frank",
    "user:ops-admin",
    "user:grace",
    "user:heidi",
    "user:triage-lead",
    "service:scheduler",
    "user:nobody",
];
const TENANTS: [&str; 6] = ["acme", "globex", "beta", "initech", "*", "acme.eu"];

fn requests() -> impl Strategy<Value = AccessRequest> {
    (
        prop::sample::select(&PRINCIPALS[..]),
        prop::sample::select(&TENANTS[..]),
        prop::sample::select(&Object::ALL[..]),
        prop::sample::select(&Action::ALL[..]),
    )
        .prop_map(|(principal, tenant, object, action)| {
            AccessRequest::new(principal, tenant, object, action)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_verdict_is_casbins(requests in prop::collection::vec(requests(), 1..20)) {
        // Built once: the authorizer's memo then fills across cases, so remembered verdicts are
        // compared with casbin too.
        static BOTH: OnceLock<(Enforcer, Authorizer)> = OnceLock::new();
        let (plain, authorizer) = BOTH.get_or_init(|| (plain_casbin(), authorizer()));
        for request in requests {
            let by_casbin = plain
                .enforce((
                    request.principal.as_str(),
                    request.tenant.as_str(),
                    request.object.as_str(),
                    request.action.as_str(),
                ))
                .unwrap();
            let verdict = authorizer.check(&request);
            prop_assert_eq!(verdict.allowed, by_casbin, "{}", request);
            prop_assert_eq!(verdict.rule.is_some(), verdict.allowed, "{}", request);
        }
    }
}

#[test]
fn every_request_of_the_space_agrees() {
    // The space is small enough to walk whole, beside the random sequences above.
    let plain = plain_casbin();
    let authorizer = authorizer();
    let mut allowed = 0;
    for principal in PRINCIPALS {
        for tenant in TENANTS {
            for object in Object::ALL {
                for action in Action::ALL {
                    let by_casbin = plain
                        .enforce((principal, tenant, object.as_str(), action.as_str()))
                        .unwrap();
                    let request = AccessRequest::new(principal, tenant, object, action);
                    let verdict = authorizer.check(&request);
                    assert_eq!(verdict.allowed, by_casbin, "{request}");
                    assert_eq!(verdict.rule.is_some(), by_casbin, "{request}");
                    allowed += usize::from(by_casbin);
                }
            }
        }
    }
    assert!(allowed > 300, "{allowed}");
}
