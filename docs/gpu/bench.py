"""Device-only: `dynast bench` with the carried fp16 VGG16 cast to fp32 (timings do not depend on the weights' values)."""
import os
import sys

sys.path.insert(0, os.getcwd())
from safetensors.torch import load_file, save_file  # noqa: E402

import dynast_cli.weights.fetch as fetch  # noqa: E402

path = "/tmp/vgg16_fp32.safetensors"
save_file({k: v.float() for k, v in load_file(".devrun/vgg16_fp16.safetensors").items()}, path)
fetch.vgg16_weights_path = lambda explicit=None: path
from dynast_cli.cli import app  # noqa: E402

app(sys.argv[1:])
