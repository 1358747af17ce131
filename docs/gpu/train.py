"""Device-only driver: train one style task on the carried data with the carried fp16 VGG16 (cast to fp32)."""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
import torch  # noqa: E402

from dynast_cli.models.vgg import vgg16_encoder  # noqa: E402
from dynast_cli.train.style import train_style  # noqa: E402
from dynast_cli.weights.io import load_state, load_weights  # noqa: E402

method, out = sys.argv[1], Path(sys.argv[2])
limit = float(os.environ.get("T", "400"))
device = os.environ.get("DEVICE", "cuda")
batch, size = int(os.environ.get("BATCH", "8")), int(os.environ.get("SIZE", "256"))
torch.set_num_threads(int(os.environ.get("THREADS", "5")))
tensors, _ = load_weights(".devrun/vgg16_fp16.safetensors")
encoder = vgg16_encoder()
needed = encoder.state_dict().keys()
load_state(encoder, {k: v.float() for k, v in tensors.items() if k in needed}, source="vgg16_fp16")
encoder = encoder.eval().to(device)
data = Path(".devrun/data")
content = [data / "content"]
style = [data / "style", data / "kaokore"]
init = Path("weights/decoder_vgg16.safetensors") if method == "decoder" else None
# dynast-decoder: the universal decoder fine-tuned for the default's matching (warped features and texture
# seed, DYNAST_DECODER_MATCHING), exported with that configuration (`dynast train style --method dynast
# --train-decoder`); it starts from the universal decoder
train_decoder = method == "dynast-decoder"
t0 = time.time()
path = train_style(content, style, method="dynast" if train_decoder else method, steps=1_000_000, batch=batch,
                   size=size, lr=None if train_decoder else 1e-4,  # None: the fine-tune's own 1e-5
                   out=out, sample_every=int(os.environ.get("SAMPLE_EVERY", "1000")), seed=0,
                   device=device, encoder=encoder, init_decoder=init, ckpt_every=1000, time_limit_s=limit,
                   amp=False, train_decoder=train_decoder)
print(f"DONE {method} {path} {time.time() - t0:.1f}s", flush=True)
if device.startswith("cuda"):
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
