"""Every mmseg / mmdet config of the suite loads and builds its model."""
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
SEG_CONFIGS = sorted((ROOT / "configs" / "segmentation").glob("*.py"))
DET_CONFIGS = sorted((ROOT / "configs" / "detection").glob("*.py"))


def count(model):
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("path", SEG_CONFIGS, ids=[p.name for p in SEG_CONFIGS])
def test_segmentation_config_builds(path):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    segmentor = model.module if path.stem.endswith("ms-flip") else model
    assert type(segmentor.backbone).__name__ == "StrictLoadViT"
    assert segmentor.backbone.patch_embed.projection.bias is not None
    assert segmentor.decode_head.num_classes == 59
    if path.stem.endswith("ms-flip"):
        assert type(model).__name__ == "SegTTAModel"
        assert cfg.test_dataloader.dataset.pipeline[1]["type"] == "TestTimeAug"
    else:
        assert cfg.model.data_preprocessor.mean == [123.675, 116.28, 103.53]
        assert cfg.train_dataloader.dataset.type == "PascalContextDataset59"
        assert tuple(cfg.crop_size) == (480, 480)


@pytest.mark.parametrize("path", DET_CONFIGS, ids=[p.name for p in DET_CONFIGS])
def test_detection_config_builds(path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == "StrictLoadPVT"
    assert count(model) == pytest.approx(44.1, abs=0.05)  # paper Table 4: Mask R-CNN PVT-S, 44.1M
    assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=0.0002, weight_decay=0.0001)
    assert cfg.train_cfg.max_epochs == 12
