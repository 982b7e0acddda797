//! `check` stays cheap in memory: a remembered verdict costs a handful of allocations (the
//! verdict it returns), and even a first check stays bounded. Counts, not timings. One test in
//! this binary, so no other test allocates while it counts.

use std::alloc::System;

use cairn_policy::{AccessRequest, Action, Authorizer, Bundle, Object};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn check_allocates_little() {
    let authorizer = Authorizer::compile(&Bundle::built_in(), &[]).unwrap();
    let requests = [
        AccessRequest::new("user:alice", "acme", Object::Opportunity, Action::Triage),
        AccessRequest::new("user:alice", "acme", Object::Personal, Action::Read),
        AccessRequest::new("user:ops-admin", "*", Object::Policy, Action::Admin),
        AccessRequest::new("user:nobody", "beta", Object::Feedback, Action::Read),
    ];

    let region = Region::new(GLOBAL);
    for request in &requests {
        authorizer.check(request);
    }
    let first = region.change();
    let first_per_check = first.allocations / requests.len();

    let rounds = 1000;
    let region = Region::new(GLOBAL);
    for _ in 0..rounds {
        for request in &requests {
            std::hint::black_box(authorizer.check(request));
        }
    }
    let repeated = region.change();
    let repeated_per_check = repeated.allocations / (rounds * requests.len());
    let retained = repeated
        .bytes_allocated
        .saturating_sub(repeated.bytes_deallocated);
    println!(
        "first check: {first_per_check} allocations; remembered: {repeated_per_check} \
         allocations, {retained} bytes retained over {} checks",
        rounds * requests.len()
    );
    // A remembered verdict: its two strings, nothing else.
    assert!(repeated_per_check <= 2, "{repeated_per_check}");
    assert_eq!(retained, 0, "remembered checks keep nothing");
    // casbin evaluates the matcher row by row in rhai: hundreds of small allocations, not more.
    assert!(first_per_check < 5_000, "{first_per_check}");
}
