"""Does nvjpeg decoding through torchvision get in the way of training? Two measurements on batches
of a JPEG folder:

1. the Python progress of the main thread while another thread decodes (1.0: decoding never holds
   the GIL), for torchvision's ``decode_jpeg`` and for the same op called from TorchScript;
2. large bf16 matrix products on the training stream alone, decoding alone, and both at once
   (overlap: both take about as long as the longer one; serialised: about the sum), with the
   products on the default stream or on a stream of their own.

    PYTHONPATH=. python benchmarks/decode_contention.py --data-path DIR [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import List

import torch
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_jpeg

from pretrain.config import parse_args
from pretrain.data import build_datasets
from pretrain.gpu_data import EncodedImageDataset, collate_encoded
from pretrain.main import build_model


def scripted_decode(data: List[torch.Tensor], mode: int, device: torch.device) -> List[torch.Tensor]:
    return torch.ops.image.decode_jpegs_cuda(data, mode, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = parse_args(["--config", "configs/pretrain/deit_small_mixpro.yaml", "--data-path", args.data_path])
    dataset = EncodedImageDataset.like(build_datasets(config, build_model(config))[0])
    loader = DataLoader(dataset, batch_size=256, num_workers=16, collate_fn=collate_encoded, shuffle=True)
    batches = []
    for batch in loader:
        batches.append(batch.payloads())
        if len(batches) == args.batches:
            break
    script = torch.jit.script(scripted_decode)
    decoders = {"torchvision": lambda data: decode_jpeg(data, mode=ImageReadMode.RGB, device=device),
                "torchscript": lambda data: script(data, ImageReadMode.RGB.value, device)}
    result = {}
    for name, decode in decoders.items():
        decode(batches[0])
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for data in batches[1:]:
            decode(data)
        torch.cuda.synchronize(device)
        alone = time.perf_counter() - start

        def work():
            with torch.cuda.stream(torch.cuda.Stream(device)):
                for data in batches[1:]:
                    decode(data)
                torch.cuda.synchronize(device)

        thread, busy, start = threading.Thread(target=work), 0, time.perf_counter()
        thread.start()
        while thread.is_alive():
            busy += 1
        during = time.perf_counter() - start
        idle, start = 0, time.perf_counter()
        while time.perf_counter() - start < during:
            idle += 1
        result[name] = {"decode_ms_per_batch": 1000 * alone / (len(batches) - 1),
                        "main_thread_python_rate_while_decoding": busy / idle}

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
        for where in ("default_stream", "own_stream"):
            thread = threading.Thread(target=lambda: [decode(data) for data in batches[1:]])
            stream = torch.cuda.Stream(device) if where == "own_stream" else torch.cuda.current_stream(device)
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            thread.start()
            with torch.cuda.stream(stream):
                products(150)
            thread.join()
            torch.cuda.synchronize(device)
            result[f"overlap_{name}_{where}"] = {
                "products_alone_s": products_alone,
                "decode_alone_s": result[name]["decode_ms_per_batch"] * (len(batches) - 1) / 1000,
                "both_s": time.perf_counter() - start}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
