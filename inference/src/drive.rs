//! Many requests through one [`Backend`] with bounded concurrency and cancellation: the loop
//! the teacher sampler, the evaluator and the client benchmarks share.

use std::future::Future;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::backend::{Backend, BackendError, ChatRequest, Completion};

/// Jobs per chunk of a backend that submits together, in multiples of `concurrency`: large
/// enough that a chunk's tail (the last, longest generations, decoded in a thinning batch)
/// is a small share of its time, small enough that a chunk's prompts are cheap to hold.
pub const CHUNK_WAVES: usize = 16;

/// Runs `jobs` through `backend` with at most `concurrency` requests in flight, handing each
/// result to `on_result` as it arrives (in completion order). Returns `Ok(true)` when `stop`
/// fired first: in-flight requests are then dropped (cancelled) and never reported, so the
/// caller can treat everything not reported as not done. An error from `on_result` stops the
/// run and is returned.
///
/// A backend that [submits together](Backend::submits_together) (the in-process engine, whose
/// batch size bounds what runs at once) gets the jobs in chunks of `concurrency ×`
/// [`CHUNK_WAVES`], in order, each chunk in one call and finished before the next starts:
/// the engine then forms the same batches on every run, so the same jobs give the same
/// tokens (reproducible sampling and evaluation).
pub async fn drive<J, E>(
    backend: Arc<dyn Backend>,
    jobs: impl IntoIterator<Item = (J, ChatRequest)>,
    concurrency: usize,
    stop: impl Future<Output = ()>,
    on_result: impl FnMut(J, Result<Completion, BackendError>) -> Result<(), E>,
) -> Result<bool, E> {
    if backend.submits_together() {
        let chunk = concurrency.max(1).saturating_mul(CHUNK_WAVES);
        return drive_in_chunks(backend, jobs, chunk, stop, on_result).await;
    }
    drive_bounded(backend, jobs, concurrency, stop, on_result).await
}

/// [`drive`] for a backend that takes requests one by one.
async fn drive_bounded<J, E>(
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

/// [`drive`] for a backend that submits together: chunks of `chunk` jobs, each started in one
/// [`Backend::complete_together`] call and drained before the next.
async fn drive_in_chunks<J, E>(
    backend: Arc<dyn Backend>,
    jobs: impl IntoIterator<Item = (J, ChatRequest)>,
    chunk: usize,
    stop: impl Future<Output = ()>,
    mut on_result: impl FnMut(J, Result<Completion, BackendError>) -> Result<(), E>,
) -> Result<bool, E> {
    let stop = std::pin::pin!(stop);
    let mut stop = futures::FutureExt::fuse(stop);
    let mut jobs = jobs.into_iter();
    loop {
        let (ids, requests): (Vec<J>, Vec<ChatRequest>) = jobs.by_ref().take(chunk).unzip();
        if ids.is_empty() {
            return Ok(false);
        }
        let mut running: FuturesUnordered<_> = ids
            .into_iter()
            .zip(backend.complete_together(requests))
            .map(|(job, fut)| async move { (job, fut.await) })
            .collect();
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(true),
                next = running.next() => match next {
                    Some((job, out)) => on_result(job, out)?,
                    None => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::backend::{Message, Prompt};

    /// Records the chunks it is handed and how many of its requests were unfinished when
    /// each chunk arrived.
    #[derive(Default)]
    struct Chunked {
        calls: Mutex<Vec<(usize, usize)>>,
        unfinished: Arc<AtomicUsize>,
    }

    impl Backend for Chunked {
        fn model_name(&self) -> &str {
            "chunked"
        }
        fn complete(&self, _: ChatRequest) -> BoxFuture<'_, Result<Completion, BackendError>> {
            unreachable!("a backend that submits together gets complete_together")
        }
        fn submits_together(&self) -> bool {
            true
        }
        fn complete_together(&self, requests: Vec<ChatRequest>) -> Vec<BoxFuture<'_, Result<Completion, BackendError>>> {
            let n = requests.len();
            self.calls.lock().unwrap().push((n, self.unfinished.load(Ordering::SeqCst)));
            self.unfinished.fetch_add(n, Ordering::SeqCst);
            requests
                .into_iter()
                .enumerate()
                .map(|(i, r)| -> BoxFuture<'_, Result<Completion, BackendError>> {
                    let unfinished = self.unfinished.clone();
                    Box::pin(async move {
                        for _ in 0..i % 3 {
                            tokio::task::yield_now().await;
                        }
                        unfinished.fetch_sub(1, Ordering::SeqCst);
                        Ok(Completion::failed(format!("{:?}", r.seed), 0))
                    })
                })
                .collect()
        }
    }

    fn request(i: u64) -> ChatRequest {
        ChatRequest {
            prompt: Prompt::Messages(vec![Message::user("q")]),
            max_tokens: 1,
            temperature: 0.0,
            top_p: 1.0,
            seed: Some(i),
            stop: Vec::new(),
        }
    }

    fn run(backend: Arc<dyn Backend>, jobs: u64, concurrency: usize) -> Vec<(u64, String)> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut seen = Vec::new();
        let jobs = (0..jobs).map(|i| (i, request(i)));
        let stopped = rt
            .block_on(drive(backend, jobs, concurrency, std::future::pending(), |job, out| {
                seen.push((job, out.unwrap().error.unwrap_or_default()));
                Ok::<(), ()>(())
            }))
            .unwrap();
        assert!(!stopped);
        seen
    }

    #[test]
    fn a_backend_that_submits_together_gets_whole_chunks_one_after_another() {
        let backend = Arc::new(Chunked::default());
        let concurrency = 2;
        let chunk = concurrency * CHUNK_WAVES;
        let seen = run(backend.clone(), (2 * chunk + 5) as u64, concurrency);
        // In order, in chunks, each handed over only when the one before has finished.
        assert_eq!(*backend.calls.lock().unwrap(), vec![(chunk, 0), (chunk, 0), (5, 0)]);
        let mut jobs: Vec<u64> = seen.iter().map(|(j, _)| *j).collect();
        jobs.sort_unstable();
        assert_eq!(jobs, (0..(2 * chunk + 5) as u64).collect::<Vec<_>>());
        // Each job got its own request's result.
        assert!(seen.iter().all(|(j, e)| *e == format!("{:?}", Some(*j))));
    }
}
