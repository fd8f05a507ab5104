//! The part of a sampling stage that teacher sampling and evaluation share: a problem becomes
//! chat messages and a request, and a completion becomes the shared columns of its row
//! ([`SampleRecord`]). Each stage keeps only what differs — how it grades and which columns it
//! adds — so a request or a recorded parameter cannot drift between the two.

use datasets::records::{SampleRecord, Verdict};

use crate::backend::{ChatRequest, Completion, Message, Prompt};

/// The chat messages for one problem: the optional system prompt, then `template` with
/// `{problem}` replaced as the user turn.
pub fn chat_messages(system_prompt: Option<&str>, template: &str, problem: &str) -> Vec<Message> {
    let mut msgs = Vec::with_capacity(2);
    if let Some(s) = system_prompt {
        msgs.push(Message::system(s));
    }
    msgs.push(Message::user(template.replace("{problem}", problem)));
    msgs
}

/// Sampling parameters: sent with every request of a run and recorded with every row.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleParams {
    /// Maximum new tokens.
    pub max_tokens: u32,
    /// Temperature.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Extra stop strings.
    pub stop: Vec<String>,
}

/// Which sample a row records.
#[derive(Clone, Copy, Debug)]
pub struct SampleId<'a> {
    /// Problem id.
    pub problem_id: &'a str,
    /// Index among the problem's k samples.
    pub sample_index: u32,
    /// The sample's seed.
    pub seed: u64,
}

impl SampleParams {
    /// The request for one sample of `messages`.
    pub fn request(&self, messages: Vec<Message>, seed: u64) -> ChatRequest {
        ChatRequest {
            prompt: Prompt::Messages(messages),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: Some(seed),
            stop: self.stop.clone(),
        }
    }

    /// The shared columns of the row recording `c` for sample `id`, graded against `reference`
    /// as `verdict` (with the `extracted` answer).
    pub fn record(
        &self,
        id: SampleId<'_>,
        reference: &str,
        (verdict, extracted): (Verdict, Option<String>),
        c: &Completion,
    ) -> SampleRecord {
        SampleRecord {
            problem_id: id.problem_id.to_string(),
            sample_index: id.sample_index,
            reference_answer: reference.to_string(),
            extracted_answer: extracted,
            verdict,
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            finish_reason: c.finish_reason,
            seed: id.seed,
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            latency_ms: c.latency_ms,
            error: c.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::records::FinishReason;

    #[test]
    fn requests_and_records_carry_the_same_parameters() {
        let p = SampleParams {
            max_tokens: 9,
            temperature: 0.6,
            top_p: 0.95,
            stop: vec!["x".into()],
        };
        let m = chat_messages(Some("sys"), "{problem}!", "1+1");
        assert_eq!(m, vec![Message::system("sys"), Message::user("1+1!")]);
        assert_eq!(chat_messages(None, "{problem}", "q").len(), 1);
        let r = p.request(m, 5);
        assert_eq!(
            (r.max_tokens, r.temperature, r.top_p, r.seed),
            (9, 0.6, 0.95, Some(5))
        );
        assert_eq!(r.stop, vec!["x".to_string()]);
        let c = Completion::failed("HTTP 400", 3);
        let id = SampleId {
            problem_id: "p",
            sample_index: 2,
            seed: 5,
        };
        let s = p.record(id, "2", (Verdict::Error, None), &c);
        assert_eq!(
            (s.max_tokens, s.temperature, s.top_p, s.seed),
            (9, 0.6, 0.95, 5)
        );
        assert_eq!(
            (s.finish_reason, s.error.as_deref(), s.latency_ms),
            (FinishReason::Error, Some("HTTP 400"), 3)
        );
        assert_eq!(s.key(), ("p".to_string(), 2));
    }
}
