#!/usr/bin/env bash
# How docs/results/ml-100k/{results,study}.md were made (2-core CPU, after `bash scripts/setup.sh`).
# Settings are the defaults: SmolLM2-135M-Instruct, MovieLens-100k 5-core, 400 alignment items x 1 epoch
# per modality, λ chosen on validation NDCG@10, SASRec on PCA-whitened frozen embeddings (cosine / 0.07).
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUN=runs/ml-100k
.venv/bin/earec run --run-dir $RUN
# Recommender seeds 0,1,2 for every row (the aligned model and its embeddings are the run's, seed 0).
# Two processes with one thread each share the 2 cores; the second call only reads cached results.
OMP_NUM_THREADS=1 .venv/bin/earec study --run-dir $RUN --seeds 0,1,2 \
    --row "ID SASRec=ids" --row "SASRec_T=minilm" --row "EARec_T+title=text@anchor" &
OMP_NUM_THREADS=1 .venv/bin/earec study --run-dir $RUN --seeds 0,1,2 \
    --row "EARec_T=text" --row "EARec_TB=text+behavior" \
    --row "EARec_TB-trans=text+behavior;transductive=true" &
wait
.venv/bin/earec study --run-dir $RUN --seeds 0,1,2 \
    --row "ID SASRec=ids" --row "SASRec_T=minilm" --row "EARec_T=text" --row "EARec_T+title=text@anchor" \
    --row "EARec_TB=text+behavior" --row "EARec_TB-trans=text+behavior;transductive=true"
cp $RUN/results.md $RUN/search/sweep.md $RUN/study/study.md $RUN/study/fig_slices.png docs/results/ml-100k/
# EARec_T against SASRec_T (like for like: both read the title) -- paired tests against SASRec_T, from cached rows
.venv/bin/earec study --run-dir $RUN --seeds 0,1,2 --row "SASRec_T=minilm" --row "EARec_T=text" \
    --row "EARec_T+title=text@anchor" --baseline SASRec_T --name vs-sasrec-t
cp $RUN/study-vs-sasrec-t/study.md docs/results/ml-100k/vs-sasrec-t/
# λ re-chosen with the title in the stage-2 prompt (seed 0, validation only): the run's three λ candidates @anchor
.venv/bin/earec study --run-dir $RUN --name lambda-title --seeds 0 --row "ID SASRec=ids" \
    --row "EARec_TB+title λ.5=grid-t0.5-b0.5@anchor" --row "EARec_TB+title λt.9=grid-t0.9-b0.1@anchor" \
    --row "EARec_TB+title λb.9=grid-t0.1-b0.9@anchor"
cp $RUN/study-lambda-title/study.md docs/results/ml-100k/lambda-title/
