#!/usr/bin/env bash
# The 32 validation pairs of the README's Quality section: 8 photos x 4 paintings from ../shared/data
# (every 19th content from the 6th, every 12th style from the 4th, in sorted order, skipping the four
# images of style_eval_heldout.md). Not redistributable, so the repository keeps only the numbers.
# Usage: bash docs/bench/eval_style_val.sh OUT_DIR   (from the repository root, ../shared/data present)
set -euo pipefail
out=${1:-eval/val}
data=../shared/data
contents=(adain-style--brad_pitt.jpg deep-photo-styletran--in25.jpg deep-photo-styletran--in47.jpg
          neural-style-transfe--Dawn_Sky.jpg openpose--COCO_val2014_000000000474.jpg
          tiny-coco-val-2017-c--000000053529.jpg tiny-coco-val-2017-c--Blue-Hollywood_sign.jpg
          tiny-coco-val-2017-c--luggage.jpg)
styles=(adain-style--antimonocromatismo.jpg adain-style--the_resevoir_at_poitiers.jpg
        neural-style-tf--water_lilies_crop.jpg neural-style-transfe--starry_night.jpg)
args=()
for c in "${contents[@]}"; do args+=(--content "$data/content/$c"); done
for s in "${styles[@]}"; do args+=(--style "$data/style/$s"); done
# the default (DynaST matching + 10 refinement steps) against the AdaIN baseline, and what each part brings
dynast eval style "${args[@]}" --methods adain,dynast,dynast+refine0,adain+refine10 --out "$out/default"
# the other methods at full strength
dynast eval style "${args[@]}" --out "$out/methods" \
    --methods adaattn,adaattn:none,a2k,dynast:none,dynast:weights/dynast_prune_vgg16.safetensors
