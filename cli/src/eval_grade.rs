//! `distill eval grade`: grade (gold, pred) pairs from JSONL.
