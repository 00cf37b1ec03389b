"""Runs the GPU data path one batch ahead of training: :class:`DevicePrefetcher` iterates a loader of
:class:`.decode.EncodedBatch` and yields ``(images, labels, bad)`` on the device."""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Tuple

import torch

from .decode import DeviceDecoder

_DONE = object()
# The data streams' kernels are few and short, and the next step waits for them: they go ahead of the
# training step's kernels queued for the same multiprocessors (no gain measurable beside machine noise).
DATA_STREAM_PRIORITY = -1


class DevicePrefetcher:
    """Iterates a loader of :class:`EncodedBatch` and yields ``(images, labels, bad)`` on the device.

    On CUDA two background threads, each on a stream of its own, run ahead of training by up to
    ``depth`` batches: one decodes (nvjpeg blocks its caller while the decoder works, without the GIL
    through :mod:`.nvjpeg`), the other augments, so decoding the next batch overlaps augmenting
    this one and both run beside the training step. On a CPU device the batches are prepared in line.
    The plan comes from the loader's :class:`EncodedImageDataset`."""

    def __init__(self, loader, device: torch.device, depth: int = 3) -> None:
        self.loader = loader
        self.decoder = DeviceDecoder(loader.dataset.plan, device)
        self.depth = depth

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self):
        return self.loader.dataset

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        device = self.decoder.device
        if device.type != "cuda":
            for batch in self.loader:
                yield self.decoder(batch)
            return
        stop = threading.Event()
        decoded: queue.Queue = queue.Queue(maxsize=self.depth)
        ready: queue.Queue = queue.Queue(maxsize=self.depth)

        def put(target: queue.Queue, item) -> None:
            while not stop.is_set():
                try:
                    target.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def stage(source, work, target: queue.Queue) -> None:
            try:
                stream = torch.cuda.Stream(device, priority=DATA_STREAM_PRIORITY)
                with torch.cuda.device(device), torch.cuda.stream(stream):
                    for item in source():
                        if stop.is_set():
                            return
                        if isinstance(item, BaseException):
                            raise item
                        put(target, work(item, stream))
            except BaseException as error:  # handed on to the training thread, which raises it
                put(target, error)
            else:
                put(target, _DONE)

        def decode(batch, stream):
            packed = self.decoder.decode_packed(batch)
            event = torch.cuda.Event()
            event.record(stream)
            return packed, event

        def augment(item, stream):
            decoded, event = item
            stream.wait_event(event)
            decoded.pixels.record_stream(stream)
            images, labels, bad = self.decoder.augment_packed(decoded)
            done = torch.cuda.Event()
            done.record(stream)
            return images, labels, bad, done

        threads = [threading.Thread(target=stage, args=(lambda: iter(self.loader), decode, decoded), daemon=True,
                                    name="gpu-data-decode"),
                   threading.Thread(target=stage, args=(lambda: _drain(decoded, stop), augment, ready), daemon=True,
                                    name="gpu-data-augment")]
        try:
            for thread in threads:
                thread.start()
            for item in _drain(ready, stop):
                if isinstance(item, BaseException):
                    raise item
                images, labels, bad, event = item
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                images.record_stream(current)  # the allocator must not reuse them before training has read them
                labels.record_stream(current)
                yield images, labels, bad
        finally:
            stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join()


def _drain(source: queue.Queue, stop: threading.Event):
    """Items of ``source`` up to its end marker (errors included, for the consumer to raise)."""
    while not stop.is_set():
        try:
            item = source.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is _DONE:
            return
        yield item
        if isinstance(item, BaseException):
            return
