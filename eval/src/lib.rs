//! Benchmark evaluation with the DeepSeek-R1 protocol.
