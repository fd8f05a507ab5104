//! The text side: tokenizers, chat templates, problem sets and trace files.
