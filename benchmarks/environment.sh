# Sourced by the H200 benchmark scripts: PY is the Python to run (PYTHON, default python3), this
# repository goes on PYTHONPATH, and the GPUs and library versions head the log.
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
"$PY" -c "import torch, torchvision, timm, PIL; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'timm', timm.__version__, 'pillow', PIL.__version__, '|', torch.cuda.device_count(), 'GPUs')"
