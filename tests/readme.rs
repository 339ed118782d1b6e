//! The README's first code block is `examples/quickstart.rs`, which the
//! build compiles: this keeps the two the same.

#[test]
fn readme_quickstart_is_the_compiled_example() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/quickstart.rs");
    let block = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README has a ```rust block");
    assert_eq!(block.trim_end(), example.trim_end());
    assert!(
        example.lines().count() <= 30,
        "the quickstart should stay under 30 lines"
    );
}
