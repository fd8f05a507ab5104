//! Answer extraction and mathematical equivalence for model responses.
