"""Evaluation sets are mapped by wnid, never by folder order; bad roots are clear errors."""
import shutil
from pathlib import Path

import pytest
import torch

from robustness.data import (IMAGENET_A_INDICES, IMAGENET_A_WNIDS, IMAGENET_O_WNIDS, IMAGENET_WNIDS,
                             custom_label_space, imagenet_a, imagenet_o, imagenet_o_in_distribution, imagenet_val,
                             ood_set, val_set)

PHOTOS = sorted((Path(__file__).parents[1] / "docs" / "images").glob("*.[pj][np]g"))


def labels_of(dataset) -> torch.Tensor:
    """All labels of a dataset, read from its index (no image is decoded)."""
    reader = dataset.reader
    targets = getattr(reader, "targets", None)
    if targets is None:
        targets = [target for _, target in reader.samples]
    return torch.as_tensor(list(targets))


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
