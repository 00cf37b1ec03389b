"""Batched JPEG decoding with nvjpeg (the library torchvision links), called through ctypes so that
Python's GIL is released while the GPU decodes; the per-image header checks keep it. Images the batched
decoder does not take are refused with a reason, for the caller to decode otherwise. Why not
torchvision's own call, nvImageCodec or DALI: docs/gpu_data_path.md."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import torch

_logger = logging.getLogger(__name__)

_BACKEND_DEFAULT, _BACKEND_HARDWARE = 0, 3
_OUTPUT_RGB = 3  # planar RGB
_ARCH_MISMATCH = 7
_STATUS = ("success", "not initialized", "invalid parameter", "bad JPEG", "JPEG not supported",
           "allocator failure", "execution failed", "architecture mismatch", "internal error",
           "implementation not supported", "incomplete bitstream")

_p, _u, _i, _size = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_size_t
_out = ctypes.POINTER(ctypes.c_void_p)


class _Image(ctypes.Structure):
    _fields_ = [("channel", ctypes.c_void_p * 4), ("pitch", ctypes.c_size_t * 4)]


_SIGNATURES = {
    "nvjpegCreateEx": (_i, _p, _p, _u, _out),
    "nvjpegGetHardwareDecoderInfo": (_p, ctypes.POINTER(_u), ctypes.POINTER(_u)),
    "nvjpegJpegStateCreate": (_p, _out),
    "nvjpegJpegStreamCreate": (_p, _out),
    "nvjpegJpegStreamParseHeader": (_p, _p, _size, _p),
    "nvjpegJpegStreamGetFrameDimensions": (_p, ctypes.POINTER(_u), ctypes.POINTER(_u)),
    "nvjpegDecodeBatchedSupported": (_p, _p, ctypes.POINTER(_i)),
    "nvjpegDecodeBatchedInitialize": (_p, _p, _i, _i, _i),
    "nvjpegDecodeBatched": (_p, _p, ctypes.POINTER(_p), ctypes.POINTER(_size), ctypes.POINTER(_Image), _p),
}


class NvjpegUnavailable(RuntimeError):
    """nvjpeg's library cannot be found or refuses to start here."""


def _status(code: int) -> str:
    return _STATUS[code] if 0 <= code < len(_STATUS) else f"status {code}"


def library_path() -> Optional[str]:
    """The nvjpeg torchvision's image extension links (loaded with it), else the system's."""
    import torchvision.io.image  # noqa: F401  loads torchvision's image extension and the nvjpeg it links

    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libnvjpeg"):
                    return path
    except OSError:  # not Linux
        pass
    return ctypes.util.find_library("nvjpeg")


_LIBRARY: List[Tuple[ctypes.PyDLL, ctypes.CDLL]] = []


def _library() -> Tuple[ctypes.PyDLL, ctypes.CDLL]:
    """The library twice: calls through the first keep the GIL (for calls of microseconds), calls
    through the second release it (for the decode)."""
    if not _LIBRARY:
        path = library_path()
        if path is None:
            raise NvjpegUnavailable("nvjpeg's library was not found (neither linked by torchvision nor installed)")
        try:
            pair = ctypes.PyDLL(path), ctypes.CDLL(path)
        except OSError as error:
            raise NvjpegUnavailable(f"cannot load {path}: {error}") from error
        for library in pair:
            for name, arguments in _SIGNATURES.items():
                function = getattr(library, name)
                function.argtypes, function.restype = list(arguments), ctypes.c_int
        _LIBRARY.append(pair)
    return _LIBRARY[0]


def _create(function, *arguments) -> ctypes.c_void_p:
    handle = ctypes.c_void_p()
    code = function(*arguments, ctypes.byref(handle))
    if code != 0:
        raise NvjpegUnavailable(f"{function.__name__} failed: {_status(code)}")
    return handle


class NvjpegDecoder:
    """Decodes batches of JPEGs into one packed uint8 buffer on ``device``, in (3, H, W) planes, on a
    stream of its own that the caller's current stream then waits for. ``hardware``: whether the
    GPU's JPEG engines decode (else nvjpeg's hybrid decoder: Huffman decoding on this host thread)."""

    def __init__(self, device: torch.device, states: int = 3, priority: int = -1) -> None:
        if device.type != "cuda":
            raise NvjpegUnavailable(f"nvjpeg decodes on CUDA devices, not {device}")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.held, self.free = _library()
        with torch.cuda.device(device):
            self.hardware = True
            try:
                self.handle = _create(self.held.nvjpegCreateEx, _BACKEND_HARDWARE, None, None, 0)
            except NvjpegUnavailable as error:
                if _status(_ARCH_MISMATCH) not in str(error):
                    raise
                self.hardware = False
                self.handle = _create(self.held.nvjpegCreateEx, _BACKEND_DEFAULT, None, None, 0)
            # nvjpeg stages a batch's input in its state's buffers, which the next call on that state refills
            # whether or not the copies out of them have run: a ring of states, each reused once its batch is done
            self.states = [_create(self.held.nvjpegJpegStateCreate, self.handle) for _ in range(states)]
            self.header = _create(self.held.nvjpegJpegStreamCreate, self.handle)
        self.done = [torch.cuda.Event(blocking=True) for _ in range(states)]  # waited for without spinning
        self.batch_sizes = [0] * states  # what each state was initialised for
        self.inputs: List[Sequence[torch.Tensor]] = [()] * states  # host bytes the state's batch reads
        self.next_state = 0
        self.stream = torch.cuda.Stream(device, priority=priority)  # see prefetch.DATA_STREAM_PRIORITY
        self.lock = threading.Lock()

    def engines(self) -> Tuple[int, int]:
        """(JPEG engines, cores per engine) the hardware decoder reports; (0, 0) without it."""
        if not self.hardware:
            return 0, 0
        engines, cores = ctypes.c_uint(), ctypes.c_uint()
        code = self.held.nvjpegGetHardwareDecoderInfo(self.handle, ctypes.byref(engines), ctypes.byref(cores))
        return (engines.value, cores.value) if code == 0 else (0, 0)

    def decode(self, payloads: Sequence[torch.Tensor], sizes: Sequence[Sequence[int]], output: torch.Tensor,
               offsets: Sequence[int]) -> Dict[int, str]:
        """Decodes JPEG bytes ``payloads[i]`` (1-D uint8 host tensors, best pinned) of frame size
        ``sizes[i]`` (H, W) into ``output[offsets[i]:offsets[i] + 3 * H * W]``. Returns the images not
        decoded (index -> why). The parts of ``output`` of images refused by their header are left as they
        were; those of images the decoder failed on may be partly written."""
        if output.device != self.device or output.dtype != torch.uint8 or not output.is_contiguous():
            raise ValueError(f"output must be a contiguous uint8 tensor on {self.device}")
        payloads = [payload.contiguous() for payload in payloads]
        with self.lock, torch.cuda.device(self.device):
            refused = self._check_headers(payloads, sizes)
            batch = [index for index in range(len(payloads)) if index not in refused]
            slot = self.next_state
            self.next_state = (slot + 1) % len(self.states)
            self.done[slot].synchronize()  # the batch decoded `states` calls ago: normally long done
            self.inputs[slot] = payloads
            current = torch.cuda.current_stream(self.device)
            # The output may be memory the caller's stream is still using, and the hardware decoder's writes
            # do not wait for earlier work on the stream they are given: wait on the host (without the GIL).
            ready = torch.cuda.Event(blocking=True)
            ready.record(current)
            ready.synchronize()
            try:
                if batch and not self._decode_batch(slot, batch, payloads, sizes, output, offsets):
                    for index in batch:  # find the images the batch failed on, one call (and wait) each
                        self.stream.synchronize()  # the state's buffers are refilled by the next call
                        if not self._decode_batch(slot, [index], payloads, sizes, output, offsets):
                            refused[index] = "the batched decoder failed on it"
            finally:
                self.done[slot].record(self.stream)
                current.wait_event(self.done[slot])
        return refused

    def _check_headers(self, payloads: Sequence[torch.Tensor], sizes) -> Dict[int, str]:
        held, handle, header = self.held, self.handle, self.header
        width, height, supported = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_int()
        refused = {}
        for index, (payload, (expected_height, expected_width)) in enumerate(zip(payloads, sizes)):
            code = held.nvjpegJpegStreamParseHeader(handle, payload.data_ptr(), payload.numel(), header)
            if code == 0:
                code = held.nvjpegJpegStreamGetFrameDimensions(header, ctypes.byref(width), ctypes.byref(height))
            if code == 0:
                code = held.nvjpegDecodeBatchedSupported(handle, header, ctypes.byref(supported))
            if code != 0:
                refused[index] = _status(code)
            elif (height.value, width.value) != (expected_height, expected_width):
                refused[index] = f"frame {height.value}x{width.value}, expected {expected_height}x{expected_width}"
            elif supported.value != 0:
                refused[index] = "not decodable in a batch (e.g. progressive)"
        return refused

    def _decode_batch(self, slot: int, batch: List[int], payloads, sizes, output: torch.Tensor, offsets) -> bool:
        count, base = len(batch), output.data_ptr()
        data = (ctypes.c_void_p * count)(*[payloads[i].data_ptr() for i in batch])
        lengths = (ctypes.c_size_t * count)(*[payloads[i].numel() for i in batch])
        images = (_Image * count)()
        for image, index in zip(images, batch):
            height, width = sizes[index]
            for channel in range(3):
                image.channel[channel] = base + offsets[index] + channel * height * width
                image.pitch[channel] = width
        state = self.states[slot]
        if count != self.batch_sizes[slot]:
            code = self.held.nvjpegDecodeBatchedInitialize(self.handle, state, count, 1, _OUTPUT_RGB)
            if code != 0:
                raise NvjpegUnavailable(f"nvjpegDecodeBatchedInitialize failed: {_status(code)}")
            self.batch_sizes[slot] = count
        code = self.free.nvjpegDecodeBatched(self.handle, state, data, lengths, images, self.stream.cuda_stream)
        if code != 0:
            _logger.debug("nvjpegDecodeBatched failed on %d image(s): %s", count, _status(code))
            self.batch_sizes[slot] = 0  # a failed batch leaves the state to be initialised again
        return code == 0


_DECODERS: Dict[torch.device, NvjpegDecoder] = {}


def nvjpeg_decoder(device: torch.device) -> NvjpegDecoder:
    """One decoder per device for the process (its handle and buffers are kept, as torchvision keeps its own)."""
    if device not in _DECODERS:
        _DECODERS[device] = NvjpegDecoder(device)
    return _DECODERS[device]
