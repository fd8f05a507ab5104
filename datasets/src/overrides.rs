//! `--set key=value` overrides, shared by every stage's TOML config (teacher, data filter,
//! student, eval, quickstart) so that the same flag means the same thing in every command.
//!
//! Keys are dotted paths (`sampling.temperature`, `benchmarks.0.samples`); missing tables are
//! created, array elements are addressed by index. The value is parsed as a TOML literal
//! (`0.6`, `true`, `["a", "b"]`, `"quoted"`) and falls back to a plain string (`runs/x`).

/// Applies one `key=value` override to `root`. The error names the override and the key part
/// at fault.
pub fn apply_override(root: &mut toml::Value, spec: &str) -> Result<(), String> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| format!("--set `{spec}`: expected key=value"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if key.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("--set `{spec}`: bad key `{key}`"));
    }
    let value = parse_value(raw.trim());
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        node = match node {
            toml::Value::Table(t) => {
                if last {
                    t.insert(part.to_string(), value);
                    return Ok(());
                }
                t.entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
            }
            toml::Value::Array(a) => {
                let idx: usize = part
                    .parse()
                    .map_err(|_| format!("--set `{key}`: `{part}` must be an array index"))?;
                let len = a.len();
                let slot = a
                    .get_mut(idx)
                    .ok_or_else(|| format!("--set `{key}`: index {idx} out of range (len {len})"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            _ => {
                return Err(format!(
                    "--set `{key}`: `{}` is not a table",
                    parts[..i].join(".")
                ))
            }
        };
    }
    Ok(())
}

/// Applies every override in order.
pub fn apply_overrides(root: &mut toml::Value, specs: &[String]) -> Result<(), String> {
    specs.iter().try_for_each(|s| apply_override(root, s))
}

/// A TOML literal, or the raw text as a string when it is not one.
pub fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_arrays_and_literals() {
        let mut v: toml::Value = toml::from_str("a = 1\n[[b]]\nk = 2\n").unwrap();
        apply_overrides(
            &mut v,
            &["x.y.z=0.5".into(), "b.0.k=\"s\"".into(), "p=runs/x".into(), "l=[1, 2]".into()],
        )
        .unwrap();
        assert_eq!(v["x"]["y"]["z"].as_float(), Some(0.5));
        assert_eq!(v["b"][0]["k"].as_str(), Some("s"));
        assert_eq!(v["p"].as_str(), Some("runs/x"));
        assert_eq!(v["l"].as_array().map(Vec::len), Some(2));
        assert!(apply_override(&mut v, "novalue").unwrap_err().contains("key=value"));
        assert!(apply_override(&mut v, "a..b=1").unwrap_err().contains("bad key"));
        assert!(apply_override(&mut v, "a.b=1").unwrap_err().contains("not a table"));
        assert!(apply_override(&mut v, "b.7.k=1").unwrap_err().contains("out of range"));
        assert!(apply_override(&mut v, "b.x=1").unwrap_err().contains("array index"));
    }
}
