//! Pass 1 of `distill data filter`: judge every row from per-row signatures, never its texts.
//!
//! Rows arrive batch by batch in file order. Rules 1–5 (error, truncated, incorrect, length,
//! contaminated) are decided on the spot; for the survivors only an exact-duplicate hash (32 bytes)
//! and a MinHash signature (`num_perm` × 8 bytes, in one flat array) are kept. Rules 6–8
//! (duplicate, near-duplicate, per-problem cap) then run over the rows in sorted
//! `(problem_id, sample_index)` order, keeping first occurrences, exactly as if every row had been
//! in memory. At 1M rows with the default 128 permutations that is about 1 GB of signatures plus
//! ~0.5 GB of LSH buckets and ~0.1 GB of per-row records.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::{dropped, Decision, DropReason, FilterConfig, FilterReport, LengthSummary, LengthUnit};
use crate::decontam::{ContaminationIndex, DecontamField};
use crate::dedup::{exact_key, LshIndex, MinHasher};
use crate::export::assistant_content;
use crate::traces::TraceRow;
use crate::{DatasetError, TextTokenizer};

/// What pass 1 keeps of one row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RowMeta {
    /// Interned problem id (index into the id table).
    pub problem: u32,
    /// Sample index.
    pub sample_index: u32,
    /// The judgement.
    pub decision: Decision,
    /// Response length in the configured unit (0 when not measured).
    pub length: usize,
    /// Survivor number of rules 1–5 (index of its hash and signature), if it survived them.
    candidate: Option<u32>,
}

/// Pass-1 state: per-row records and the signatures of the rows still in the running.
pub(super) struct Scan<'a> {
    cfg: &'a FilterConfig,
    index: Option<&'a ContaminationIndex>,
    tok: Option<&'a TextTokenizer>,
    hasher: Option<MinHasher>,
    ids: Vec<String>,
    id_of: HashMap<String, u32>,
    rows: Vec<RowMeta>,
    /// Candidate number → row.
    candidate_row: Vec<u32>,
    /// Exact-duplicate key per candidate (when `exact_dedup`).
    keys: Vec<[u8; 32]>,
    /// MinHash signatures per candidate, `num_perm` values each (when `near_dup.enabled`).
    signatures: Vec<u64>,
    /// Problem-text contamination, checked once per problem id.
    contaminated_problem: HashMap<u32, Option<(String, String)>>,
    report: FilterReport,
}

impl<'a> Scan<'a> {
    /// An empty scan; `index` decontaminates (`None` skips it), `tok` measures lengths in tokens.
    pub fn new(
        cfg: &'a FilterConfig,
        index: Option<&'a ContaminationIndex>,
        tok: Option<&'a TextTokenizer>,
    ) -> Result<Self, DatasetError> {
        let hasher = match cfg.near_dup.enabled {
            true => Some(
                MinHasher::new(&cfg.near_dup).map_err(|e| DatasetError::Invalid(e.to_string()))?,
            ),
            false => None,
        };
        Ok(Self {
            cfg,
            index,
            tok,
            hasher,
            ids: Vec::new(),
            id_of: HashMap::new(),
            rows: Vec::new(),
            candidate_row: Vec::new(),
            keys: Vec::new(),
            signatures: Vec::new(),
            contaminated_problem: HashMap::new(),
            report: FilterReport::default(),
        })
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.id_of.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.id_of.insert(id.to_string(), i);
        i
    }

    /// Judges one batch of rows by rules 1–5 and records what rules 6–8 will need.
    pub fn add_batch(&mut self, rows: &[TraceRow]) -> Result<(), DatasetError> {
        if self.rows.len() + rows.len() >= u32::MAX as usize {
            return Err(DatasetError::Invalid(
                "more than 4 billion trace rows".into(),
            ));
        }
        let mut survivors: Vec<&TraceRow> = Vec::new();
        for row in rows {
            let problem = self.intern(&row.problem_id);
            *self.report.verdicts.entry(row.verdict.as_str().to_string()).or_default() += 1;
            *self
                .report
                .finish_reasons
                .entry(row.finish_reason.as_str().to_string())
                .or_default() += 1;
            let (decision, length) = self.judge(row, problem)?;
            let candidate = (decision == Decision::Keep).then(|| {
                survivors.push(row);
                self.candidate_row.push(self.rows.len() as u32);
                (self.candidate_row.len() - 1) as u32
            });
            if candidate.is_some() && self.cfg.exact_dedup {
                self.keys
                    .push(exact_key(&[&row.problem, &row.reasoning, &row.content]));
            }
            self.rows.push(RowMeta {
                problem,
                sample_index: row.sample_index,
                decision,
                length,
                candidate,
            });
        }
        if let Some(hasher) = &self.hasher {
            let docs: Vec<[&str; 3]> = survivors
                .iter()
                .map(|r| [r.problem.as_str(), r.reasoning.as_str(), r.content.as_str()])
                .collect();
            for sig in hasher.signatures(&docs, |d| d.as_slice()) {
                self.signatures.extend_from_slice(&sig);
            }
        }
        Ok(())
    }

    /// Rules 1–5 for one row: the decision and the measured length.
    fn judge(&mut self, row: &TraceRow, problem: u32) -> Result<(Decision, usize), DatasetError> {
        let cfg = self.cfg;
        if let Some(e) = row.error.as_deref().filter(|e| !e.is_empty()) {
            return Ok((dropped(DropReason::Error, e), 0));
        }
        if !cfg.finish_reasons.is_empty() && !cfg.finish_reasons.contains(&row.finish_reason) {
            return Ok((
                dropped(
                    DropReason::Truncated,
                    format!("finish_reason={}", row.finish_reason),
                ),
                0,
            ));
        }
        if !cfg.verdicts.is_empty() && !cfg.verdicts.contains(&row.verdict) {
            return Ok((
                dropped(DropReason::Incorrect, format!("verdict={}", row.verdict)),
                0,
            ));
        }
        let len = response_length(row, cfg.length.unit, self.tok)?;
        if cfg.length.min > 0 || cfg.length.max.is_some() {
            if cfg.length.unit == LengthUnit::Tokens
                && self.tok.is_none()
                && row.completion_tokens == 0
            {
                return Err(DatasetError::Invalid(format!(
                    "{}#{}: completion_tokens is 0 (unknown), so length.max/min in tokens cannot be \
                     applied; set length.tokenizer or length.unit = \"chars\"",
                    row.problem_id, row.sample_index
                )));
            }
            if len < cfg.length.min || cfg.length.max.is_some_and(|m| len > m) {
                return Ok((dropped(DropReason::Length, format!("length={len}")), len));
            }
        }
        if let Some((source, detail)) = self.contamination(row, problem) {
            *self.report.contaminated_by.entry(source).or_default() += 1;
            return Ok((dropped(DropReason::Contaminated, detail), len));
        }
        Ok((Decision::Keep, len))
    }

    /// `(source, detail)` of the first contaminated field of a row, the detail reading
    /// `"<source>:<problem id> via \"<ngram>\""`; the problem-text check is cached per problem id.
    fn contamination(&mut self, row: &TraceRow, problem: u32) -> Option<(String, String)> {
        let index = self.index?;
        let describe = |m: crate::decontam::ContaminationMatch| {
            let detail = format!("{}:{} via \"{}\"", m.source, m.problem_id, m.ngram);
            (m.source, detail)
        };
        for field in &self.cfg.decontam.fields {
            let hit = match field {
                DecontamField::Problem => self
                    .contaminated_problem
                    .entry(problem)
                    .or_insert_with(|| index.check(&row.problem).map(describe))
                    .clone(),
                DecontamField::Reasoning => index.check(&row.reasoning).map(describe),
                DecontamField::Content => index.check(&row.content).map(describe),
            };
            if hit.is_some() {
                return hit;
            }
        }
        None
    }

    /// Row numbers in `(problem_id, sample_index)` order, ties in arrival order (a stable sort).
    pub fn sorted_order(&self) -> Vec<u32> {
        let mut by_name: Vec<u32> = (0..self.ids.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| self.ids[a as usize].cmp(&self.ids[b as usize]));
        let mut rank = vec![0u32; self.ids.len()];
        for (r, &id) in by_name.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        let mut order: Vec<u32> = (0..self.rows.len() as u32).collect();
        order.sort_unstable_by_key(|&i| {
            let m = &self.rows[i as usize];
            (rank[m.problem as usize], m.sample_index, i)
        });
        order
    }

    /// Applies rules 6–8 visiting rows in `order` and completes the report. Returns the row
    /// records (in arrival order), the problem-id table and the report.
    pub fn finish(mut self, order: &[u32]) -> (Vec<RowMeta>, Vec<String>, FilterReport) {
        if self.cfg.exact_dedup {
            self.exact_dedup(order);
        }
        if self.hasher.is_some() {
            self.near_dedup(order);
        }
        if let Some(cap) = self.cfg.max_per_problem {
            let mut kept = vec![0usize; self.ids.len()];
            for &i in order {
                let m = &mut self.rows[i as usize];
                if m.decision == Decision::Keep {
                    kept[m.problem as usize] += 1;
                    if kept[m.problem as usize] > cap {
                        m.decision = dropped(DropReason::PerProblemCap, format!("cap={cap}"));
                    }
                }
            }
        }
        let mut report = std::mem::take(&mut self.report);
        report.input_rows = self.rows.len();
        report.input_problems = self.ids.len();
        let mut kept_lengths = Vec::new();
        let mut kept_problem = vec![false; self.ids.len()];
        for m in &self.rows {
            match &m.decision {
                Decision::Keep => {
                    report.kept += 1;
                    kept_lengths.push(m.length);
                    kept_problem[m.problem as usize] = true;
                }
                Decision::Drop { reason, .. } => report.count(*reason),
            }
        }
        report.kept_problems = kept_problem.iter().filter(|&&k| k).count();
        report.contaminated_problems = self
            .contaminated_problem
            .values()
            .filter(|v| v.is_some())
            .count();
        report.kept_length = summarize(kept_lengths, self.cfg.length.unit);
        (self.rows, self.ids, report)
    }

    /// Rule 6: the first occurrence of each exact key is kept.
    fn exact_dedup(&mut self, order: &[u32]) {
        let mut first: HashMap<[u8; 32], u32> = HashMap::new();
        for &i in order {
            let Some(c) = self.rows[i as usize].candidate else {
                continue;
            };
            if self.rows[i as usize].decision != Decision::Keep {
                continue;
            }
            match first.entry(self.keys[c as usize]) {
                Entry::Occupied(e) => {
                    let of = &self.rows[*e.get() as usize];
                    let detail =
                        format!("of {}#{}", self.ids[of.problem as usize], of.sample_index);
                    self.rows[i as usize].decision = dropped(DropReason::Duplicate, detail);
                }
                Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
        self.keys = Vec::new();
    }

    /// Rule 7: MinHash/LSH against the rows kept so far (only kept rows enter the index).
    fn near_dedup(&mut self, order: &[u32]) {
        let cfg = &self.cfg.near_dup;
        let n = cfg.num_perm;
        let mut index = LshIndex::new(n, cfg.bands);
        let signatures = &self.signatures;
        let sig = |c: u32| &signatures[c as usize * n..(c as usize + 1) * n];
        for &i in order {
            let Some(c) = self.rows[i as usize].candidate else {
                continue;
            };
            if self.rows[i as usize].decision != Decision::Keep {
                continue;
            }
            match index.query(sig(c), cfg.threshold, sig) {
                Some((of, similarity)) => {
                    let of = &self.rows[self.candidate_row[of as usize] as usize];
                    let detail = format!(
                        "of {}#{} (jaccard≈{similarity:.3})",
                        self.ids[of.problem as usize], of.sample_index
                    );
                    self.rows[i as usize].decision = dropped(DropReason::NearDuplicate, detail);
                }
                None => index.insert(c, sig(c)),
            }
        }
        self.signatures = Vec::new();
    }
}

/// Response length of `row` in the configured unit.
fn response_length(
    row: &TraceRow,
    unit: LengthUnit,
    tok: Option<&TextTokenizer>,
) -> Result<usize, DatasetError> {
    match (unit, tok) {
        (LengthUnit::Chars, _) => Ok(row.reasoning.chars().count() + row.content.chars().count()),
        (LengthUnit::Tokens, Some(tok)) => Ok(tok
            .encode(&assistant_content(&row.reasoning, &row.content), false)?
            .len()),
        (LengthUnit::Tokens, None) => Ok(row.completion_tokens as usize),
    }
}

fn summarize(mut v: Vec<usize>, unit: LengthUnit) -> LengthSummary {
    let unit = match unit {
        LengthUnit::Tokens => "tokens",
        LengthUnit::Chars => "chars",
    }
    .to_string();
    if v.is_empty() {
        return LengthSummary {
            unit,
            ..LengthSummary::default()
        };
    }
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    LengthSummary {
        unit,
        min: v[0],
        mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
        p50: pick(0.5),
        p90: pick(0.9),
        max: v[v.len() - 1],
    }
}
