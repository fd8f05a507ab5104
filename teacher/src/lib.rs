//! Teacher sampling: problems × k completions, verified and written to Parquet.
