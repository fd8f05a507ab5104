//! `distill serve` refuses to start open when it was asked to require an API key: an
//! `--api-key-env` variable that is unset or empty is a start-up error naming the variable,
//! reported before any model is loaded.

use std::process::Command;

fn serve_with_key_var(var: &str, value: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.args([
        "serve",
        "--model",
        "/nonexistent/model",
        "--port",
        "0",
        "--api-key-env",
        var,
    ]);
    match value {
        Some(v) => cmd.env(var, v),
        None => cmd.env_remove(var),
    };
    cmd.output().unwrap()
}

#[test]
fn empty_or_unset_api_key_variable_is_a_startup_error() {
    let var = "DISTILL_SERVE_CLI_TEST_KEY";
    for value in [Some(""), Some("   "), None] {
        let out = serve_with_key_var(var, value);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value:?}: {err}");
        assert!(err.contains(var), "{value:?}: {err}");
        assert!(
            !err.contains("/nonexistent/model"),
            "key checked before loading: {err}"
        );
        if value.is_some() {
            assert!(err.contains("empty"), "{err}");
        }
    }
}
