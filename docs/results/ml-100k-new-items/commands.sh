#!/usr/bin/env bash
# How docs/results/ml-100k-new-items/*.md were made: the inductive split of MovieLens-100k.
# A seeded 20% of the items (270 of 1,349) are new: removed from every training sequence, so from
# the ID table, the related-item lists and the alignment samples, and given no softmax column.
# They stay validation/test targets (206 of 943 test users have a new target item).
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUN=runs/ml-100k-new
.venv/bin/earec run --run-dir $RUN --new-items 0.2 --modalities text
.venv/bin/earec study --run-dir $RUN --seeds 0,1 \
    --row "ID SASRec=ids" --row "SASRec_T=minilm" --row "EARec_T+title=text@anchor"
cp $RUN/results.md $RUN/study/study.md $RUN/study/fig_slices.png docs/results/ml-100k-new-items/
