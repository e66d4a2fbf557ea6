"""Dynamic batching for the server: requests that arrive together are decoded together.

One worker thread owns the models. A request handler puts its sentences and decode options on a queue and waits on
a Future. The worker takes the first waiting request, keeps collecting for at most `max_wait` seconds or until
`max_batch` sentences wait, groups what it collected by decode options (only requests with the same model, beam,
n_best, alpha and attention can share a search), decodes each group in one call, and answers each future with its
own slice of the results:

    t=0 ms  request A: 2 sentences, beam 5  ─┐
    t=1 ms  request B: 1 sentence,  beam 5   ├─ collected until t=5 ms: one search over A+B's 3 sentences,
    t=3 ms  request C: 1 sentence,  beam 1  ─┘  then one over C's

A request is never split, so a batch holds at most max_batch + (sentences per request - 1) sentences. A request
that waits longer than its handler wants is cancelled by the handler, and the worker skips it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """What a search needs besides the sentences; requests with equal Options share one search."""

    model: str
    beam: int
    n_best: int = 1
    alpha: float = 0.6
    attention: bool = False


@dataclass
class Job:
    sentences: list[str]
    options: Options
    future: Future


class Busy(RuntimeError):
    """More sentences wait than the server accepts (the handler answers 503)."""


Decode = Callable[[Options, list[str]], Sequence]  # (options, sentences) -> one result per sentence


class Batcher:
    def __init__(self, decode: Decode, max_batch: int = 64, max_wait: float = 0.005, max_pending: int = 4096) -> None:
        if max_batch < 1 or max_wait < 0 or max_pending < 1:
            raise ValueError(f"need max_batch >= 1, max_wait >= 0, max_pending >= 1; got {max_batch}, {max_wait}, "
                             f"{max_pending}")  # fmt: skip
        self.decode, self.max_batch, self.max_wait, self.max_pending = decode, max_batch, max_wait, max_pending
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.pending = 0  # sentences submitted and not yet answered
        self.stats = {"requests": 0, "sentences": 0, "batches": 0, "searches": 0}
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="seq2seq-decoder", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout)
            self.thread = None

    def submit(self, sentences: list[str], options: Options) -> Future:
        """A Future of the results for `sentences`, in order; Busy when the queue is full."""
        with self.lock:
            if self.pending + len(sentences) > self.max_pending:
                raise Busy(f"{self.pending} sentences are waiting to be translated; try again shortly")
            self.pending += len(sentences)
        job = Job(list(sentences), options, Future())
        self.queue.put(job)
        return job.future

    def _collect(self) -> list[Job] | None:
        """The next batch: the first waiting job, then whatever arrives within max_wait, up to max_batch sentences.
        None once stop() was called."""
        first = self.queue.get()
        if first is None:
            return None
        jobs, size = [first], len(first.sentences)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.queue.put(None)  # stop after this batch
                break
            jobs.append(job)
            size += len(job.sentences)
        return jobs

    def _run(self) -> None:
        while (jobs := self._collect()) is not None:
            groups: dict[Options, list[Job]] = {}
            for job in jobs:
                if job.future.set_running_or_notify_cancel():  # False: its handler gave up waiting
                    groups.setdefault(job.options, []).append(job)
                else:
                    self._done(job)
            self.stats["batches"] += 1
            for options, group in groups.items():
                self._search(options, group)

    def _search(self, options: Options, group: list[Job]) -> None:
        sentences = [s for job in group for s in job.sentences]
        try:
            results = self.decode(options, sentences)
        except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the worker goes on
            for job in group:
                job.future.set_exception(e)
                self._done(job)
            return
        self.stats["searches"] += 1
        start = 0
        for job in group:
            job.future.set_result(list(results[start : start + len(job.sentences)]))
            start += len(job.sentences)
            self.stats["requests"] += 1
            self.stats["sentences"] += len(job.sentences)
            self._done(job)

    def _done(self, job: Job) -> None:
        with self.lock:
            self.pending -= len(job.sentences)
