//! Many requests through one [`Backend`] with bounded concurrency and cancellation: the loop
//! the teacher sampler, the evaluator and the client benchmarks share.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use crate::backend::{Backend, BackendError, ChatRequest, Completion};

/// Runs `jobs` through `backend` with at most `concurrency` requests in flight, handing each
/// result to `on_result` as it arrives (in completion order). Returns `Ok(true)` when `stop`
/// fired first: in-flight requests are then dropped (cancelled) and never reported, so the
/// caller can treat everything not reported as not done. An error from `on_result` stops the
/// run and is returned.
pub async fn drive<J, E>(
    backend: Arc<dyn Backend>,
    jobs: impl IntoIterator<Item = (J, ChatRequest)>,
    concurrency: usize,
    stop: impl Future<Output = ()>,
    mut on_result: impl FnMut(J, Result<Completion, BackendError>) -> Result<(), E>,
) -> Result<bool, E> {
    let mut results = futures::stream::iter(jobs)
        .map(|(job, request)| {
            let backend = backend.clone();
            async move {
                let out = backend.complete(request).await;
                (job, out)
            }
        })
        .buffer_unordered(concurrency.max(1));
    let stop = std::pin::pin!(stop);
    let mut stop = futures::FutureExt::fuse(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(true),
            next = results.next() => match next {
                Some((job, out)) => on_result(job, out)?,
                None => return Ok(false),
            },
        }
    }
}
