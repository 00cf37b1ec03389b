"""How long nvjpeg's batched decode (pretrain.data.gpu.nvjpeg) takes alone and behind a queue of training-sized
work on the default stream, as in training: the decode runs on a data stream, the queue is ``--matmuls``
bf16 matrix products launched just before it. CUDA reads CUDA_DEVICE_MAX_CONNECTIONS (its number of
hardware work queues, 8 unless set) when the driver starts, so compare values in separate processes:

    for queues in 8 32; do
        CUDA_DEVICE_MAX_CONNECTIONS=$queues PYTHONPATH=. python benchmarks/decode_behind_queue.py --out q$queues.json
    done
    PYTHONPATH=. python benchmarks/decode_behind_queue.py --reserve --out reserved.json   # as tools/train.py asks
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from pretrain.data import reserve_hardware_queues
from pretrain.data.gpu.nvjpeg import NvjpegDecoder

PHOTOS = Path(__file__).resolve().parent.parent / "docs" / "images"


def jpeg_batch(count: int, width: int, height: int):
    """``count`` baseline JPEGs of the test photos at ImageNet's typical size, in pinned host memory."""
    photos = [Image.open(path).convert("RGB").resize((width, height)) for path in sorted(PHOTOS.iterdir())
              if path.suffix in (".jpg", ".png")]
    payloads = []
    for index in range(count):
        encoded = io.BytesIO()
        photos[index % len(photos)].save(encoded, format="JPEG", quality=90)
        payloads.append(torch.frombuffer(bytearray(encoded.getvalue()), dtype=torch.uint8).pin_memory())
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--matmuls", type=int, default=40, help="8192x8192 bf16 products queued before the decode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reserve", action="store_true",
                        help="ask for the queues in this process, as the GPU data path does, before CUDA starts")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.reserve:
        reserve_hardware_queues("gpu")
    device = torch.device("cuda", torch.cuda.current_device())
    payloads = jpeg_batch(args.images, args.width, args.height)
    sizes = [[args.height, args.width]] * args.images
    length = 3 * args.height * args.width
    offsets = [index * length for index in range(args.images)]
    output = torch.empty(args.images * length, dtype=torch.uint8, device=device)
    decoder = NvjpegDecoder(device)
    data_stream = torch.cuda.Stream(device)
    matrix = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)

    def queue_work() -> None:  # on the default stream, where the training step runs
        for _ in range(args.matmuls):
            matrix @ matrix

    def decode() -> float:
        with torch.cuda.stream(data_stream):
            start = time.perf_counter()
            refused = decoder.decode(payloads, sizes, output, offsets)
            data_stream.synchronize()
            if refused:
                raise RuntimeError(f"nvjpeg refused test images: {refused}")
            return 1000 * (time.perf_counter() - start)

    for _ in range(3):
        decode()
        queue_work()
    torch.cuda.synchronize()
    alone, behind, queue_alone, queue_left = [], [], [], 0
    for _ in range(args.repeats):
        alone.append(decode())
        torch.cuda.synchronize()
        start = time.perf_counter()
        queue_work()
        torch.cuda.synchronize()
        queue_alone.append(1000 * (time.perf_counter() - start))
        queue_work()
        behind.append(decode())
        queue_left += not torch.cuda.default_stream(device).query()
        torch.cuda.synchronize()
    result = {"hardware_queues": os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS", "8 (CUDA's default)"),
              "decoder": "hardware engines" if decoder.hardware else "hybrid", "images": args.images,
              "size": [args.width, args.height], "matmuls": args.matmuls,
              "decode_alone_ms": statistics.median(alone), "queue_alone_ms": statistics.median(queue_alone),
              "decode_behind_queue_ms": statistics.median(behind),
              "queue_still_running_after_decode": f"{queue_left}/{args.repeats}",
              "device": torch.cuda.get_device_name(device), "torch": torch.__version__}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
