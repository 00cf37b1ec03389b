"""Evaluation sets are mapped by wnid, never by folder order; bad roots are clear errors."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustness.data import (IMAGENET_A_INDICES, IMAGENET_A_WNIDS, IMAGENET_O_WNIDS, IMAGENET_R_INDICES,
                             IMAGENET_R_WNIDS, IMAGENET_WNIDS, custom_label_space, imagenet_a, imagenet_c,
                             imagenet_o, imagenet_o_in_distribution, imagenet_r, imagenet_sketch, imagenet_v2,
                             imagenet_val, ood_set, val_set)

PHOTOS = sorted((Path(__file__).parents[1] / "docs" / "images").glob("*.[pj][np]g"))


def labels_of(dataset) -> torch.Tensor:
    """All labels of a dataset, read from its index (no image is decoded)."""
    reader = dataset.reader
    targets = getattr(reader, "targets", None)
    if targets is None:
        targets = [target for _, target in reader.samples]
    return torch.as_tensor(list(targets))


def jpeg(path: Path, seed: int = 0, size: int = 224) -> Path:
    """A noise JPEG of ``size`` x ``size`` px."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def corruption_tree(root: Path, layout, per_folder: int = 1) -> Path:
    """ImageNet-C's layout: ``layout`` maps corruption -> severity -> wnids."""
    for corruption, severities in layout.items():
        for severity, wnids in severities.items():
            for wnid in wnids:
                for index in range(per_folder):
                    jpeg(root / corruption / str(severity) / wnid / f"ILSVRC2012_val_{index:08d}.JPEG", index)
    return root


def place(root: Path, wnids):
    """Real photos under the given wnid folders, two per folder."""
    for index, wnid in enumerate(wnids):
        folder = root / wnid
        folder.mkdir(parents=True)
        for photo in PHOTOS[2 * index % len(PHOTOS): 2 * index % len(PHOTOS) + 2]:
            shutil.copy(photo, folder / photo.name)
    return root


def test_shipped_lists_are_consistent():
    assert len(IMAGENET_WNIDS) == 1000 and IMAGENET_WNIDS == sorted(IMAGENET_WNIDS)
    assert len(IMAGENET_A_WNIDS) == len(IMAGENET_O_WNIDS) == 200
    assert [IMAGENET_WNIDS[i] for i in IMAGENET_A_INDICES] == IMAGENET_A_WNIDS
    assert len(set(IMAGENET_A_WNIDS) & set(IMAGENET_O_WNIDS)) == 59


def test_imagenet_a_labels_follow_the_200_list_not_folder_order(tmp_path):
    wnids = [IMAGENET_A_WNIDS[150], IMAGENET_A_WNIDS[5]]
    evalset = imagenet_a(place(tmp_path, wnids))
    assert sorted(labels_of(evalset.dataset).tolist()) == [5, 5, 150, 150]
    image, label, bad = evalset.dataset[0]
    assert image.shape == (3, 224, 224) and 0.0 <= image.min() and image.max() <= 1.0 and bad == 0
    assert evalset.logit_indices[label] == IMAGENET_WNIDS.index(IMAGENET_A_WNIDS[label])


def test_val_and_o_sets(tmp_path):
    shared = sorted(set(IMAGENET_O_WNIDS))[:2]
    val = place(tmp_path / "val", [IMAGENET_WNIDS[0], *shared])
    assert sorted(set(labels_of(imagenet_val(val).dataset).tolist())) == sorted(
        [0] + [IMAGENET_WNIDS.index(w) for w in shared])
    inside = imagenet_o_in_distribution(val)
    assert len(inside.dataset) == 4  # only the folders of ImageNet-O's classes
    ood = imagenet_o(place(tmp_path / "o", shared))
    assert ood.is_ood and not inside.is_ood
    assert torch.equal(labels_of(ood.dataset).sort().values,
                       torch.tensor(sorted(IMAGENET_O_WNIDS.index(w) for w in shared for _ in range(2))))


def test_unknown_folder_and_missing_root_are_named(tmp_path):
    root = place(tmp_path / "a", [IMAGENET_A_WNIDS[0]])
    (root / "n99999999").mkdir()
    with pytest.raises(ValueError, match="not ImageNet-A classes: \\['n99999999'\\]"):
        imagenet_a(root)
    with pytest.raises(FileNotFoundError, match="ImageNet-O root .*nowhere.* does not exist"):
        imagenet_o(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no class folders"):
        imagenet_val(tmp_path / "empty")


def test_own_label_space_follows_the_class_list(tmp_path):
    space = custom_label_space(["seven", "three"])
    val = val_set(place(tmp_path / "val", ["three", "seven"]), space)
    labels = labels_of(val.dataset)
    files = [Path(val.dataset.filename(i)).parent.name for i in range(len(val.dataset))]
    assert [{"seven": 0, "three": 1}[name] for name in files] == labels.tolist()
    ood = ood_set(place(tmp_path / "ood", ["x", "y"]), space)
    assert ood.is_ood and len(ood.dataset) == 4
    with pytest.raises(ValueError, match="not val classes: \\['eight'\\]"):
        val_set(place(tmp_path / "bad", ["eight"]), space)
    with pytest.raises(ValueError, match="distinct names"):
        custom_label_space(["a", "a"])


def test_imagenet_r_labels_and_columns(tmp_path):
    evalset = imagenet_r(place(tmp_path, [IMAGENET_R_WNIDS[120], IMAGENET_R_WNIDS[3]]))
    assert sorted(labels_of(evalset.dataset).tolist()) == [3, 3, 120, 120]
    assert evalset.logit_indices == IMAGENET_R_INDICES
    assert [IMAGENET_WNIDS[i] for i in evalset.logit_indices] == IMAGENET_R_WNIDS
    not_r = next(w for w in IMAGENET_WNIDS if w not in IMAGENET_R_WNIDS)
    with pytest.raises(ValueError, match=f"not ImageNet-R classes: \\['{not_r}'\\]"):
        imagenet_r(place(tmp_path / "bad", [IMAGENET_R_WNIDS[0], not_r]))


def test_imagenet_sketch_uses_all_1000_classes(tmp_path):
    evalset = imagenet_sketch(place(tmp_path, [IMAGENET_WNIDS[999], IMAGENET_WNIDS[0]]))
    assert sorted(labels_of(evalset.dataset).tolist()) == [0, 0, 999, 999] and evalset.logit_indices is None
    with pytest.raises(ValueError, match="not ImageNet-Sketch classes: \\['sketches'\\]"):
        imagenet_sketch(place(tmp_path / "bad", ["sketches"]))


def test_imagenet_v2_folders_are_class_indices(tmp_path):
    evalset = imagenet_v2(place(tmp_path / "v2", ["999", "3", "10"]))
    files = [Path(evalset.dataset.filename(i)).parent.name for i in range(len(evalset.dataset))]
    assert labels_of(evalset.dataset).tolist() == [int(name) for name in files]
    assert sorted(set(files)) == ["10", "3", "999"]  # "10" sorts before "3": labels must not follow folder order
    for bad in (IMAGENET_WNIDS[0], "1000"):
        with pytest.raises(ValueError, match=f"not ImageNet-V2 classes: \\['{bad}'\\].*class indices 0-999"):
            imagenet_v2(place(tmp_path / f"bad_{bad}", ["0", bad]))


def test_imagenet_c_layout_groups_and_labels(tmp_path):
    wnid_a, wnid_b = IMAGENET_WNIDS[5], IMAGENET_WNIDS[700]
    root = corruption_tree(tmp_path / "c", {"saturate": {5: [wnid_a]}, "gaussian_noise": {3: [wnid_b], 1: [wnid_a, wnid_b]}},
                           per_folder=2)
    corrupted = imagenet_c(root)
    # The 15 first in the benchmark's order, the extras after; severities ascending.
    assert corrupted.groups == [("gaussian_noise", 1), ("gaussian_noise", 3), ("saturate", 5)]
    expected = []
    for index in range(len(corrupted.dataset)):
        corruption, severity, wnid = Path(corrupted.dataset.filename(index)).parts[-4:-1]
        expected.append(corrupted.groups.index((corruption, int(severity))) * 1000 + IMAGENET_WNIDS.index(wnid))
    labels = []
    for index in range(len(corrupted.dataset)):
        file, label = corrupted.dataset.reader[index]
        file.close()
        labels.append(label)
    assert labels == expected and len(expected) == 8
    image, label, bad = corrupted.dataset[0]
    assert image.shape == (3, 224, 224) and bad == 0
    # No resize: the tensor is the decoded JPEG itself.
    decoded = torch.from_numpy(np.array(Image.open(corrupted.dataset.filename(0)).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal((image * 255).round().to(torch.uint8), decoded)


def test_imagenet_c_wrong_folders_are_named(tmp_path):
    wnid = IMAGENET_WNIDS[0]
    cases = {"noise": ({"noise": {1: [wnid]}}, "not ImageNet-C corruptions: \\['noise'\\].*side by side"),
             "severity": ({"fog": {6: [wnid]}}, "fog.* has folders that are not ImageNet-C severities: \\['6'\\]"),
             "class": ({"fog": {2: ["n99999999"]}}, "fog/2.* has folders that are not ImageNet-C classes: "
                                                    "\\['n99999999'\\]")}
    for name, (layout, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            imagenet_c(corruption_tree(tmp_path / name, layout))
    small = tmp_path / "small"
    jpeg(small / "fog" / "1" / wnid / "a.JPEG", size=64)
    with pytest.raises(ValueError, match="a.JPEG is 64x64: ImageNet-C's images are 224x224"):
        imagenet_c(small)
    (tmp_path / "empty" / "fog" / "1" / wnid).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="fog/1' holds no images"):
        imagenet_c(tmp_path / "empty")
