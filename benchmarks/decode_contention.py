"""Which batched JPEG decoder gets least in the way of training? On batches of a JPEG folder, for
torchvision's nvjpeg call (from Python and from TorchScript) and, with ``--decoders``, for
nvImageCodec's backends where it is installed (``nvimgcodec_hw``: the hardware JPEG engines;
``nvimgcodec_cuda``; ``nvimgcodec_hybrid``; ``nvimgcodec_hw_then_cuda``; all with libjpeg's fancy
chroma upsampling):

1. decode time per batch, and pixels against PIL's decode (what the CPU path trains on);
2. the Python progress of the main thread while another thread decodes (1.0: decoding never holds
   the GIL);
3. large bf16 matrix products on the training stream alone, decoding alone, and both at once
   (overlap: both take about as long as the longer one; serialised: about the sum).

    PYTHONPATH=. python benchmarks/decode_contention.py --data-path DIR [--decoders torchvision,nvimgcodec_hw]
        [--out FILE.json]

Run each nvImageCodec backend in a process of its own under a time limit: on the H200 machine used
here (a gVisor sandbox) its CUDA backend could not be created and its hybrid and hardware decoders
never returned.
"""
from __future__ import annotations

import argparse
import io
import json
import threading
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_jpeg

from pretrain.config import parse_args
from pretrain.data.gpu.decode import EncodedImageDataset, collate_encoded
from pretrain.builder import build_datasets, build_model, open_datasets

def scripted_decode(data: List[torch.Tensor], mode: int, device: torch.device) -> List[torch.Tensor]:
    return torch.ops.image.decode_jpegs_cuda(data, mode, device)


NVIMGCODEC_BACKENDS = {"nvimgcodec_hw": ("HW_GPU_ONLY",), "nvimgcodec_cuda": ("GPU_ONLY",),
                       "nvimgcodec_hybrid": ("HYBRID_CPU_GPU",), "nvimgcodec_hw_then_cuda": ("HW_GPU_ONLY", "GPU_ONLY")}


def nvimgcodec_decoder(name: str, device: torch.device) -> Callable[[List[torch.Tensor]], List[torch.Tensor]]:
    from nvidia import nvimgcodec

    backends = [nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind)) for kind in NVIMGCODEC_BACKENDS[name]]
    decoder = nvimgcodec.Decoder(device_id=device.index or 0, backends=backends, options=":fancy_upsampling=1")
    params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB,
                                     sample_format=nvimgcodec.SampleFormat.P_RGB)

    def decode(data):
        streams = [nvimgcodec.CodeStream(part.numpy()) for part in data]
        images = decoder.decode(streams, params=params, cuda_stream=torch.cuda.current_stream(device).cuda_stream)
        return [None if image is None else torch.as_tensor(image, device=device) for image in images]

    return decode


def measure(decode, batches, references, device: torch.device) -> dict:
    first = decode(batches[0])
    differences = [np.abs(image.permute(1, 2, 0).cpu().numpy().astype(int) - reference)
                   for image, reference in zip(first, references) if image is not None]
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for data in batches[1:]:
        decode(data)
    torch.cuda.synchronize(device)
    alone = time.perf_counter() - start
    failures = []

    def work():
        try:
            with torch.cuda.stream(torch.cuda.Stream(device)):
                for data in batches[1:]:
                    decode(data)
                torch.cuda.synchronize(device)
        except Exception as error:
            failures.append(error)

    thread, busy, start = threading.Thread(target=work), 0, time.perf_counter()
    thread.start()
    while thread.is_alive():
        busy += 1
    during = time.perf_counter() - start
    if failures:
        raise failures[0]
    idle, start = 0, time.perf_counter()
    while time.perf_counter() - start < during:
        idle += 1
    return {"decode_ms_per_batch": 1000 * alone / (len(batches) - 1),
            "main_thread_python_rate_while_decoding": busy / idle,
            "undecoded_of_first_batch": sum(image is None for image in first),
            # over the decoded images of the first batch; "values": each channel of each pixel
            "max_abs_difference_to_pil": int(max(d.max() for d in differences)) if differences else None,
            "mean_abs_difference_to_pil": float(np.mean([d.mean() for d in differences])) if differences else None,
            "fraction_of_values_off_by_more_than_2": (float(np.mean([(d > 2).mean() for d in differences]))
                                                      if differences else None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--decoders", default="torchvision,torchscript",
                        help="comma-separated: torchvision, torchscript (the same op called from TorchScript), "
                             + ", ".join(NVIMGCODEC_BACKENDS))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    names = args.decoders.split(",")
    unknown = [name for name in names if name not in ("torchvision", "torchscript", *NVIMGCODEC_BACKENDS)]
    if unknown:
        parser.error(f"unknown decoder(s) {unknown}")
    device = torch.device("cuda")
    config = parse_args(["--config", "configs/pretrain/deit_small_mixpro.yaml", "--data-path", args.data_path])
    datasets = open_datasets(config)  # first: it counts the classes the model needs
    dataset = EncodedImageDataset.from_dataset(build_datasets(config, build_model(config), datasets)[0])
    loader = DataLoader(dataset, batch_size=256, num_workers=16, collate_fn=collate_encoded, shuffle=True)
    batches = []
    for batch in loader:  # JPEG payloads only (the workers decode PNG and CMYK files themselves)
        batches.append([payload for payload, encoded in zip(batch.payloads(), batch.encoded) if encoded])
        if len(batches) == args.batches:
            break
    references = [np.asarray(Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB")) for data in batches[0]]
    decoders, result = {}, {}
    for name in names:
        try:
            if name == "torchvision":
                decoders[name] = lambda data: decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            elif name == "torchscript":
                script = torch.jit.script(scripted_decode)
                decoders[name] = lambda data, script=script: script(data, ImageReadMode.RGB.value, device)
            else:
                decoders[name] = nvimgcodec_decoder(name, device)
        except Exception as error:  # e.g. nvImageCodec missing, or a backend this GPU or driver lacks
            result[name] = {"error": f"{type(error).__name__}: {error}"}
    for name, decode in decoders.items():
        print("decoding with", name, flush=True)
        try:
            result[name] = measure(decode, batches, references, device)
        except Exception as error:
            result[name] = {"error": f"{type(error).__name__}: {error}"}
        print(name, json.dumps(result[name]), flush=True)

    matrix = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)

    def products(count):
        for _ in range(count):
            matrix @ matrix

    products(5)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    products(150)
    torch.cuda.synchronize(device)
    products_alone = time.perf_counter() - start
    for name, decode in decoders.items():
        if "error" in result[name]:
            continue

        def work():
            with torch.cuda.stream(torch.cuda.Stream(device)):
                for data in batches[1:]:
                    decode(data)
                torch.cuda.synchronize(device)

        thread = threading.Thread(target=work)
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        thread.start()
        products(150)
        thread.join()
        torch.cuda.synchronize(device)
        result[name]["overlap"] = {"products_alone_s": products_alone,
                                   "decode_alone_s": result[name]["decode_ms_per_batch"] * (len(batches) - 1) / 1000,
                                   "both_s": time.perf_counter() - start}
        print(name, json.dumps(result[name]["overlap"]), flush=True)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
