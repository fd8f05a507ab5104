//! Walking a module's float parameters together with their Hugging Face names.
//!
//! Burn's visitors report the field path (`model.layers.3.self_attn.q_proj.weight`), which is
//! the HF tensor name because the `models` crate mirrors HF field names; enum variant names
//! (Burn adds them for enum modules) are dropped so names stay HF's.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{backend::Backend, Tensor};

/// The dotted path of the module currently visited.
#[derive(Debug, Default, Clone)]
pub struct PathStack {
    parts: Vec<String>,
    /// Whether each entered module pushed a component (enum variants do not).
    pushed: Vec<bool>,
}

impl PathStack {
    /// Call from `enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        let push = !container_type.starts_with("Enum:");
        if push {
            self.parts.push(name.to_string());
        }
        self.pushed.push(push);
    }

    /// Call from `exit_module`.
    pub fn exit(&mut self) {
        if self.pushed.pop().unwrap_or(false) {
            self.parts.pop();
        }
    }

    /// The current dotted path.
    pub fn path(&self) -> String {
        self.parts.join(".")
    }
}

/// One float parameter of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Burn's id (stable for the lifetime of the module value, not across loads).
    pub id: ParamId,
    /// HF name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether the optimizer trains it.
    pub trainable: bool,
}

struct Lister {
    stack: PathStack,
    out: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for Lister {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        self.out.push(ParamInfo {
            id: param.id,
            name: self.stack.path(),
            shape: t.dims().to_vec(),
            trainable: t.is_require_grad(),
        });
    }
}

/// Every float parameter of `module` in visit order (a tied weight appears once).
pub fn list_params<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamInfo> {
    let mut l = Lister {
        stack: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut l);
    let mut seen = std::collections::HashSet::new();
    l.out.retain(|p| seen.insert(p.id));
    l.out
}

/// Whether `name` matches any `no_decay` pattern (substring match, as HF Trainer's
/// `["bias", "LayerNorm.weight"]` list; matching is case-insensitive so `norm` covers
/// `input_layernorm`, `post_attention_layernorm` and `model.norm`).
pub fn is_no_decay(name: &str, patterns: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    patterns
        .iter()
        .any(|p| lower.contains(&p.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_decay_patterns() {
        let p = vec!["bias".to_string(), "norm".to_string()];
        assert!(is_no_decay("model.layers.0.input_layernorm.weight", &p));
        assert!(is_no_decay("model.norm.weight", &p));
        assert!(is_no_decay("model.layers.0.self_attn.q_proj.bias", &p));
        assert!(!is_no_decay("model.layers.0.self_attn.q_proj.weight", &p));
        assert!(!is_no_decay("model.norm.weight", &[]));
    }
}
