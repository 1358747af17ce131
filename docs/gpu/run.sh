#!/usr/bin/env bash
# usage: bash .devrun/run.sh   (T seconds of training per task; tasks run side by side)
set -u
export PYTHONUNBUFFERED=1
R=/tmp/runs; rm -rf $R; mkdir -p $R
python3 -c "import torch, sys; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), sys.version.split()[0])"
for m in ${METHODS:-decoder adaattn a2k}; do
  python3 .devrun/train.py $m $R/$m > $R/$m.log 2>&1 &
done
sleep 60; for f in $R/*.log; do echo "== $f"; tail -n 2 $f; done
wait
for f in $R/*.log; do echo "== $f"; grep -v "^step" $f | tail -n 8; grep "^step" $f | tail -n 2; done
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
python3 .devrun/pack.py $R
