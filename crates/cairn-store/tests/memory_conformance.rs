//! The in-memory store passes the conformance suite.

cairn_store::conformance_suite!(cairn_store::testsuite::MemoryHarness);
