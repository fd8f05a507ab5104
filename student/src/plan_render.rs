//! How a memory [`Plan`] is shown: the table `distill student plan` prints, and the one JSON
//! object of `--json` whose `total_bytes`, `fits` and `<part>_bytes` keys scripts read.

use crate::plan::Plan;

/// `12.3 GB` (decimal).
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The human-readable table `distill student plan` prints.
pub fn render_table(plan: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{} parameters ({} trainable); {} tokens per micro-batch, {} tokens per optimizer step\n{}\n\n",
        plan.params, plan.trainable_params, plan.tokens_per_micro_batch, plan.tokens_per_step, plan.sharding
    ));
    for p in &plan.parts {
        s.push_str(&format!("  {:<18} {:>10}  {}\n", p.name, gb(p.bytes), p.note));
    }
    s.push_str(&format!("  {:<18} {:>10}\n", "total", gb(plan.total_bytes)));
    s.push_str(&format!(
        "  {:<18} {:>10}  ({})\n\n{}\n",
        "budget",
        gb(plan.budget_bytes),
        plan.target.name(),
        if plan.fits { "fits: true" } else { "fits: false" }
    ));
    if !plan.suggestions.is_empty() {
        s.push_str(if plan.fits { "to lower it:\n" } else { "to make it fit, change one of:\n" });
        for x in &plan.suggestions {
            s.push_str(&format!("  {x}\n"));
        }
    }
    s
}

/// One JSON object: `total_bytes`, `fits`, `budget_bytes`, `<part>_bytes` for every part,
/// tokens, and the full plan under `plan`.
pub fn to_json(plan: &Plan) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("total_bytes".into(), plan.total_bytes.into());
    m.insert("fits".into(), plan.fits.into());
    m.insert("budget_bytes".into(), plan.budget_bytes.into());
    m.insert("target".into(), plan.target.name().into());
    m.insert("tokens_per_micro_batch".into(), plan.tokens_per_micro_batch.into());
    m.insert("tokens_per_step".into(), plan.tokens_per_step.into());
    for p in &plan.parts {
        m.insert(format!("{}_bytes", p.name), p.bytes.into());
    }
    m.insert("plan".into(), serde_json::to_value(plan).unwrap_or(serde_json::Value::Null));
    serde_json::Value::Object(m)
}
