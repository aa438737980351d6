//! The build profiles keep panics unwinding. The protocol decoder turns a panic
//! inside pgwire's message parsing into a protocol error with `catch_unwind`
//! (`wire/src/codec.rs`); with `panic = "abort"` that net would silently stop
//! working and one malformed message would take the whole server down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn no_build_profile_turns_panics_into_aborts() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let profiles = doc
        .get("profile")
        .and_then(|p| p.as_table())
        .expect("the workspace manifest declares its profiles");
    assert!(profiles.contains_key("release"), "release profile missing");
    for (name, profile) in profiles {
        let panic = profile.get("panic").and_then(|v| v.as_str());
        assert!(
            panic.is_none_or(|p| p == "unwind"),
            "profile {name} sets panic = {panic:?}: the wire decoder's catch_unwind needs unwinding"
        );
    }
    // And unwinding really is what this test binary was built with.
    assert!(std::panic::catch_unwind(|| panic!("unwinds")).is_err());
}
