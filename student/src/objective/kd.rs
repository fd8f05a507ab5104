//! Logit distillation: `(1 − w)·CE + w·KD` against a teacher sharing the student's tokenizer,
//! the teacher run without autodiff on the same micro-batch, both projected chunk by chunk.
//!
//! When the student's logits are a plain projection (probed once, as for SFT), each chunk's
//! loss is back-propagated on its own through [`crate::fused_head`], so one chunk of student
//! and teacher logits is alive at a time; otherwise (the reference path) autodiff sees every
//! chunk and they all live until the step's backward.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use models::lm::ForwardInput;
use models::{CausalLm, Model};

use super::{scalar, LossSums, Objective, ObjectiveLoss};
use crate::batch::MicroBatch;
use crate::fused_ce::{projection_weight, LmProjection};
use crate::fused_head::fused_head;
use crate::loss::{ce_sum_chunk, kd_sum_chunk, loss_chunks, KdSpec};

/// The KD objective with its teacher (on the inner, non-autodiff backend).
pub struct KdObjective<B: Backend> {
    teacher: Model<B>,
    spec: KdSpec,
    weight: f64,
    loss_chunk: usize,
    fused: Option<LmProjection>,
    weight_grad: bool,
}

impl<B: Backend> KdObjective<B> {
    /// `weight` mixes the KD term into the cross-entropy: `(1 − weight)·CE + weight·KD`.
    pub fn new(teacher: Model<B>, spec: KdSpec, weight: f64, loss_chunk: usize) -> Self {
        Self {
            teacher,
            spec,
            weight,
            loss_chunk,
            fused: None,
            weight_grad: true,
        }
    }

    /// Uses the one-chunk-at-a-time head for the probed output projection `proj`;
    /// `weight_grad`: whether the projection itself is trained (false under LoRA).
    pub fn with_fused_head(mut self, proj: Option<LmProjection>, weight_grad: bool) -> Self {
        self.fused = proj;
        self.weight_grad = weight_grad;
        self
    }

    /// Whether the one-chunk-at-a-time head is used.
    pub fn is_fused(&self) -> bool {
        self.fused.is_some()
    }

    /// The `(1 − w)·CE + w·KD` of one chunk of student logits, normalised by `step_tokens`,
    /// with its host-side parts added to `sums`.
    fn chunk_loss<AB: AutodiffBackend<InnerBackend = B>>(
        &self,
        student: Tensor<AB, 3>,
        teacher_hidden: &Tensor<B, 3>,
        mb: &MicroBatch,
        (a, b): (usize, usize),
        step_tokens: usize,
        sums: &mut LossSums,
    ) -> Tensor<AB, 1> {
        let w = self.weight;
        let ce = ce_sum_chunk(student.clone(), &mb.targets, a, b);
        let tl = Tensor::<AB, 3>::from_inner(self.teacher.logits(teacher_hidden.clone().narrow(1, a, b - a)));
        let kd = kd_sum_chunk(student, tl, &mb.targets, a, b, self.spec);
        let (c, k) = (scalar(&ce), scalar(&kd));
        sums.add_part("ce", c);
        sums.add_part("kd", k);
        sums.total += (1.0 - w) * c + w * k;
        (ce.mul_scalar(1.0 - w) + kd.mul_scalar(w)).div_scalar(step_tokens as f64)
    }
}

impl<AB: AutodiffBackend> Objective<AB> for KdObjective<AB::InnerBackend> {
    type Batch = MicroBatch;

    fn is_empty(&self, mb: &MicroBatch) -> bool {
        mb.targets.num_loss_tokens() == 0
    }

    fn input(&self, mb: &MicroBatch, device: &AB::Device) -> ForwardInput<AB> {
        mb.to_input::<AB>(device)
    }

    fn loss_from_hidden(&self, view: &Model<AB>, hidden: Tensor<AB, 3>, mb: &MicroBatch, step_tokens: usize) -> Option<ObjectiveLoss<AB>> {
        let chunks = loss_chunks(&mb.targets, self.loss_chunk);
        if chunks.is_empty() {
            return None;
        }
        let teacher_hidden = self.teacher.forward_hidden(mb.to_input::<AB::InnerBackend>(&hidden.device()));
        let mut sums = LossSums::default();
        if let Some(proj) = &self.fused {
            let (found, w) = projection_weight(view)?;
            debug_assert_eq!(found.id, proj.id);
            let head = fused_head::<AB>(hidden.clone().inner(), w.inner(), &chunks, self.weight_grad, |logits, a, b| {
                self.chunk_loss(logits, &teacher_hidden, mb, (a, b), step_tokens, &mut sums)
            });
            let surrogate = (hidden * Tensor::<AB, 3>::from_inner(head.grad_hidden)).sum();
            return Some(ObjectiveLoss {
                loss: surrogate,
                sums,
                projection_grad: head.grad_weight.map(|g| (proj.id, g)),
            });
        }
        let mut total: Option<Tensor<AB, 1>> = None;
        for (a, b) in chunks {
            let logits = view.logits(hidden.clone().narrow(1, a, b - a));
            let part = self.chunk_loss(logits, &teacher_hidden, mb, (a, b), step_tokens, &mut sums);
            total = Some(match total {
                Some(t) => t + part,
                None => part,
            });
        }
        Some(ObjectiveLoss {
            loss: total?,
            sums,
            projection_grad: None,
        })
    }
}

impl<B: Backend> KdObjective<B> {
    /// Loads the teacher of `[distill]` (in the compute dtype) after checking that it shares
    /// the student's tokenizer (`student_tok`): KD compares distributions token by token.
    pub fn load(section: &crate::config::DistillSection, student_tok: Option<&std::path::Path>, device: &B::Device, dtype: Option<burn::tensor::DType>, loss_chunk: usize) -> crate::Result<Self> {
        use crate::error::StudentError;
        use datasets::TextTokenizer;
        let dir = &section.teacher;
        let teacher_tok = TextTokenizer::from_dir(dir).map_err(|e| StudentError::dataset(format!("loading the teacher tokenizer in {}", dir.display()), e))?;
        let student_dir = student_tok.ok_or_else(|| StudentError::Data("logit distillation needs the student's tokenizer".into()))?;
        let student_tok = TextTokenizer::from_dir(student_dir)
            .map_err(|e| StudentError::dataset(format!("loading the student tokenizer in {}", student_dir.display()), e))?;
        if teacher_tok.inner().get_vocab(true) != student_tok.inner().get_vocab(true) {
            return Err(StudentError::Data(format!(
                "logit distillation needs teacher and student to share a tokenizer; {} and {} differ",
                dir.display(),
                student_tok.dir().display()
            )));
        }
        let loaded = models::load_model::<B>(dir, device, dtype.unwrap_or(burn::tensor::DType::F32))
            .map_err(|e| StudentError::model(format!("loading the teacher {}", dir.display()), e))?;
        let spec = KdSpec {
            kind: section.kind,
            beta: section.beta,
            temperature: section.temperature,
        };
        Ok(Self::new(loaded.model, spec, section.weight, loss_chunk))
    }
}
