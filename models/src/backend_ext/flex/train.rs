//! The Flex side of the training kernels: chunked-loss GEMMs into owned buffers, the
//! in-place cross-entropy gradient, FlashAttention-2 and SwiGLU. Like its parent, it only
//! answers "can these tensors take the fast path?" and hands back `None`/`Err` when not.

use std::any::TypeId;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::DType;

use super::{from_flex, take_flex, to_flex, write_in_place};
use crate::backend_ext::flash_cpu::{self, View4};
use crate::backend_ext::swiglu;
use crate::backend_ext::xent::xent_grad_rows;
use crate::flash_attention::FlashPlan;

/// A 2-D f32 operand of a GEMM as gemm takes it: the buffer from the view's offset and the
/// view's (row, column) strides; `None` unless `t` is Flex f32 with non-negative strides that
/// stay inside its buffer.
struct GemmOperand {
    tensor: FlexTensor,
    offset: usize,
    rs: isize,
    cs: isize,
}

impl GemmOperand {
    fn of<B: Backend>(t: &Tensor<B, 2>) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let tensor = to_flex(t.clone())?;
        let (shape, strides) = (tensor.layout().shape().to_vec(), tensor.layout().strides().to_vec());
        let (rs, cs) = (strides[0], strides[1]);
        let offset = tensor.layout().start_offset();
        if rs < 0 || cs < 0 {
            return None;
        }
        let last = offset + shape[0].saturating_sub(1) * rs as usize + shape[1].saturating_sub(1) * cs as usize;
        (shape.iter().all(|&d| d > 0) && last < tensor.storage::<f32>().len()).then_some(Self { tensor, offset, rs, cs })
    }

    fn ptr(&self) -> *const f32 {
        self.tensor.storage::<f32>()[self.offset..].as_ptr()
    }
}

/// `dst [m, n] (+)= lhs [m, k] · rhs [k, n]` into the row-major `dst` (`accumulate`: add to
/// what is there), on all rayon threads when the product is large.
fn gemm_into(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: &GemmOperand, rhs: &GemmOperand, accumulate: bool) {
    assert_eq!(dst.len(), m * n, "gemm_into: destination size");
    let parallel = m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192;
    let par = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: `dst` is a distinct, exclusively borrowed row-major [m, n] buffer; both operands
    // were checked (GemmOperand::of) to address only elements inside their own buffers for
    // their shapes, which the callers check are [m, k] and [k, n].
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.ptr(),
            lhs.cs,
            lhs.rs,
            rhs.ptr(),
            rhs.cs,
            rhs.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// `acc [m, n] += aᵀ · b` for `a [k, m]`, `b [k, n]` written into `acc`'s buffer; false
/// (acc untouched) unless `B` is Flex, all three are f32, the shapes agree and `acc` is
/// uniquely owned and contiguous.
pub(in crate::backend_ext) fn try_add_matmul_tn<B: Backend>(acc: &mut Tensor<B, 2>, a: &Tensor<B, 2>, b: &Tensor<B, 2>) -> bool {
    let ([k, m], [k2, n]) = (a.dims(), b.dims());
    if TypeId::of::<B>() != TypeId::of::<Flex>() || acc.dtype() != DType::F32 || k != k2 || acc.dims() != [m, n] {
        return false;
    }
    let (Some(mut at), Some(bt)) = (GemmOperand::of(a), GemmOperand::of(b)) else {
        return false;
    };
    (at.rs, at.cs) = (at.cs, at.rs); // aᵀ: rows of aᵀ are columns of a
    let Some(mut dst) = take_flex(acc) else {
        return false;
    };
    let done = write_in_place(&mut dst, m * n, |ds| gemm_into(ds, m, n, k, &at, &bt, true));
    *acc = from_flex(dst);
    done
}

/// `x [rows, k] · wᵀ` for `w [out, k]` written into `buf`'s buffer; `Err(buf)` (untouched)
/// unless `B` is Flex, all are f32 and `buf` is a uniquely owned contiguous `[rows, out]`.
pub(in crate::backend_ext) fn try_matmul_nt_into<B: Backend>(buf: Tensor<B, 2>, x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let ([rows, k], [out, k2]) = (x.dims(), w.dims());
    if TypeId::of::<B>() != TypeId::of::<Flex>() || buf.dtype() != DType::F32 || k != k2 || buf.dims() != [rows, out] {
        return Err(buf);
    }
    let (Some(xo), Some(mut wo)) = (GemmOperand::of(x), GemmOperand::of(w)) else {
        return Err(buf);
    };
    (wo.rs, wo.cs) = (wo.cs, wo.rs); // wᵀ
    let mut buf = buf;
    let Some(mut dst) = take_flex(&mut buf) else {
        return Err(buf);
    };
    let done = write_in_place(&mut dst, rows * out, |ds| gemm_into(ds, rows, out, k, &xo, &wo, false));
    if done {
        Ok(from_flex(dst))
    } else {
        Err(from_flex(dst))
    }
}

/// [`super::xent::xent_grad_rows`] in the buffer of `logits`; `Err(logits)` (untouched) unless
/// `B` is Flex and `logits` is a uniquely owned contiguous f32 `[targets.len(), vocab]`.
pub(in crate::backend_ext) fn try_xent_grad<B: Backend>(logits: Tensor<B, 2>, targets: &[usize], keep: &[f32], scale: f32) -> Result<(Tensor<B, 2>, f64), Tensor<B, 2>> {
    let [rows, vocab] = logits.dims();
    if TypeId::of::<B>() != TypeId::of::<Flex>() || logits.dtype() != DType::F32 || rows != targets.len() || rows != keep.len() {
        return Err(logits);
    }
    let mut logits = logits;
    let Some(mut t) = take_flex(&mut logits) else {
        return Err(logits);
    };
    let mut nll = None;
    write_in_place(&mut t, rows * vocab, |s| nll = Some(xent_grad_rows(s, vocab, targets, keep, scale)));
    match nll {
        Some(nll) => Ok((from_flex(t), nll)),
        None => Err(from_flex(t)),
    }
}

/// The [`View4`] of a 4-D f32 Flex primitive with non-negative strides inside its buffer.
fn view4(t: &FlexTensor) -> Option<View4<'_>> {
    let (shape, strides) = (t.layout().shape().to_vec(), t.layout().strides().to_vec());
    if t.dtype() != DType::F32 || shape.len() != 4 || strides.iter().any(|&s| s < 0) {
        return None;
    }
    let v = View4 {
        data: t.storage::<f32>(),
        offset: t.layout().start_offset(),
        dims: [shape[0], shape[1], shape[2], shape[3]],
        strides: [strides[0] as usize, strides[1] as usize, strides[2] as usize, strides[3] as usize],
    };
    v.in_bounds().then_some(v)
}

/// Flex primitives of f32 tensors; `None` unless `B` is Flex and every one is f32.
fn flex_f32<B: Backend, const N: usize>(ts: [&Tensor<B, 4>; N]) -> Option<[FlexTensor; N]> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || ts.iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let v: Vec<FlexTensor> = ts.iter().map(|t| to_flex((*t).clone())).collect::<Option<_>>()?;
    v.try_into().ok()
}

fn dense<B: Backend, const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    from_flex(FlexTensor::from_data(TensorData::new(data, shape)))
}

/// [`flash_cpu::forward`] on Flex f32 tensors: `(out, lse)`; `None` when not Flex f32.
pub(in crate::backend_ext) fn try_flash_forward<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, v: &Tensor<B, 4>, scale: f64, plan: &FlashPlan) -> Option<(Tensor<B, 4>, Tensor<B, 4>)> {
    let [qf, kf, vf] = flex_f32([q, k, v])?;
    let (qv, kv, vv) = (view4(&qf)?, view4(&kf)?, view4(&vf)?);
    let ([b, hq, t, _], dv) = (qv.dims, vv.dims[3]);
    let (mut out, mut lse) = (vec![0f32; b * hq * t * dv], vec![0f32; b * hq * t]);
    flash_cpu::forward(&qv, &kv, &vv, scale as f32, plan, &mut out, &mut lse);
    Some((dense(out, [b, hq, t, dv]), dense(lse, [b, hq, t, 1])))
}

/// [`flash_cpu::backward`] on Flex f32 tensors `[q, k, v, out, lse, d_out]`: `(dq, dk, dv)`;
/// `None` when not Flex f32.
pub(in crate::backend_ext) fn try_flash_backward<B: Backend>(tensors: [&Tensor<B, 4>; 6], scale: f64, plan: &FlashPlan) -> Option<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    let [qf, kf, vf, of, lf, df] = flex_f32(tensors)?;
    let (qv, kv, vv, ov, dov) = (view4(&qf)?, view4(&kf)?, view4(&vf)?, view4(&of)?, view4(&df)?);
    let lf = lf.to_contiguous();
    let lse_s = lf.as_slice::<f32>()?;
    let ([b, hq, t, dk], [_, hkv, _, dv]) = (qv.dims, vv.dims);
    let (mut dq, mut dkk, mut dvv) = (vec![0f32; b * hq * t * dk], vec![0f32; b * hkv * t * dk], vec![0f32; b * hkv * t * dv]);
    flash_cpu::backward(&qv, &kv, &vv, &ov, lse_s, &dov, scale as f32, plan, &mut dq, &mut dkk, &mut dvv);
    Some((dense(dq, [b, hq, t, dk]), dense(dkk, [b, hkv, t, dk]), dense(dvv, [b, hkv, t, dv])))
}

/// [`swiglu::swiglu_in_place`] on Flex f32 tensors of one shape, written into `up`'s buffer
/// when it is uniquely owned (else a fresh one); `Err(up)` (untouched) when not Flex f32 or
/// either is strided.
pub(in crate::backend_ext) fn try_swiglu<B: Backend, const D: usize>(gate: &Tensor<B, D>, up: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let n = up.shape().num_elements();
    if TypeId::of::<B>() != TypeId::of::<Flex>() || gate.dtype() != DType::F32 || up.dtype() != DType::F32 || gate.dims() != up.dims() {
        return Err(up);
    }
    let Some(gf) = to_flex(gate.clone()) else {
        return Err(up);
    };
    let Some(gs) = gf.as_slice::<f32>() else {
        return Err(up);
    };
    let dims = up.dims();
    let mut up = up;
    let Some(mut uf) = take_flex(&mut up) else {
        return Err(up);
    };
    if write_in_place(&mut uf, n, |us| swiglu::swiglu_in_place(gs, us)) {
        return Ok(from_flex(uf));
    }
    match uf.as_slice::<f32>() {
        Some(us) => {
            let mut out = us.to_vec();
            swiglu::swiglu_in_place(gs, &mut out);
            Ok(dense(out, dims))
        }
        None => Err(from_flex(uf)),
    }
}

/// [`swiglu::swiglu_backward`] on Flex f32 tensors of one shape: `(d_gate, d_up)`; `None`
/// when not Flex f32 or one is strided.
pub(in crate::backend_ext) fn try_swiglu_backward<B: Backend, const D: usize>(gate: &Tensor<B, D>, up: &Tensor<B, D>, d_act: &Tensor<B, D>) -> Option<(Tensor<B, D>, Tensor<B, D>)> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || [gate, up, d_act].iter().any(|t| t.dtype() != DType::F32 || t.dims() != gate.dims()) {
        return None;
    }
    let (gf, uf, df) = (to_flex(gate.clone())?, to_flex(up.clone())?, to_flex(d_act.clone())?);
    let (gs, us, ds) = (gf.as_slice::<f32>()?, uf.as_slice::<f32>()?, df.as_slice::<f32>()?);
    let (mut dg, mut du) = (vec![0f32; gs.len()], vec![0f32; gs.len()]);
    swiglu::swiglu_backward(gs, us, ds, &mut dg, &mut du);
    Some((dense(dg, gate.dims()), dense(du, gate.dims())))
}

