"""Decoding on the GPU data path. Loader workers read each file's bytes and draw its augmentation
parameters (:class:`EncodedImageDataset`); a batch crosses into the training process as one byte tensor
(:class:`EncodedBatch`); :class:`DeviceDecoder` decodes it on the device (nvjpeg through :mod:`.nvjpeg`,
torchvision's ``decode_jpeg`` elsewhere) into one packed buffer (:class:`DecodedBatch`) and augments it.

Bad files are handled as on the CPU path: a worker opens each file's header with PIL, decodes there
what is not a baseline JPEG (progressive, PNG, CMYK, a JPEG without its end marker), and skips and
counts what PIL cannot read. On the device, a batch that nvjpeg refuses is decoded image by image; an
image nvjpeg refuses is decoded by libjpeg on the host, and one neither can decode is counted as bad
and replaced by another image of the batch.
"""
from __future__ import annotations

import io
import itertools
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from ..folders import RobustImageDataset
from .augment import DeviceAugment
from .device import to_device
from .nvjpeg import NvjpegUnavailable, nvjpeg_decoder
from .plan import AugmentPlan, plan_from_transform

_logger = logging.getLogger(__name__)

_END_OF_IMAGE = b"\xff\xd9"
_TAIL = 1024  # bytes searched for the end marker (some files carry padding after it)
GPU_DECODABLE_MODES = ("RGB", "L")


_DECODE_WORKS = {}


def gpu_decode_available(device: torch.device) -> bool:
    """nvjpeg decoding needs a CUDA device and a torchvision built with it (the op is registered even
    without nvjpeg, and then raises): decode a tiny JPEG once to know."""
    if device.type != "cuda":
        return False
    if device not in _DECODE_WORKS:
        encoded = io.BytesIO()
        Image.new("RGB", (16, 16), (90, 120, 30)).save(encoded, format="JPEG")
        try:
            decode_jpeg([torch.frombuffer(bytearray(encoded.getvalue()), dtype=torch.uint8)], mode=ImageReadMode.RGB,
                        device=device)
            _DECODE_WORKS[device] = True
        except RuntimeError as error:
            _logger.warning("nvjpeg decoding does not work on %s (%s)", device, error)
            _DECODE_WORKS[device] = False
    return _DECODE_WORKS[device]


def _decode_error(error: RuntimeError) -> bool:
    """A refusal to decode, as opposed to running out of memory or a broken CUDA context."""
    return not isinstance(error, torch.OutOfMemoryError) and "CUDA error" not in str(error)



@dataclass
class EncodedItem:
    payload: torch.Tensor  # JPEG bytes (1-D uint8), or decoded (3, H, W) uint8 pixels
    encoded: bool
    params: np.ndarray
    size: Tuple[int, int]  # (H, W)


class EncodedImageDataset(RobustImageDataset):
    """timm's reader, returning file bytes plus the parameters of ``plan`` instead of transformed pixels;
    unreadable files are skipped and counted by :class:`RobustImageDataset`'s loop."""

    def __init__(self, location: str, plan: AugmentPlan, class_map: str = "", reader=None) -> None:
        super().__init__(location, transform=None, class_map=class_map, reader=reader)
        self.plan = plan

    @classmethod
    def from_dataset(cls, dataset: RobustImageDataset, plan: Optional[AugmentPlan] = None) -> "EncodedImageDataset":
        """The same files and labels as ``dataset`` (its reader is shared), for the device plan of its
        transform unless ``plan`` is given."""
        return cls(dataset.location, plan or plan_from_transform(dataset.transform), reader=dataset.reader)

    def load(self, index: int) -> Tuple[EncodedItem, int]:
        file, label = self.reader[index]
        data = file.read()
        file.close()
        image = Image.open(io.BytesIO(data))  # reads the header only
        if (image.format == "JPEG" and image.mode in GPU_DECODABLE_MODES and not image.info.get("progressive")
                and data.rfind(_END_OF_IMAGE, max(0, len(data) - _TAIL)) != -1):
            payload, encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8), True
        else:
            image = image.convert("RGB")  # decodes fully: corrupt files raise here, inside the guard
            payload, encoded = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous(), False
        return EncodedItem(payload, encoded, self.plan.sample(image), (image.height, image.width)), label


@dataclass
class EncodedBatch:
    """A batch as the workers hand it over: every payload in one byte tensor, so a batch crosses the
    process boundary as one shared-memory block rather than one per image."""

    data: torch.Tensor  # the payloads' bytes, concatenated (1-D uint8)
    lengths: List[int]
    shapes: List[Optional[Tuple[int, int, int]]]  # None: JPEG bytes; (3, H, W): pixels decoded by a worker
    labels: torch.Tensor
    params: torch.Tensor  # (B, P) float64
    sizes: torch.Tensor  # (B, 2) [H, W]
    bad: torch.Tensor

    @property
    def encoded(self) -> List[bool]:
        return [shape is None for shape in self.shapes]

    def payloads(self) -> List[torch.Tensor]:
        parts = self.data.split(self.lengths)
        return [part if shape is None else part.view(shape) for part, shape in zip(parts, self.shapes)]

    def pin_memory(self) -> "EncodedBatch":
        """Pinned, so that nvjpeg's and our host-to-device copies need not be staged by the driver."""
        return EncodedBatch(self.data.pin_memory(), self.lengths, self.shapes, self.labels.pin_memory(),
                            self.params.pin_memory(), self.sizes, self.bad)


def collate_encoded(batch: List[Tuple[EncodedItem, int, int]]) -> EncodedBatch:
    items, labels, bad = zip(*batch)
    payloads = [item.payload.reshape(-1) for item in items]
    return EncodedBatch(torch.cat(payloads), [len(p) for p in payloads],
                        [None if item.encoded else tuple(item.payload.shape) for item in items], torch.tensor(labels),
                        torch.from_numpy(np.stack([item.params for item in items])),
                        torch.tensor([item.size for item in items]), torch.tensor(bad))


@dataclass
class DecodedBatch:
    """A batch decoded on the device: every image's (3, H, W) uint8 planes packed in ``pixels``, and on
    the host their sizes (B, 2), augmentation parameters (B, P), labels and bad-file counts."""

    pixels: torch.Tensor
    sizes: torch.Tensor
    params: torch.Tensor
    labels: torch.Tensor
    bad: torch.Tensor


class DeviceDecoder:
    """EncodedBatch -> (normalised images on the device, labels on the device, bad counts on the host).

    JPEGs are decoded by :class:`.nvjpeg.NvjpegDecoder` on CUDA devices, by torchvision's
    ``decode_jpeg`` where nvjpeg's library cannot be used and on the CPU."""

    def __init__(self, plan: AugmentPlan, device: torch.device) -> None:
        self.device = device
        self.augment = DeviceAugment(plan, device)
        self.nvjpeg = None
        if device.type == "cuda":
            try:
                self.nvjpeg = nvjpeg_decoder(device)
            except NvjpegUnavailable as error:
                _logger.warning("decoding with torchvision's nvjpeg call, which holds the GIL while the GPU "
                                "decodes: %s", error)
        _logger.info("JPEGs decoded by %s", self.describe())

    def describe(self) -> str:
        if self.nvjpeg is not None:
            return "nvjpeg on the GPU's %d JPEG engines" % self.nvjpeg.engines()[0] if self.nvjpeg.hardware else \
                "nvjpeg's hybrid decoder"
        return "torchvision's decode_jpeg on " + str(self.device)

    def decode_jpegs(self, payloads: List[torch.Tensor], sizes: List[List[int]], flat: torch.Tensor,
                     offsets: List[int]) -> Dict[int, str]:
        """Decodes JPEG bytes into ``flat`` at ``offsets``; returns the ones refused (position -> why)."""
        if self.nvjpeg is not None:
            return self.nvjpeg.decode(payloads, sizes, flat, offsets)
        if self.device.type == "cuda":
            # torchvision's nvjpeg writes its outputs on a stream of its own, into memory this stream may still be
            # reading (the previous batch's augmentation): let that finish first. Only this thread waits.
            torch.cuda.current_stream(self.device).synchronize()
        decoded = self._try_decode(payloads, self.device)
        if decoded is None:
            decoded = [self._try_decode(payload, self.device) for payload in payloads]  # find the ones it refuses
        refused = {}
        for position, (image, size, offset) in enumerate(zip(decoded, sizes, offsets)):
            if image is None:
                refused[position] = "refused by decode_jpeg"
            elif list(image.shape[1:]) != size:
                refused[position] = f"decoded as {tuple(image.shape[1:])}"
            else:
                self._place(flat, offset, image)
        return refused

    @staticmethod
    def _try_decode(payload, device: torch.device):
        """decode_jpeg's result, or None when it refuses the data (running out of memory or a broken CUDA
        context is raised, not taken for a bad file)."""
        try:
            return decode_jpeg(payload, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as error:
            if not _decode_error(error):
                raise
            _logger.debug("decode_jpeg refused: %s", error)
            return None

    def __call__(self, batch: EncodedBatch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.augment_packed(self.decode_packed(batch))

    def augment_packed(self, decoded: "DecodedBatch") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised images on the device, labels on the device, bad counts on the host)."""
        images = self.augment(decoded.pixels, decoded.sizes, decoded.params)
        return images, to_device(decoded.labels, self.device), decoded.bad

    def decode_packed(self, batch: EncodedBatch) -> "DecodedBatch":
        """The batch's images decoded into one buffer of (3, H, W) planes, with the sizes, parameters,
        labels and bad counts that go with them once failed slots are filled.

        JPEGs the device decoder refuses are decoded by libjpeg on the host; one neither decodes at the
        size its header gave is counted as bad, and its slot repeats the next good image of the batch."""
        sizes = batch.sizes.tolist()
        lengths = [3 * height * width for height, width in sizes]
        offsets = [0, *itertools.accumulate(lengths)][:-1]
        flat = torch.empty(sum(lengths), dtype=torch.uint8, device=self.device)
        payloads, encoded = batch.payloads(), batch.encoded
        jpegs = [index for index, is_jpeg in enumerate(encoded) if is_jpeg]
        for index, is_jpeg in enumerate(encoded):
            if not is_jpeg:  # decoded by a worker
                self._place(flat, offsets[index], payloads[index])
        refused = self.decode_jpegs([payloads[i] for i in jpegs], [sizes[i] for i in jpegs], flat,
                                    [offsets[i] for i in jpegs]) if jpegs else {}
        failed, host_decoded = [], 0
        for position, why in sorted(refused.items()):
            index = jpegs[position]
            _logger.debug("image %d of the batch not decoded on the device: %s", index, why)
            image = self._try_decode(payloads[index], torch.device("cpu"))
            if image is None or list(image.shape[1:]) != sizes[index]:
                _logger.warning("skipped image %d of the batch, which neither %s nor libjpeg decodes at its header's "
                                "size %s", index, "nvjpeg" if self.device.type == "cuda" else "decode_jpeg",
                                tuple(sizes[index]))
                failed.append(index)
            else:
                self._place(flat, offsets[index], image)
                host_decoded += 1
        if host_decoded and self.device.type == "cuda":
            _logger.warning("%d image(s) of a batch that nvjpeg refused were decoded on the host", host_decoded)
        labels, params, sizes, bad = batch.labels, batch.params, batch.sizes, batch.bad
        if failed:
            good = [index for index in range(len(lengths)) if index not in failed]
            if not good:
                raise RuntimeError(f"no image of a batch of {len(lengths)} could be decoded: is the dataset intact?")
            source = torch.tensor([next((g for g in good if g >= index), good[0]) for index in range(len(lengths))])
            flat = torch.cat([flat.narrow(0, offsets[s], lengths[s]) for s in source.tolist()])
            labels, params, sizes = labels[source], params[source], sizes[source]
            bad = bad + torch.tensor([index in failed for index in range(len(lengths))]).long()
        return DecodedBatch(flat, sizes, params, labels, bad)

    def _place(self, flat: torch.Tensor, offset: int, image: torch.Tensor) -> None:
        """Copies a decoded image into ``flat`` at ``offset``, from pinned memory when it is on the host."""
        if self.device.type == "cuda" and image.device.type == "cpu" and not image.is_pinned():
            image = image.pin_memory()
        flat.narrow(0, offset, image.numel()).copy_(image.reshape(-1), non_blocking=True)
