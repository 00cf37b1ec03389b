"""pretrain.data.gpu.nvjpeg against torchvision's nvjpeg call (the same library, so the same pixels) and PIL:
every image lands in its own part of the packed buffer and nowhere else, bad data is refused image by
image without disturbing the rest of the batch, and decoding stays correct behind a busy stream with
its input memory dropped by the caller. CUDA only."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="nvjpeg decodes on CUDA devices")

PHOTOS = Path(__file__).parents[1] / "docs" / "images"
SENTINEL = 0xA5
GAP = 64  # bytes left between images, which no decode may touch


def encode(image: Image.Image, **options) -> torch.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def jpegs():
    """Real photos in the encodings ImageNet holds: 4:2:0, 4:2:2, 4:4:4, progressive, greyscale, odd sizes."""
    photos = []
    for name in ("china.jpg", "flower.jpg", "rocket.jpg", "astronaut.png", "chelsea.png", "coffee.png"):
        with Image.open(PHOTOS / name) as image:
            photos.append(image.convert("RGB"))
    encoded = []
    for number, image in enumerate(photos):
        encoded.append(encode(image, quality=90))
        encoded.append(encode(image.crop((3, 5, 3 + 333, 5 + 251)), quality=75, subsampling=number % 3))
    encoded.append(encode(photos[0], quality=85, progressive=True))
    encoded.append(encode(photos[4].convert("L"), quality=90))
    return encoded


def sizes_of(payloads):
    return [list(Image.open(io.BytesIO(p.numpy().tobytes())).size[::-1]) for p in payloads]


def packed(sizes, device):
    """A buffer with a sentinel gap after every image, and the images' offsets in it."""
    lengths = [3 * height * width for height, width in sizes]
    offsets = (np.cumsum([0] + [length + GAP for length in lengths])[:-1]).tolist()
    flat = torch.full((offsets[-1] + lengths[-1] + GAP,), SENTINEL, dtype=torch.uint8, device=device)
    return flat, offsets, lengths


def unpack(flat, sizes, offsets, lengths):
    return [flat[offset:offset + length].view(3, *size) for offset, length, size in zip(offsets, lengths, sizes)]


def gaps_untouched(flat, offsets, lengths):
    return all(bool((flat[offset + length:offset + length + GAP] == SENTINEL).all())
               for offset, length in zip(offsets, lengths))


@pytest.fixture(scope="module")
def device():
    return torch.device("cuda")


def test_decodes_as_torchvision_into_its_own_part_of_the_buffer(device):
    """Batches of several sizes in a row (the decoder state is set up again for each size): every
    image equals torchvision's decode bit for bit, and the gaps between images keep their sentinel. The
    progressive JPEG is refused where the hardware engines decode (they take baseline JPEGs only)."""
    from pretrain.data.gpu.nvjpeg import NvjpegDecoder
    decoder = NvjpegDecoder(device)
    payloads = jpegs()
    progressive = len(payloads) - 2
    sizes = sizes_of(payloads)
    expected = decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)
    every = list(range(len(payloads)))
    for order in (every, every[::-1][1:], [progressive, 3], [5], every):
        batch_sizes = [sizes[i] for i in order]
        flat, offsets, lengths = packed(batch_sizes, device)
        refused = decoder.decode([payloads[i] for i in order], batch_sizes, flat, offsets)
        if decoder.hardware and progressive in order:
            assert list(refused.values()) == ["not decodable in a batch (e.g. progressive)"]
            assert order[next(iter(refused))] == progressive
        else:
            assert refused == {}
        torch.cuda.synchronize(device)
        for position, (index, image) in enumerate(zip(order, unpack(flat, batch_sizes, offsets, lengths))):
            if position not in refused:
                assert torch.equal(image, expected[index]), index
        assert gaps_untouched(flat, offsets, lengths)


def test_bad_data_is_refused_image_by_image(device):
    """A corrupt Huffman table, bytes that are no JPEG, and a JPEG whose size the caller has wrong are
    refused with a reason; the others in the batch decode, and the parts of the buffer of images
    refused before decoding are left alone."""
    from pretrain.data.gpu.nvjpeg import NvjpegDecoder
    decoder = NvjpegDecoder(device)
    good = jpegs()[:4]
    corrupt = good[0].clone()
    table = bytes(corrupt.numpy()).index(b"\xff\xc4")
    corrupt[table + 5:table + 40] = 0xFF
    payloads = [good[0], corrupt, torch.frombuffer(bytearray(b"not a JPEG" * 30), dtype=torch.uint8), good[1],
                good[2], good[3]]
    sizes = sizes_of(good[:1]) * 2 + [[10, 10]] + sizes_of(good[1:2]) + [[17, 23]] + sizes_of(good[3:4])
    flat, offsets, lengths = packed(sizes, device)
    refused = decoder.decode(payloads, sizes, flat, offsets)
    assert sorted(refused) == [1, 2, 4] and "expected 17x23" in refused[4]
    torch.cuda.synchronize(device)
    images = unpack(flat, sizes, offsets, lengths)
    expected = decode_jpeg([good[0], good[1], good[3]], mode=ImageReadMode.RGB, device=device)
    for index, reference in zip((0, 3, 5), expected):
        assert torch.equal(images[index], reference)
    for index in (2, 4):
        assert bool((images[index] == SENTINEL).all())
    assert gaps_untouched(flat, offsets, lengths)


def test_decoding_behind_a_busy_stream_stays_correct(device):
    """The caller's stream is kept busy with large matrix products, which the decode must wait for, and
    reads the output right after the call; each batch comes in fresh pinned memory that the caller
    drops right after the call, and the next batch (other images) may land in the same memory: bytes
    freed before the decoder read them, or output read before it was written, show up as wrong pixels."""
    from pretrain.data.gpu.nvjpeg import NvjpegDecoder
    decoder = NvjpegDecoder(device)
    payloads = jpegs()
    del payloads[-2]  # the progressive one
    sizes = sizes_of(payloads)
    expected = decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)
    matrix = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    results = []
    for shift in range(12):
        order = [(i + shift) % len(payloads) for i in range(len(payloads))]
        for _ in range(4):
            matrix = (matrix @ matrix).clamp_(-1, 1)
        batch_sizes = [sizes[i] for i in order]
        flat, offsets, lengths = packed(batch_sizes, device)
        assert decoder.decode([payloads[i].clone().pin_memory() for i in order], batch_sizes, flat, offsets) == {}
        results.append((order, batch_sizes, flat.clone(), offsets, lengths))  # read on the caller's stream at once
    torch.cuda.synchronize(device)
    for order, batch_sizes, flat, offsets, lengths in results:
        for index, image in zip(order, unpack(flat, batch_sizes, offsets, lengths)):
            assert torch.equal(image, expected[index])


def test_refuses_a_host_buffer_for_output():
    from pretrain.data.gpu.nvjpeg import NvjpegDecoder
    decoder = NvjpegDecoder(torch.device("cuda"))
    with pytest.raises(ValueError, match="contiguous uint8 tensor on cuda"):
        decoder.decode(jpegs()[:1], [[1, 1]], torch.zeros(3, dtype=torch.uint8), [0])
