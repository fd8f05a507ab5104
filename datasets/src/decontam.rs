//! N-gram decontamination of training data against evaluation problems.
//!
//! A student trained on a benchmark's own problems reports inflated scores, and teacher prompt
//! sets scraped from the web routinely contain AIME and MATH test problems. Following open-r1's
//! `decontaminate.py` (and GPT-3's 13-gram rule), a training text is contaminated when it shares
//! any word n-gram with a benchmark problem, after normalisation (lower case, punctuation and
//! LaTeX markup dropped, operators kept; see [`crate::dedup::normalized_words`]). A benchmark
//! problem shorter than n tokens is matched as a whole token sequence instead, so short MATH-500
//! items are not exempt — but only as a complete expression: a match followed by an operator or a
//! number, or preceded by an operator, is the start or end of a *different* problem
//! ("Compute 7 + 5." inside "Compute 7 + 5 * 2.") and does not count.
//!
//! The shipped benchmarks (`eval/benchmarks/*.jsonl`) are compiled into the binary, so the check
//! works from any directory; any other problem file (JSONL or Parquet, e.g. the quickstart's test
//! split) can be added.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dedup::{hash_words, is_operator, normalized_words};
use crate::DatasetError;

/// The benchmark files shipped in `eval/benchmarks/`, embedded at compile time: `(name, jsonl)`.
pub const EMBEDDED_BENCHMARKS: &[(&str, &str)] = &[
    ("aime2024", include_str!("../../eval/benchmarks/aime2024.jsonl")),
    ("aime2025", include_str!("../../eval/benchmarks/aime2025.jsonl")),
    ("math500", include_str!("../../eval/benchmarks/math500.jsonl")),
];

/// Which text of a training sample is checked against the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecontamField {
    /// The problem statement (what open-r1 checks; the default).
    Problem,
    /// The teacher's reasoning (catches prompts that paraphrase but traces that recite).
    Reasoning,
    /// The answer part after the reasoning.
    Content,
}

/// `[decontam]`: which benchmarks and files to check against, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecontamConfig {
    /// Whether decontamination runs. Default `true`.
    pub enabled: bool,
    /// Words per n-gram. Default 13 (GPT-3's choice; 8 as in open-r1 flags common math phrasing
    /// such as "find the number of ordered pairs of positive integers").
    pub ngram: usize,
    /// Embedded benchmarks to check against, by name. Default all: aime2024, aime2025, math500.
    pub benchmarks: Vec<String>,
    /// Further problem files (JSONL or Parquet with a `problem` column). Default none.
    pub files: Vec<PathBuf>,
    /// Sample fields checked. Default `["problem"]`.
    pub fields: Vec<DecontamField>,
}

impl Default for DecontamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ngram: 13,
            benchmarks: EMBEDDED_BENCHMARKS.iter().map(|(n, _)| n.to_string()).collect(),
            files: Vec::new(),
            fields: vec![DecontamField::Problem],
        }
    }
}

/// Where a contaminated text matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContaminationMatch {
    /// Name of the benchmark or file the matching problem came from.
    pub source: String,
    /// Id of the matching benchmark problem.
    pub problem_id: String,
    /// The shared normalised n-gram.
    pub ngram: String,
}

/// An index of the n-grams of evaluation problems.
#[derive(Debug, Clone)]
pub struct ContaminationIndex {
    n: usize,
    /// n-gram hash → (source index, problem id index).
    grams: HashMap<u64, (u32, u32)>,
    /// For problems shorter than n words: word count → whole-sequence hash → origin.
    short: BTreeMap<usize, HashMap<u64, (u32, u32)>>,
    sources: Vec<String>,
    problem_ids: Vec<String>,
    per_source: BTreeMap<String, usize>,
}

impl ContaminationIndex {
    /// An empty index of `n`-word grams (`n` ≥ 1).
    pub fn new(n: usize) -> Result<Self, DatasetError> {
        if n == 0 {
            return Err(DatasetError::Invalid("decontam.ngram: must be at least 1".into()));
        }
        Ok(Self {
            n,
            grams: HashMap::new(),
            short: BTreeMap::new(),
            sources: Vec::new(),
            problem_ids: Vec::new(),
            per_source: BTreeMap::new(),
        })
    }

    /// Builds the index a [`DecontamConfig`] describes: its embedded benchmarks and files.
    pub fn from_config(cfg: &DecontamConfig) -> Result<Self, DatasetError> {
        let mut index = Self::new(cfg.ngram)?;
        for name in &cfg.benchmarks {
            index.add_embedded(name)?;
        }
        for file in &cfg.files {
            index.add_problem_file(file)?;
        }
        Ok(index)
    }

    /// Words per n-gram.
    pub fn ngram(&self) -> usize {
        self.n
    }

    /// Number of indexed problems per source name (recorded in reports).
    pub fn problems_per_source(&self) -> &BTreeMap<String, usize> {
        &self.per_source
    }

    fn source_index(&mut self, source: &str) -> u32 {
        match self.sources.iter().position(|s| s == source) {
            Some(i) => i as u32,
            None => {
                self.sources.push(source.to_string());
                (self.sources.len() - 1) as u32
            }
        }
    }

    /// Adds one evaluation problem's text under `source` (a benchmark or file name).
    pub fn add_problem(&mut self, source: &str, problem_id: &str, text: &str) {
        let s = self.source_index(source);
        self.problem_ids.push(problem_id.to_string());
        let origin = (s, (self.problem_ids.len() - 1) as u32);
        *self.per_source.entry(source.to_string()).or_default() += 1;
        let words = normalized_words(text);
        if words.is_empty() {
            return;
        }
        if words.len() < self.n {
            self.short.entry(words.len()).or_default().entry(hash_words(&words)).or_insert(origin);
        } else {
            for window in words.windows(self.n) {
                self.grams.entry(hash_words(window)).or_insert(origin);
            }
        }
    }

    /// Adds an embedded benchmark by name (see [`EMBEDDED_BENCHMARKS`]).
    pub fn add_embedded(&mut self, name: &str) -> Result<(), DatasetError> {
        let Some((_, text)) = EMBEDDED_BENCHMARKS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<_> = EMBEDDED_BENCHMARKS.iter().map(|(n, _)| *n).collect();
            return Err(DatasetError::Invalid(format!(
                "decontam.benchmarks: unknown benchmark `{name}` (known: {})",
                known.join(", ")
            )));
        };
        let path = PathBuf::from(format!("eval/benchmarks/{name}.jsonl"));
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| DatasetError::line(&path, i + 1, e.to_string()))?;
            let problem = v.get("problem").and_then(|p| p.as_str()).ok_or_else(|| {
                DatasetError::line(&path, i + 1, "missing string field `problem`")
            })?;
            let id = v.get("id").map(json_id).unwrap_or_else(|| format!("{}", i + 1));
            self.add_problem(name, &id, problem);
        }
        Ok(())
    }

    /// Adds every problem of a JSONL or Parquet problem file (columns `id`, `problem`, `answer`).
    pub fn add_problem_file(&mut self, path: &Path) -> Result<(), DatasetError> {
        let problems = crate::load_problems(path, &crate::ProblemColumns::default())?;
        let name = path.display().to_string();
        for p in &problems {
            self.add_problem(&name, &p.id, &p.problem);
        }
        Ok(())
    }

    /// The first benchmark problem `text` shares an n-gram with, if any.
    pub fn check(&self, text: &str) -> Option<ContaminationMatch> {
        let words = normalized_words(text);
        let found = |window: &[String], origin: &(u32, u32)| ContaminationMatch {
            source: self.sources[origin.0 as usize].clone(),
            problem_id: self.problem_ids[origin.1 as usize].clone(),
            ngram: window.join(" "),
        };
        if words.len() >= self.n {
            for window in words.windows(self.n) {
                if let Some(origin) = self.grams.get(&hash_words(window)) {
                    return Some(found(window, origin));
                }
            }
        }
        let continues = |t: &str| is_operator(t) || t.chars().all(|c| c.is_ascii_digit());
        for (&len, table) in &self.short {
            if len > words.len() {
                break;
            }
            for (start, window) in words.windows(len).enumerate() {
                let Some(origin) = table.get(&hash_words(window)) else { continue };
                let before_ok = start == 0 || !is_operator(&words[start - 1]);
                let after_ok = words.get(start + len).is_none_or(|t| !continues(t));
                if before_ok && after_ok {
                    return Some(found(window, origin));
                }
            }
        }
        None
    }
}

/// Problem ids may be numbers in some files; they are compared as strings everywhere.
fn json_id(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_benchmarks_index_and_match() {
        let index = ContaminationIndex::from_config(&DecontamConfig::default()).unwrap();
        assert_eq!(index.problems_per_source()["aime2024"], 30);
        assert_eq!(index.problems_per_source()["aime2025"], 30);
        assert_eq!(index.problems_per_source()["math500"], 500);
        // AIME 2025 I-1 with different spacing, case and markup still matches.
        let text = "Please solve: FIND the sum of all integer bases b > 9 for which 17_b is a divisor of 97_b.";
        let m = index.check(text).expect("contaminated");
        assert_eq!((m.source.as_str(), m.problem_id.as_str()), ("aime2025", "2025-I-1"));
        assert!(index.check("Compute the number of primes below 100 using a sieve of Eratosthenes.").is_none());
    }

    #[test]
    fn short_problems_match_as_whole_sequences() {
        let mut index = ContaminationIndex::new(13).unwrap();
        index.add_problem("bench", "p1", "Compute $\\dbinom{31}{1}$.");
        assert!(index.check("Here: compute \\dbinom{31}{1} please").is_some());
        assert!(index.check("compute dbinom 31 2").is_none());
        assert!(index.check("31 1").is_none());
        assert!(index.check("compute \\dbinom{31}{1} + 1").is_none());
        // Quickstart-style arithmetic: the same expression matches, longer or different ones not.
        index.add_problem("test", "t1", "Compute 7 + 5 - 3.");
        assert!(index.check("Compute 7 + 5 - 3.\nPlease reason step by step.").is_some());
        assert!(index.check("Compute 7 + 5 - 3 * 2.").is_none());
        assert!(index.check("Compute 2 * 7 + 5 - 3.").is_none());
        assert!(index.check("Compute 7 * 5 - 3.").is_none());
    }

    #[test]
    fn unknown_benchmark_is_named() {
        let cfg = DecontamConfig { benchmarks: vec!["gpqa".into()], ..DecontamConfig::default() };
        let err = ContaminationIndex::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("gpqa"), "{err}");
    }
}
