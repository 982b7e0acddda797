//! Every RPC × every role × tenants, against a table of expectations written here, apart from
//! `policy.csv`; and THE table against the `.proto` files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cairn_policy::{
    AccessRequest, Action, Authorizer, Bundle, Grant, MODEL_PATH, Object, POLICY_PATH, RPCS, Scope,
    rpc_access,
};

const VIEWER: &[&str] = &[
    "feedback/read",
    "signal/read",
    "opportunity/read",
    "decision/read",
    "initiative/read",
    "lineage/read",
];
const CONTRIBUTOR_ADDS: &[&str] = &[
    "feedback/write",
    "signal/write",
    "opportunity/write",
    "decision/write",
];
const TRIAGER_ADDS: &[&str] = &["feedback/triage", "opportunity/triage"];
const OWNER_ADDS: &[&str] = &[
    "opportunity/decide",
    "decision/decide",
    "initiative/write",
    "initiative/decide",
];
const STEWARD_ADDS: &[&str] = &[
    "personal/read",
    "stewardship/read",
    "stewardship/write",
    "stewardship/erase",
];
const AUDITOR_ADDS: &[&str] = &[
    "ledger/read",
    "audit/read",
    "policy/read",
    "access/read",
    "stewardship/read",
];
/// Written out in full rather than as the union of the others, so a role that lost a right is
/// caught here too.
const ADMIN: &[&str] = &[
    "ledger/read",
    "ledger/write",
    "feedback/read",
    "feedback/write",
    "feedback/triage",
    "signal/read",
    "signal/write",
    "opportunity/read",
    "opportunity/write",
    "opportunity/triage",
    "opportunity/decide",
    "decision/read",
    "decision/write",
    "decision/decide",
    "initiative/read",
    "initiative/write",
    "initiative/decide",
    "lineage/read",
    "personal/read",
    "policy/read",
    "policy/test",
    "policy/admin",
    "access/read",
    "access/grant",
    "audit/read",
    "stewardship/read",
    "stewardship/write",
    "stewardship/erase",
    "actor/act_for",
];

/// role → what it may do, independently of policy.csv.
fn expected() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let union = |parts: &[&[&'static str]]| -> BTreeSet<&'static str> {
        parts.iter().flat_map(|part| part.iter().copied()).collect()
    };
    BTreeMap::from([
        ("role:viewer", union(&[VIEWER])),
        ("role:contributor", union(&[VIEWER, CONTRIBUTOR_ADDS])),
        (
            "role:triager",
            union(&[VIEWER, CONTRIBUTOR_ADDS, TRIAGER_ADDS]),
        ),
        (
            "role:owner",
            union(&[VIEWER, CONTRIBUTOR_ADDS, TRIAGER_ADDS, OWNER_ADDS]),
        ),
        ("role:steward", union(&[VIEWER, STEWARD_ADDS])),
        ("role:auditor", union(&[VIEWER, AUDITOR_ADDS])),
        ("role:admin", union(&[ADMIN])),
        ("no role", BTreeSet::new()),
    ])
}

fn shipped_bundle() -> Bundle {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let bundle = Bundle::load_dir(&dir).unwrap();
    assert!(bundle.file(MODEL_PATH).is_some() && bundle.file(POLICY_PATH).is_some());
    bundle
}

/// The principal under test; a name no shipped row mentions.
const PRINCIPAL: &str = "user:matrix";

#[test]
fn every_rpc_for_every_role_in_every_tenant() {
    let bundle = shipped_bundle();
    let expected = expected();
    let mut mismatches = Vec::new();
    let mut checks = 0;
    for (role, may) in &expected {
        // The role granted in acme only, then in every tenant.
        for grant_tenant in ["acme", "*"] {
            let grants: Vec<Grant> = match *role {
                "no role" => Vec::new(),
                role => vec![Grant {
                    principal: PRINCIPAL.to_owned(),
                    role: role.to_owned(),
                    tenant: grant_tenant.to_owned(),
                }],
            };
            let authorizer = Authorizer::compile(&bundle, &grants).unwrap();
            for rpc in RPCS {
                let tenants: &[&str] = match rpc.scope {
                    Scope::Tenant => &["acme", "beta"],
                    Scope::Global => &["*"],
                };
                for tenant in tenants {
                    let pair = format!("{}/{}", rpc.object, rpc.action);
                    let holds_role_here = grant_tenant == "*" || grant_tenant == *tenant;
                    let want = holds_role_here && may.contains(pair.as_str());
                    let request = AccessRequest::new(PRINCIPAL, *tenant, rpc.object, rpc.action);
                    let verdict = authorizer.check(&request);
                    checks += 1;
                    if verdict.allowed != want {
                        mismatches.push(format!(
                            "{} as {role} granted in {grant_tenant}, tenant {tenant} ({pair}): \
                             expected {want}, got {} ({})",
                            rpc.method,
                            verdict.allowed,
                            verdict.rule.unwrap_or(verdict.reason)
                        ));
                    }
                    if verdict.allowed {
                        // An allow always names its row and the grant behind it.
                        let rule = authorizer.check(&request).rule.unwrap_or_default();
                        if !rule.contains("(runtime grant 0)") {
                            mismatches.push(format!(
                                "{}: the rule does not name the grant: {rule}",
                                rpc.method
                            ));
                        }
                    }
                }
            }
        }
    }
    for mismatch in &mismatches {
        println!("{mismatch}");
    }
    assert_eq!(
        mismatches.len(),
        0,
        "{} mismatches in {checks} checks",
        mismatches.len()
    );
    assert!(checks > 1000, "{checks}");
}

#[test]
fn every_object_and_action_pair_of_every_role() {
    // Beyond the RPCs: (personal, read), (access, read), (actor, act_for) have no row of their
    // own, and every pair no role has must be denied.
    let bundle = shipped_bundle();
    let mut mismatches = Vec::new();
    for (role, may) in expected() {
        let grants: Vec<Grant> = match role {
            "no role" => Vec::new(),
            role => vec![Grant {
                principal: PRINCIPAL.to_owned(),
                role: role.to_owned(),
                tenant: "acme".to_owned(),
            }],
        };
        let authorizer = Authorizer::compile(&bundle, &grants).unwrap();
        for object in Object::ALL {
            for action in Action::ALL {
                let pair = format!("{object}/{action}");
                let want = may.contains(pair.as_str());
                let got = authorizer
                    .check(&AccessRequest::new(PRINCIPAL, "acme", object, action))
                    .allowed;
                if got != want {
                    mismatches.push(format!("{role} {pair}: expected {want}, got {got}"));
                }
            }
        }
    }
    for mismatch in &mismatches {
        println!("{mismatch}");
    }
    assert_eq!(mismatches.len(), 0);
}

#[test]
fn the_rpc_table_has_one_well_formed_row_per_method() {
    let mut seen = BTreeSet::new();
    for rpc in RPCS {
        assert!(seen.insert(rpc.method), "{} twice", rpc.method);
        let rest = rpc
            .method
            .strip_prefix("/cairn.v1.")
            .unwrap_or_else(|| panic!("{}", rpc.method));
        let (service, method) = rest
            .split_once('/')
            .unwrap_or_else(|| panic!("{}", rpc.method));
        let word = |text: &str| {
            text.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && text.chars().all(|c| c.is_ascii_alphanumeric())
        };
        assert!(
            word(service) && service.ends_with("Service"),
            "{}",
            rpc.method
        );
        assert!(word(method), "{}", rpc.method);
        assert_eq!(rpc_access(rpc.method), Some(rpc));
        assert_eq!(rpc.service(), format!("cairn.v1.{service}"));
        assert_eq!(rpc.name(), method);
        // Personal data is a second check, never an RPC's own row.
        assert_ne!(rpc.object, Object::Personal, "{}", rpc.method);
    }
}

/// Every `rpc` of every service in `proto/cairn/v1/*.proto`, as full method paths.
fn proto_methods() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/cairn/v1");
    let mut methods = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("proto") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap().trim();
                let service = service
                    .as_deref()
                    .unwrap_or_else(|| panic!("{path:?}: rpc outside a service"));
                methods.insert(format!("/cairn.v1.{service}/{name}"));
            } else if line.starts_with('}') {
                service = None;
            }
        }
    }
    methods
}

#[test]
fn the_rpc_table_covers_every_rpc_of_the_proto_files() {
    let in_protos = proto_methods();
    assert!(in_protos.len() > 50, "{}", in_protos.len());
    let in_table: BTreeSet<String> = RPCS.iter().map(|rpc| rpc.method.to_owned()).collect();
    let missing: Vec<&String> = in_protos.difference(&in_table).collect();
    assert!(missing.is_empty(), "RPCs with no row in RPCS: {missing:?}");
    // Rows for services whose .proto exists must name rpcs that exist.
    let services_in_protos: BTreeSet<&str> = in_protos
        .iter()
        .map(|method| method.trim_start_matches('/').split('/').next().unwrap())
        .collect();
    let stale: Vec<&String> = in_table
        .iter()
        .filter(|method| {
            let service = method.trim_start_matches('/').split('/').next().unwrap();
            services_in_protos.contains(service) && !in_protos.contains(*method)
        })
        .collect();
    assert!(
        stale.is_empty(),
        "rows of RPCS the protos do not have: {stale:?}"
    );
    for service in [
        "cairn.v1.LedgerService",
        "cairn.v1.FeedbackService",
        "cairn.v1.DecisionService",
        "cairn.v1.PrioritizationService",
        "cairn.v1.InitiativeService",
        "cairn.v1.LineageService",
        "cairn.v1.PolicyService",
        "cairn.v1.StewardshipService",
    ] {
        assert!(RPCS.iter().any(|rpc| rpc.service() == service), "{service}");
    }
}
