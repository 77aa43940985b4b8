#!/usr/bin/env bash
# How docs/results/ml-100k-transfer/ was made (2-core CPU, after `bash scripts/setup.sh`).
# Source: MovieLens-1M without every movie whose title names a MovieLens-100k movie (1,626 of 3,883
# removed; nothing of the target is memorised). Target: MovieLens-100k, the default run of
# docs/results/ml-100k (its ID SASRec, behaviour alignment and in-domain text alignment are reused).
set -euo pipefail
cd "$(dirname "$0")/../../.."
SRC=runs/ml-1m-src
TGT=runs/ml-100k
# 1. the source dataset, and text aligned on it with the default recipe (400 items x 1 epoch, r=16)
.venv/bin/earec make-source --dataset ml-1m --without ml-100k --out runs/sources/ml-1m-minus-ml-100k
.venv/bin/earec align --modality text --run-dir $SRC --dataset runs/sources/ml-1m-minus-ml-100k
# 2. the target: the default run (ID SASRec, behaviour aligned on the target, in-domain text)
.venv/bin/earec run --run-dir $TGT
# 3. transferred text + the target's own behaviour adapter, λ as chosen in-domain on validation (0.9 / 0.1)
.venv/bin/earec compose --run-dir $TGT --weights text=0.9,behavior=0.1 --adapter text=$SRC/adapters/text --name xfer-TB
# 4. ROUGE-L of the transferred adapter on the target's held-out items
.venv/bin/earec explain --run-dir $TGT --model $SRC/adapters/text --source "text (in-domain)=text" \
    --source "text (before alignment)=base:text"
# 5. rows x recommender seeds 0,1,2, paired t-tests against ID SASRec
.venv/bin/earec study --run-dir $TGT --name transfer --seeds 0,1,2 \
    --row "ID SASRec=ids" --row "EARec_T=text" --row "EARec_T-xfer=$SRC/adapters/text" \
    --row "EARec_TB=text+behavior" --row "EARec_TB-xfer=xfer-TB" --row "EARec_TB-noalign=base:text,behavior"
# the same rows tested against in-domain EARec_TB instead of ID SASRec (cached: only the t-tests run)
.venv/bin/earec study --run-dir $TGT --name transfer-vs-indomain --seeds 0,1,2 --baseline EARec_TB \
    --row "EARec_TB=text+behavior" --row "EARec_TB-xfer=xfer-TB" --row "EARec_TB-noalign=base:text,behavior" \
    --row "EARec_T=text" --row "EARec_T-xfer=$SRC/adapters/text"
OUT=docs/results/ml-100k-transfer
cp $TGT/study-transfer/study.md $TGT/study-transfer/study.json $TGT/study-transfer/fig_slices.png $OUT/
cp $TGT/study-transfer-vs-indomain/study.md $OUT/study_vs_indomain.md
cp $TGT/explain/report.md $OUT/explain.md
cp $SRC/adapters/text/README.md $OUT/model_card_text.md
cp $TGT/compositions/xfer-TB/README.md $OUT/model_card_xfer-TB.md
cp runs/sources/ml-1m-minus-ml-100k/subset.json $OUT/source_subset.json
