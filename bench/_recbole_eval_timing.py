#!/usr/bin/env python
"""Helper for bench/eval_speed.py, run with the RecBole peer venv: time RecBole 1.2.1's full-ranking
``trainer.evaluate`` on the ml-100k validation split (943 users x all items), same config as
shared/peers/recbole_sasrec_peer.py.  The weights are untrained (seeded init): evaluation time
does not depend on their values.  Prints one JSON line: {"valid_eval_s": [...], "metrics": {...}}.
Usage: PEER_VENV/bin/python bench/_recbole_eval_timing.py --reps 7 --out DIR
"""
import argparse
import json
import os
import time

import recbole
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

ap = argparse.ArgumentParser()
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--out", default="recbole-eval")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
os.chdir(args.out)
config = Config(model="SASRec", dataset="ml-100k", config_dict={
    "data_path": os.path.join(os.path.dirname(recbole.__file__), "dataset_example"),
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)",
    "MAX_ITEM_LIST_LENGTH": 50, "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "loss_type": "CE", "train_neg_sample_args": None,
    "train_batch_size": 2048, "eval_batch_size": 4096,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
    "metrics": ["Hit", "NDCG"], "topk": [10, 50], "valid_metric": "NDCG@10",
    "seed": 2020, "reproducibility": True, "device": "cpu", "use_gpu": False, "gpu_id": "",
    "show_progress": False, "checkpoint_dir": "saved", "worker": 0,
})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
torch.autograd.set_detect_anomaly(False)  # sine.py turns it on at import (see the peer doc)
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
trainer.evaluate(valid_data, load_best_model=False, show_progress=False)  # warm-up
times = []
for _ in range(args.reps):
    s = time.perf_counter()
    result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    times.append(time.perf_counter() - s)
print(json.dumps({"valid_eval_s": times, "metrics": {k: float(v) for k, v in result.items()},
                  "torch_threads": torch.get_num_threads(), "valid_users": len(valid_data._dataset)}))
