//! The synthetic quickstart task (work in progress).
