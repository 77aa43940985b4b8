#!/usr/bin/env bash
# How docs/results/ml-100k-sparse/*.md were made: MovieLens-100k with only a seeded 25% / 10% of the
# users keeping a training sequence (`--train-users`); every one of the 943 users is still evaluated
# (validation and test histories are whole), on a model trained on that fraction (2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/../../.."
for f in 0.25 0.1; do
  RUN=runs/ml-100k-sparse$f
  .venv/bin/earec run --run-dir $RUN --train-users $f --modalities text
  .venv/bin/earec study --run-dir $RUN --seeds 0,1,2 --row "ID SASRec=ids" --row "SASRec_T=minilm" \
      --row "EARec_T=text" --row "EARec_T+title=text@anchor"
  mkdir -p docs/results/ml-100k-sparse/$f
  cp $RUN/results.md $RUN/study/study.md $RUN/study/fig_slices.png docs/results/ml-100k-sparse/$f/
done
