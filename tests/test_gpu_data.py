"""GPU data path against the CPU path it replaces: same parameters for the same seeds, same pixels as
PIL, the same augmentation statistics from independent streams, corrupt files counted alike, and the
same training run. On a machine without a GPU the device code runs on the CPU (libjpeg decoding, the
plain-torch resampling pass); on a GPU the same tests cover nvjpeg and the Triton pass."""
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from timm.data import create_transform
from timm.utils import random_seed
from torchvision.transforms import functional as TF

from pretrain.config import parse_args
from pretrain.data import choose_pipeline
from pretrain.data.gpu.augment import DeviceAugment
from pretrain.data.gpu.decode import DeviceDecoder, EncodedImageDataset, collate_encoded
from pretrain.data.gpu.kernels import pixel_tables
from pretrain.data.gpu.ops import auto_contrast_lut, equalize_lut, grey_mean
from pretrain.data.gpu.plan import OP_INDEX, OP_NAMES, UnsupportedTransform, plan_from_transform
from pretrain.data.gpu.resample import resample_boxes
from pretrain.main import main
from pretrain.data.transforms import eval_transform

sys.path.insert(0, str(Path(__file__).parent))
from imagefolder import make_image_folder  # noqa: E402

PHOTOS = Path(__file__).parents[1] / "docs" / "images"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DEVICE_OP = {"AutoContrast": "auto_contrast", "Equalize": "equalize", "Invert": "invert", "Rotate": "rotate",
             "PosterizeIncreasing": "posterize", "SolarizeIncreasing": "solarize", "SolarizeAdd": "solarize_add",
             "ColorIncreasing": "color", "ContrastIncreasing": "contrast", "BrightnessIncreasing": "brightness",
             "SharpnessIncreasing": "sharpness", "ShearX": "shear_x", "ShearY": "shear_y",
             "TranslateXRel": "translate_x", "TranslateYRel": "translate_y"}


def deit_transform(size=96, **overrides):
    options = dict(is_training=True, auto_augment="rand-m9-mstd0.5-inc1", color_jitter=0.4, re_prob=0.25,
                   re_mode="pixel", re_count=1, interpolation="bicubic", mean=MEAN, std=STD)
    options.update(overrides)
    return create_transform(size, **options)


def photo(name):
    with Image.open(PHOTOS / name) as image:
        return image.convert("RGB")


def photos():
    """The six real photos, as RGB and one as greyscale, with their JPEG encodings."""
    images = [photo(name) for name in ("china.jpg", "flower.jpg", "rocket.jpg", "astronaut.png", "chelsea.png",
                                       "coffee.png")]
    images.append(images[4].convert("L").convert("RGB"))  # greyscale content
    return images


def run_device(plan, images, params, device):
    """The device path on already decoded images (decoding is tested separately)."""
    pixels = [torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1) for image in images]
    flat = torch.cat([p.reshape(-1) for p in pixels]).to(device)
    sizes = torch.tensor([[image.height, image.width] for image in images])
    return DeviceAugment(plan, torch.device(device))(flat, sizes, torch.as_tensor(np.stack(params))).cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("recipe", ["randaugment", "colour_jitter"])
def test_same_seed_gives_the_cpu_transform_pixels(recipe, device):
    """For the same seeds the device path draws the CPU transform's parameters and, op by op, makes
    PIL's pixels: RandomResizedCrop + flip + RandAugment (or colour jitter) + normalise + erasing
    (constant erasing here, so the erased boxes are compared too; pixel erasing draws noise)."""
    overrides = dict(re_mode="const", re_count=2, re_prob=0.5)
    if recipe == "colour_jitter":
        overrides["auto_augment"] = None
    cpu_transform, plan = deit_transform(**overrides), plan_from_transform(deit_transform(**overrides))
    images = photos()
    count = 45
    expected, params, chosen = [], [], []
    for seed in range(count):
        image = images[seed % len(images)]
        random_seed(seed)
        expected.append(cpu_transform(image))
        random_seed(seed)
        params.append(plan.sample(image))
        chosen += [int(op) for op in params[-1][9:9 + plan.layers] if op >= 0]
    result = run_device(plan, [images[s % len(images)] for s in range(count)], params, device)
    levels = ((result - torch.stack(expected)) * torch.tensor(STD).view(1, 3, 1, 1) * 255).abs()
    assert levels.max() <= 2.5  # in 8-bit levels: the rare +-1 of PIL's float arithmetic, compounded by two ops
    assert (levels > 0.5).double().mean() < 1e-3
    erased = (torch.stack(expected) == 0).all(1)
    assert erased.any() and torch.equal(erased, (result == 0).all(1))
    used = set(chosen)
    wanted = {"brightness", "contrast", "color"} if recipe == "colour_jitter" else set(OP_NAMES)
    assert {OP_NAMES[op] for op in used} >= wanted - {"invert"}  # 45 images x 2 layers: nearly every op drawn


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused layer kernel and the Triton passes run on CUDA")
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_fused_kernels_match_the_torch_ops(interpolation):
    """The CUDA path (Triton resampling, one kernel per RandAugment layer) against the plain-torch ops,
    which the tests above hold to PIL, on 84 real images covering every op."""
    plan = plan_from_transform(deit_transform(re_prob=0.0, interpolation=interpolation))
    images = photos() * 12
    random_seed(0)
    params = torch.as_tensor(np.stack([plan.sample(image) for image in images]))
    drawn = set(params[:, 9:9 + plan.layers].flatten().long().tolist()) - {-1}
    assert drawn == set(range(len(OP_NAMES)))
    pixels = [torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in images]
    flat = torch.cat([p.reshape(-1) for p in pixels]).cuda()
    sizes = torch.tensor([[image.height, image.width] for image in images])
    fused = DeviceAugment(plan, torch.device("cuda"))
    plain = DeviceAugment(plan, torch.device("cuda"))
    plain.use_triton = False
    levels = ((fused(flat, sizes, params) - plain(flat, sizes, params)) * torch.tensor(STD, device="cuda").view(
        1, 3, 1, 1) * 255).abs()
    assert levels.max() <= 1.5 and (levels > 0.5).double().mean() < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pixel-table kernel runs on CUDA")
@pytest.mark.parametrize("size", [56, 224])  # 56: a plane that is not a whole number of the kernel's blocks
def test_pixel_table_kernel_equals_the_torch_tables(size):
    """Autocontrast and equalize tables and contrast means from the one-kernel path, exactly as the torch
    functions (held to PIL above) make them, on photos and on degenerate images: one level everywhere,
    two levels, one constant channel."""
    images = [TF.resize(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), [size, size], antialias=True)
              for image in photos()]
    constant = torch.full((3, size, size), 77, dtype=torch.uint8)
    two_levels = constant.clone()
    two_levels[:, : size // 3] = 200
    one_flat_channel = images[0].clone()
    one_flat_channel[1] = 9
    x = torch.stack(images + [constant, two_levels, one_flat_channel]).cuda()
    cycle = [OP_INDEX["auto_contrast"], OP_INDEX["equalize"], OP_INDEX["contrast"], OP_INDEX["rotate"], -1]
    ops = torch.tensor([cycle[i % len(cycle)] for i in range(len(x) * len(cycle))], device="cuda", dtype=torch.int32)
    x = x.repeat(len(cycle), 1, 1, 1)
    luts = torch.arange(256, dtype=torch.uint8, device="cuda").repeat(len(x), 3, 1)
    means = torch.zeros(len(x), device="cuda")
    pixel_tables(x, ops, luts, means)
    expected_luts = torch.arange(256, dtype=torch.uint8, device="cuda").repeat(len(x), 3, 1)
    expected_means = torch.zeros(len(x), device="cuda")
    for index, op in enumerate(ops.tolist()):
        image = x[index:index + 1].float()
        if op == OP_INDEX["auto_contrast"]:
            expected_luts[index] = auto_contrast_lut(image)[0].to(torch.uint8)
        elif op == OP_INDEX["equalize"]:
            expected_luts[index] = equalize_lut(image)[0].to(torch.uint8)
        elif op == OP_INDEX["contrast"]:
            expected_means[index] = grey_mean(image)[0]
    assert torch.equal(luts, expected_luts)
    assert torch.equal(means, expected_means)
    assert (luts != torch.arange(256, dtype=torch.uint8, device="cuda")).any()  # tables that do something


def record_timm_draws(transform, images, seed):
    """What timm's CPU transform draws per image: crop boxes, RandAugment (op, argument) pairs, and
    erased boxes (constant erasing leaves exact zeros behind)."""
    crop, augment = transform.transforms[0], transform.transforms[2]
    boxes, ops = [], []
    get_params = crop.get_params

    def record_crop(image, scale, ratio):
        box = get_params(image, scale, ratio)
        boxes.append((box, image.size))
        return box

    crop.get_params = record_crop
    for op in augment.ops:
        def recorder(fn, name):
            def call(img, *args, **kwargs):
                ops[-1].append((name, args[0] if args else 0.0))
                return fn(img, *args, **kwargs)
            call.__name__ = fn.__name__
            return call
        op.aug_fn = recorder(op.aug_fn, op.name)
    erased = []
    random_seed(seed)
    for image in images:
        ops.append([])
        out = transform(image)
        erased.append((out == 0).all(0))
    return boxes, ops, erased


def test_augmentation_statistics_match_from_independent_streams():
    """Both paths, each with its own seed: the crop box distribution, how many RandAugment ops apply
    per image, which ops, how often one op is drawn twice, each op's argument distribution and the
    erasing rate and area are the same distributions (two-sample tests)."""
    size, count = 24, 2500
    images = [Image.new("RGB", (48 + 16 * (i % 3), 32 + 8 * (i % 2)), (i % 255, 90, 30)) for i in range(count)]
    cpu = deit_transform(size, re_mode="const")
    boxes, cpu_ops, erased = record_timm_draws(cpu, images, seed=1)
    plan = plan_from_transform(deit_transform(size, re_mode="const"))
    random_seed(2)
    params = np.stack([plan.sample(image) for image in images])
    layers = plan.layers

    def area_aspect(box, height, width):
        _, _, h, w = box
        return h * w / (height * width), np.log(w / h)

    cpu_box = np.array([area_aspect(box, h, w) for box, (w, h) in boxes])
    gpu_box = np.array([area_aspect(p[0:4], image.height, image.width) for p, image in zip(params, images)])
    for column in range(2):
        assert stats.ks_2samp(cpu_box[:, column], gpu_box[:, column]).pvalue > 1e-3

    gpu_ops = [[(OP_NAMES[int(op)], arg) for op, arg in zip(p[9:9 + layers], p[9 + layers:9 + 2 * layers]) if op >= 0]
               for p in params]
    cpu_ops = [[(DEVICE_OP[name], arg * size if name.startswith("Translate") else arg) for name, arg in ops]
               for ops in cpu_ops]  # the device path takes translations in pixels
    counts = [[sum(len(o) == k for o in ops) for k in range(3)] for ops in (cpu_ops, gpu_ops)]
    assert stats.chi2_contingency(counts).pvalue > 1e-3
    same_twice = [np.mean([len(o) == 2 and o[0][0] == o[1][0] for o in ops]) for ops in (cpu_ops, gpu_ops)]
    assert abs(same_twice[0] - same_twice[1]) < 0.02 and same_twice[1] > 0.005  # drawn with replacement
    table = [[sum(name == n for ops in side for n, _ in ops) for name in OP_NAMES] for side in (cpu_ops, gpu_ops)]
    assert min(table[0]) > 0 and stats.chi2_contingency(table).pvalue > 1e-3
    for name in OP_NAMES:
        if name in ("auto_contrast", "equalize", "invert"):
            continue
        cpu_args, gpu_args = ([arg for ops in side for n, arg in ops if n == name] for side in (cpu_ops, gpu_ops))
        assert stats.ks_2samp(cpu_args, gpu_args).pvalue > 1e-3, name

    cpu_erase = np.array([mask.float().mean().item() for mask in erased])
    gpu_erase = params[:, 9 + 2 * layers + 2] * params[:, 9 + 2 * layers + 3] / size ** 2
    assert abs((cpu_erase > 0).mean() - (gpu_erase > 0).mean()) < 0.04
    assert stats.ks_2samp(cpu_erase[cpu_erase > 0], gpu_erase[gpu_erase > 0]).pvalue > 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_resampling_matches_pil(interpolation, device):
    """Random boxes (down- and upscaling) and shorter-side resize + centre crop against PIL."""
    rng = np.random.default_rng(0)
    images = photos()
    regions, grids, expected = [], [], []
    mode = TF.InterpolationMode(interpolation)
    for image in images * 3:
        width, height = image.size
        h, w = int(rng.integers(8, height)), int(rng.integers(8, width))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        regions.append((top, left, h, w))
        grids.append((56, 56, 0, 0))
        expected.append(TF.pil_to_tensor(TF.resized_crop(image, top, left, h, w, [56, 56], mode)))
    plan = plan_from_transform(eval_transform(56, "bilinear", 0.875))
    for image in images:
        expected.append(TF.pil_to_tensor(TF.center_crop(TF.resize(image, 64, mode), 56)))
        regions.append(plan.sample(image)[0:4])
        grids.append(plan.sample(image)[4:8])
    pixels = [torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in images] * 4
    flat = torch.cat([p.reshape(-1) for p in pixels]).to(device)
    sizes = torch.tensor([p.shape[1:] for p in pixels])
    regions, grids = torch.tensor(np.array(regions)), torch.tensor(np.array(grids))
    out = resample_boxes(flat, sizes, regions, grids, 56, interpolation).cpu()
    assert torch.equal(out, torch.stack(expected))
    if device == "cuda":  # the Triton pass against the plain-torch one
        reference = resample_boxes(flat, sizes, regions, grids, 56, interpolation, use_triton=False).cpu()
        assert torch.equal(out, reference)


@pytest.mark.parametrize("device", DEVICES)
def test_eval_plans_match_cpu_eval_transforms(device):
    """timm's eval transform (bicubic, crop_pct 0.875, normalised) and the robustness transform
    (bilinear, [0, 1]) give the CPU path's tensors."""
    from pretrain.data import build_transforms
    config = parse_args(["--input-size", "64", "--eval-crop-pct", "0.875"])
    _, timm_eval = build_transforms(config, torch.nn.Identity())
    images = photos()
    for transform, scale in ((timm_eval, torch.tensor(STD).view(1, 3, 1, 1) * 255), (eval_transform(64, "bilinear", 0.875), 255)):
        plan = plan_from_transform(transform)
        result = run_device(plan, images, [plan.sample(image) for image in images], device)
        expected = torch.stack([transform(image.convert("RGB")) for image in images])
        assert ((result - expected).abs() * scale).max() < 1e-3


def test_pixel_erasing_fills_standard_normal_noise():
    plan = plan_from_transform(deit_transform(re_prob=1.0, auto_augment=None, color_jitter=0.0))
    images = photos()
    random_seed(0)
    params = [plan.sample(image) for image in images]
    result = run_device(plan, images, params, "cpu")
    noise = torch.cat([result[i, :, int(p[-4]):int(p[-4] + p[-2]), int(p[-3]):int(p[-3] + p[-1])].flatten()
                       for i, p in enumerate(params)])
    assert noise.numel() > 1000 and abs(noise.mean()) < 0.1 and abs(noise.std() - 1) < 0.1


def test_erasing_noise_depends_only_on_the_batch():
    """The noise of a batch is the same whatever was augmented before (a resumed run, another process),
    and another batch gets other noise, even where only another image's flip differs."""
    plan = plan_from_transform(deit_transform(re_prob=1.0, auto_augment=None, color_jitter=0.0))
    images = photos()
    random_seed(0)
    first = [plan.sample(image) for image in images]
    second = [params.copy() for params in first]
    second[-1][8] = 1 - second[-1][8]
    pixels = [torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) for image in images]
    flat, sizes = torch.cat([p.reshape(-1) for p in pixels]), torch.tensor([[i.height, i.width] for i in images])
    augment = DeviceAugment(plan, torch.device("cpu"))
    results = [augment(flat, sizes, torch.as_tensor(np.stack(params))) for params in (first, second, first)]
    assert torch.equal(results[0], results[2])
    assert torch.equal(DeviceAugment(plan, torch.device("cpu"))(flat, sizes, torch.as_tensor(np.stack(first))),
                       results[0])
    box = [int(v) for v in first[0][-4:]]
    assert not torch.equal(results[0][0, :, box[0]:box[0] + box[2], box[1]:box[1] + box[3]],
                           results[1][0, :, box[0]:box[0] + box[2], box[1]:box[1] + box[3]])


def test_sequential_draws_keep_every_random_stream_in_step():
    """Without reseeding per image, the CPU transform (whose pixel erasing draws torch's normal noise)
    and the sampler leave Python's, numpy's and torch's generators in the same state."""
    cpu_transform, plan = deit_transform(re_prob=0.5), plan_from_transform(deit_transform(re_prob=0.5))
    images = photos()[:3] * 4
    states = []
    for run in (lambda image: cpu_transform(image), plan.sample):
        random_seed(7)
        for image in images:
            run(image)
        states.append((random.random(), np.random.random(), torch.rand(1).item()))
    assert states[0] == states[1]


def test_auto_pipeline_falls_back_for_recipes_the_gpu_path_lacks(tmp_path, monkeypatch, caplog):
    """On a GPU, --data-pipeline auto trains an AugMix recipe on the CPU path; gpu refuses it."""
    import pretrain.data.loader
    from pretrain import builder
    from pretrain.distributed import DistInfo
    root = make_image_folder(tmp_path / "data", per_class_train=2, per_class_val=1, size=40)
    monkeypatch.setattr(pretrain.data.loader, "gpu_decode_available", lambda device: True)
    for choice in ("auto", "gpu"):
        config = parse_args(["--data-path", str(root), "--num-classes", "4", "--input-size", "32", "--workers", "0",
                             "--auto-augment", "augmix-m5-w4-d2", "--data-pipeline", choice, "--batch-size", "2"])
        model = builder.build_model(config)
        if choice == "auto":
            assert builder.build_data(config, model, DistInfo()).pipeline == "cpu"
            assert "cannot run this recipe" in caplog.text
        else:
            with pytest.raises(UnsupportedTransform, match="AugMix"):
                builder.build_data(config, model, DistInfo())


@pytest.mark.parametrize("pipeline, preset, cuda_started, expected", [
    ("auto", None, False, "32"), ("gpu", None, False, "32"), ("cpu", None, False, None), ("gpu", "4", False, "4"),
    ("gpu", None, True, None)])
def test_hardware_queues_are_asked_for_before_cuda_starts(pipeline, preset, cuda_started, expected, tmp_path,
                                                          monkeypatch, caplog):
    """start_process asks for CUDA's 32 hardware queues for the GPU data path before its first CUDA call
    (init_distributed's), leaves a user's setting alone, and says so when CUDA has started too early."""
    import os
    from pretrain import builder
    from pretrain.distributed import DistInfo
    environment = {key: value for key, value in os.environ.items() if key != "CUDA_DEVICE_MAX_CONNECTIONS"}
    if preset is not None:
        environment["CUDA_DEVICE_MAX_CONNECTIONS"] = preset
    monkeypatch.setattr(os, "environ", environment)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: cuda_started)
    seen = []
    monkeypatch.setattr(builder, "init_distributed",
                        lambda device: seen.append(os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS")) or DistInfo())
    config = parse_args(["--data-path", str(tmp_path), "--data-pipeline", pipeline, "--output-dir", str(tmp_path)])
    builder.start_process(config)
    assert seen == [expected]
    assert ("CUDA started before" in caplog.text) == cuda_started


def test_unsupported_transforms_are_refused():
    from torchvision import transforms
    with pytest.raises(UnsupportedTransform, match="together with colour jitter"):
        plan_from_transform(transforms.Compose([*deit_transform().transforms[:3], transforms.ColorJitter(0.4)]))
    with pytest.raises(UnsupportedTransform, match="random interpolation"):
        plan_from_transform(deit_transform(interpolation="random"))
    with pytest.raises(UnsupportedTransform, match="hue"):
        plan_from_transform(deit_transform(auto_augment=None, color_jitter=(0.4, 0.4, 0.4, 0.1)))
    with pytest.raises(ValueError, match="auto, cpu or gpu"):
        choose_pipeline("fast", torch.device("cpu"))
    assert choose_pipeline("auto", torch.device("cpu")) == "cpu"


def write_test_files(folder: Path):
    """Real photos as baseline JPEG, greyscale JPEG, CMYK JPEG and PNG-named-JPEG, and two bad files."""
    folder.mkdir(parents=True)
    china, coffee = photo("china.jpg"), photo("coffee.png")
    china.save(folder / "a_rgb.JPEG", quality=90)
    coffee.save(folder / "b_progressive.JPEG", quality=85, progressive=True)
    coffee.convert("L").save(folder / "c_grey.JPEG", quality=90)
    china.convert("CMYK").save(folder / "d_cmyk.JPEG", quality=90)
    coffee.save(folder / "e_png_named_jpeg.JPEG", format="PNG")
    good = (folder / "a_rgb.JPEG").read_bytes()
    (folder / "f_truncated.JPEG").write_bytes(good[:len(good) // 3])
    (folder / "g_not_an_image.JPEG").write_bytes(b"not an image at all" * 10)


@pytest.mark.parametrize("device", DEVICES)
def test_unusual_and_corrupt_files(device, tmp_path):
    """Greyscale, progressive, CMYK and PNG files decode as PIL decodes them; the truncated and the
    non-image file are skipped and counted, and their slots hold the next readable file."""
    write_test_files(tmp_path / "set" / "cls")
    transform = eval_transform(64, "bilinear", 1.0)
    plan = plan_from_transform(transform)
    dataset = EncodedImageDataset(str(tmp_path / "set"), plan)
    items = [dataset[i] for i in range(len(dataset))]
    batch = collate_encoded(items)
    assert batch.bad.tolist() == [0, 0, 0, 0, 0, 2, 1]  # f skips f and g, g skips g: both end at a
    # progressive, CMYK and PNG files are decoded by the workers (nvjpeg's batched decoder takes baseline JPEGs)
    assert batch.encoded[:5] == [True, False, True, False, False]
    images, labels, bad = DeviceDecoder(plan, torch.device(device))(batch)
    names = ["a_rgb", "b_progressive", "c_grey", "d_cmyk", "e_png_named_jpeg", "a_rgb", "a_rgb"]
    expected = []
    for name in names:
        with Image.open(tmp_path / "set" / "cls" / f"{name}.JPEG") as image:
            expected.append(transform(image.convert("RGB")))
    levels = (images.cpu() - torch.stack(expected)).abs() * 255
    if device == "cpu":  # libjpeg, as PIL
        assert levels.max() < 1e-3
    else:  # nvjpeg's inverse DCT and chroma upsampling differ from libjpeg's by a level or two
        assert levels.max() <= 3 and levels.mean() < 0.25
    assert bad.sum() == 3 and labels.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_undecodable_payload_in_a_batch_is_replaced_and_counted(device, tmp_path):
    """A payload neither decoder accepts (a corrupt Huffman table, as if it had passed the workers'
    header check): the batch is decoded image by image, the failure is counted, and its slot repeats the
    next image with that image's label."""
    write_test_files(tmp_path / "set" / "cls")
    plan = plan_from_transform(eval_transform(64, "bilinear", 1.0))
    dataset = EncodedImageDataset(str(tmp_path / "set"), plan)
    items = [dataset[0], dataset[1], dataset[2]]
    corrupt = items[0][0].payload.clone()
    table = bytes(corrupt.numpy()).index(b"\xff\xc4")
    corrupt[table + 5:table + 40] = 0xFF
    items[0][0].payload = corrupt
    batch = collate_encoded(items)
    batch.labels = torch.tensor([5, 6, 7])
    images, labels, bad = DeviceDecoder(plan, torch.device(device))(batch)
    assert bad.tolist() == [1, 0, 0] and labels.tolist() == [6, 6, 7]
    assert torch.equal(images[0], images[1])


def test_training_on_the_gpu_path_matches_the_cpu_path(tmp_path):
    """Same run, both pipelines (no random augmentation, so both see the same pixels): equal losses and
    accuracies epoch by epoch, and the corrupt file counted by both."""
    root = make_image_folder(tmp_path / "data", per_class_train=6, per_class_val=3, size=40)
    (root / "train" / "n01440764" / "zz_truncated.JPEG").write_bytes(
        next((root / "train" / "n01440764").glob("*.JPEG")).read_bytes()[:300])
    tiny = ["--model", "vit_tiny_patch16_224", "--model-kwargs", "patch_size=8", "embed_dim=32", "depth=2",
            "num_heads=2", "--input-size", "32", "--mask-patch-size", "16", "--num-classes", "4", "--batch-size", "8",
            "--warmup-epochs", "0", "--lr-base-batch", "0", "--lr", "2e-3", "--no-aug", "--workers", "0",
            "--device", "cpu", "--amp", "none", "--epochs", "2", "--drop-path", "0", "--eval-crop-pct", "0.8",
            "--max-bad-fraction", "0.2", "--data-path", str(root), "--recipe", "mixpro"]
    logs = {}
    for pipeline in ("cpu", "gpu"):
        main(parse_args([*tiny, "--data-pipeline", pipeline, "--output-dir", str(tmp_path / pipeline)]))
        logs[pipeline] = [json.loads(line) for line in (tmp_path / pipeline / "log.jsonl").read_text().splitlines()]
    assert [row["data_pipeline"] for row in logs["cpu"] + logs["gpu"]] == ["cpu", "cpu", "gpu", "gpu"]
    assert [row["bad_images"] for row in logs["gpu"]] == [row["bad_images"] for row in logs["cpu"]] == [1, 2]
    for cpu_row, gpu_row in zip(logs["cpu"], logs["gpu"]):
        for key in ("train_loss", "val_loss", "val_top1"):
            assert gpu_row[key] == pytest.approx(cpu_row[key], rel=1e-4, abs=1e-4), key


def test_grid_script_shows_both_paths(tmp_path):
    """With shared seeds the two halves of the grid are the same pictures (erasing noise aside);
    with independent seeds they differ."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from visualize_augment import main as grid_main
    images = [str(PHOTOS / "china.jpg"), str(PHOTOS / "coffee.png")]
    halves = {}
    for mode in ("same", "independent"):
        out = grid_main(["--images", *images, "--samples", "3", "--size", "48", "--device", "cpu",
                         "--out", str(tmp_path / f"{mode}.png"), *(["--same-seed"] if mode == "same" else [])])
        grid = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)[18:]
        assert grid.shape == (2 * 48, 6 * 48 + 8, 3)
        halves[mode] = np.abs(grid[:, :3 * 48] - grid[:, 3 * 48 + 8:]).mean(axis=(0, 2))
    assert np.median(halves["same"]) < 2 < np.median(halves["independent"])
