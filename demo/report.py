"""OUT/report.md of the demo: every stage's numbers side by side for baseline / TransMix / MixPro,
with the pictures (paths relative to OUT, so the folder is self-contained)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

RECIPE_TITLES = {"baseline": "baseline", "transmix": "TransMix", "mixpro": "MixPro"}
MODEL_TITLES = {"deit": "DeiT-tiny (32 px, 8-px patches)", "pvt": "PVT-tiny (64 px)"}

SCALE_NOTE = ("**Demonstration scale, not the paper's setting.** Tiny models trained for minutes on a CPU on "
              "scikit-learn's 1,797 handwritten 8x8 digits, transferred to digit canvases: the numbers show "
              "that every stage runs end to end on real data and how to read the outputs. They neither "
              "reproduce nor rank the paper's ImageNet / Pascal Context / COCO results, and differences of a "
              "few points between recipes here are within seed noise.")


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(row) + " |"
                                                                            for row in rows]


def _recipes() -> List[str]:
    return [RECIPE_TITLES[recipe] for recipe in RECIPE_TITLES]


STUDY_TITLES = {"digits_table6": "Table 6 (the contribution of MaskMix and PAL)",
                "digits_table10": "Table 10 (the progressive factor alpha)"}


def _interval(estimate: Dict, signed: bool = False) -> str:
    if estimate["mean"] is None:
        return "-"
    sign = "+" if signed else ""
    if estimate["low"] is None:
        return f"{estimate['mean']:{sign}.1f}"
    return f"{estimate['mean']:{sign}.1f} [{estimate['low']:{sign}.1f}, {estimate['high']:{sign}.1f}]"


def _studies(studies: Dict) -> List[str]:
    """Section 5: each digit study's settings with the mean top-1, its 95 % interval over the seeds and
    the paired difference to the reference setting."""
    lines = ["", "## 5. Studies over seeds: DeiT-tiny on the digits, held-out top-1 (%)", "",
             "Mean over the seeds with its 95 % t-interval, and each setting's difference to the reference "
             "setting paired by seed (same seeds, same data order); a difference whose interval contains 0 is "
             "inside the seed noise. Every run's curve and log: `studies/` (each study's `study.md`).", ""]
    for name, summary in studies.items():
        lines += [f"### {STUDY_TITLES.get(name, name)}, {len(summary['seeds'])} seeds", ""]
        rows = []
        for setting in summary["settings"]:
            final = setting["final_top1"]
            difference = setting.get("final_top1_difference")
            if difference is None:
                versus, verdict = "(reference)", ""
            else:
                versus = _interval(difference, signed=True)
                verdict = ("-" if difference["excludes_zero"] is None else
                           "beyond the noise" if difference["excludes_zero"] else "inside the noise")
            rows.append([setting["name"], str(final["n"]), _interval(final), _interval(setting["best_top1"]), versus,
                         verdict])
        lines += _table(["setting", "seeds", "final top-1", "best top-1", f"final - {summary['reference']}", ""],
                        rows)
        lines += [""]
    return lines


def write(out: Path, results: Dict) -> Path:
    out = Path(out)
    pretrained, seg, det = results["pretraining"], results["segmentation"], results["detection"]
    robust = results["robustness"]
    images = results["images"]
    lines = ["# MixPro suite demo: pretraining -> transfer -> robustness", "", SCALE_NOTE, "",
             f"- scale: {results['scale']}, seed {results['seed']}, {results.get('device', 'cpu')}, "
             f"{results['total_s'] / 60:.1f} min in all "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in results['timings_s'].items())})",
             f"- digits: {images['train']} train / {images['val']} held-out images of the 8 pretraining classes "
             f"(0-7), {images['rotated']} rotated held-out images, {images['ood']} images of the unseen classes 8 "
             f"and 9; canvases: {results['canvases'][0]} train / {results['canvases'][1]} val",
             "- every command that ran: `commands.sh`; logs: `logs/`; all numbers: `results.json`", ""]

    lines += ["## 1. Pretraining: top-1 (%) on the held-out digits", ""]
    rows = []
    for model, title in MODEL_TITLES.items():
        first = pretrained[f"{model}_baseline"]
        rows.append([title, f"{first['parameters'] / 1e6:.2f}M", str(first["epochs"])]
                    + [_fmt(pretrained[f"{model}_{recipe}"]["val_top1"]) for recipe in RECIPE_TITLES])
    lines += _table(["model", "parameters", "epochs"] + _recipes(), rows)
    lines += ["", "Training curves (loss, held-out top-1, and the progressive factor alpha of MixPro's MaskMix "
              "batches, the paper's Fig. 2):", ""]
    for model in MODEL_TITLES:
        lines += [f"![{model} loss](pictures/{model}/loss.png) ![{model} top-1](pictures/{model}/top1.png) "
                  f"![{model} alpha](pictures/{model}/alpha.png)"]
    lines += ["", "MaskMix and CutMix on held-out digits, and the MixPro model's class attention on the MaskMix "
              "images (the paper's Fig. 1, 4 and 6):", ""]
    lines += [f"![mixing {model}](pictures/mixing_{model}.png)" for model in MODEL_TITLES]

    lines += ["", "## 2. Segmentation: mIoU (%) on the val canvases, DeiT-tiny backbone", "",
              "Pascal Context layout, 10 digit classes, background ignored as in Pascal Context 59; the real "
              "Linear and Segmenter configs of configs/segmentation at demo scale (`configs/demo/linear_deit-tiny_digits.py`, "
              "`configs/demo/segmenter_deit-tiny_mask_digits.py`; the exact commands are in `commands.sh`).", ""]
    rows = [[decoder.capitalize(), str(seg[f"{decoder}_baseline"]["iters"])]
            + [_fmt(seg[f"{decoder}_{recipe}"]["mIoU"]) for recipe in RECIPE_TITLES]
            for decoder in ("linear", "segmenter")]
    lines += _table(["decoder", "iterations"] + _recipes(), rows)

    lines += ["", "## 3. Detection: Mask R-CNN + FPN with the PVT-tiny backbone, COCO AP (%) on the val canvases", "",
              "The real config of configs/detection at demo scale (`configs/demo/mask-rcnn_pvt-tiny_fpn_digits.py`; the "
              "exact commands are in `commands.sh`).", ""]
    rows = [[title] + [_fmt(100.0 * det[recipe][key]) for recipe in RECIPE_TITLES]
            for key, title in (("bbox_mAP", "box AP"), ("bbox_mAP_50", "box AP50"), ("segm_mAP", "mask AP"),
                               ("segm_mAP_50", "mask AP50"))]
    lines += _table([f"metric ({det['baseline']['epochs']} epochs)"] + _recipes(), rows)

    lines += ["", "## 4. Robustness (the report CLI; full tables in `robustness/report.md`)", "",
              "Shifted set: the held-out digits rotated by 25-50 degrees; OOD: the digits 8 and 9, never seen in "
              "pretraining, against the held-out digits (positive class: OOD). The report CLI evaluates each "
              "model with its own validation transform (`--eval-transform checkpoint`), so its held-out top-1 "
              "is the last epoch's validation top-1 of pretraining.", ""]
    rows = []
    for name, bench in robust["models"].items():
        val, shifted, ood = bench.get("val", {}), bench.get("shifted", {}), bench.get("ood", {})
        rows.append([name, _fmt(val.get("top1")), _fmt(shifted.get("top1")), _fmt(shifted.get("calibration_error")),
                     _fmt(shifted.get("aurra")), _fmt(ood.get("aupr"))])
    lines += _table(["model", "held-out top-1", "rotated top-1", "rotated calib. error (lower better)",
                     "rotated AURRA", "OOD AUPR"], rows)
    lines += ["", "Occlusion: 4-px patches dropped at random; or the cells of each model's class attention (8 px "
              "for the DeiT, 32 px for the PVT) dropped most salient first, or all but the most salient.", ""]
    lines += [f"![occlusion {mode}](robustness/occlusion_{mode}.png)" for mode in ("random", "salient", "non_salient")]
    lines += ["", "![reliability](robustness/reliability_shifted.png)", ""]
    if results.get("studies"):
        lines += _studies(results["studies"])
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
