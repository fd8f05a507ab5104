//! Burn implementations of the decoder architectures distill runs.
