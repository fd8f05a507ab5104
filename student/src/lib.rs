//! The SFT / logit-distillation trainer for student models.
