//! What `#[warren::service]` accepts, and the errors it reports for what it
//! does not (`tests/ui/fail/*.stderr`). Regenerate the expected errors with
//! `TRYBUILD=overwrite cargo test --test macro_ui`, then read them.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
