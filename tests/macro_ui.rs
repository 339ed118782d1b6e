//! What `#[warren::service]` and `#[derive(warren::Event)]` accept, and the
//! errors they report for what they do not (`tests/ui/fail/*.stderr`,
//! `event_bad_name` for the derive). Regenerate the expected errors with
//! `TRYBUILD=overwrite cargo test --test macro_ui`, then read them.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
