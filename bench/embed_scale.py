"""Memory of item-embedding extraction as the catalog grows: 10k, 100k and 1M items.

`earec embed` streams shards of ``--shard-size`` items to disk, so the memory the *embedding
stage* adds on top of the loaded dataset should not grow with the catalog.  For each size this
script writes a synthetic RecBole dataset (titled items with a year and genres; users of 3
consecutive items so every item survives), builds a tiny Llama (SmolLM2's tokenizer, hidden 32,
1 layer) and runs the real ``earec_core.embed.embed`` on ``base:text`` in a fresh subprocess,
sampling its resident set size (``/proc/self/status`` VmRSS) every 20 ms:

* RSS after the dataset is loaded (catalog + splits: grows with the catalog, by design),
* peak RSS during ``embed`` and its increase over the former (what streaming keeps flat),
* items/s and the number of shards written.

    python bench/embed_scale.py                 # 10k, 100k, 1M items (~25 min on 2 cores)
    python bench/embed_scale.py --smoke         # 2k and 8k items
    python bench/embed_scale.py --sizes 10000 100000

Writes ``bench/out/embed_scale[-smoke].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, write_json  # noqa: E402

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Documentary", "Western"]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Highest VmRSS seen by a 20 ms sampler thread while the block runs."""

    def __enter__(self):
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mib())


def write_dataset(root: Path, n_items: int, seed: int = 0) -> Path:
    """``n_items`` items and ``ceil(n_items / 3)`` users, user u reading items 3u..3u+2 (+1 wrap)."""
    rng = random.Random(seed)
    d = root / f"synthetic-{n_items}"
    if (d / "done").is_file():
        return d
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{d.name}.item", "w", encoding="utf-8") as fh:
        fh.write("item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\n")
        for i in range(n_items):
            genres = " ".join(rng.sample(GENRES, rng.randint(1, 3)))
            fh.write(f"i{i}\tItem number {i} of the catalog\t{1950 + rng.randrange(75)}\t{genres}\n")
    with open(d / f"{d.name}.inter", "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(-(-n_items // 3)):
            for t in range(4):
                fh.write(f"u{u}\ti{(3 * u + t) % n_items}\t{t}\n")
    (d / "done").write_text("")
    return d


def tiny_llm(root: Path) -> Path:
    path = root / "tiny-llm"
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from earec_core.backbone import default_llm_dir, load_tokenizer

    tok = load_tokenizer(default_llm_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def one(n_items: int, root: Path, shard_size: int) -> dict:
    """Runs in its own process: load the dataset, then embed, measuring RSS."""
    from earec_core.embed import embed
    from earec_core.workspace import Workspace

    data = write_dataset(root, n_items)
    llm = tiny_llm(root)
    start_rss = rss_mib()
    t0 = time.perf_counter()
    ws = Workspace(root / f"run-{n_items}", progress=False, dataset=str(data), llm=str(llm), k_core=0)
    n = len(ws.dataset.catalog.ids)
    load_s = time.perf_counter() - t0
    data_rss = rss_mib()
    t0 = time.perf_counter()
    with PeakRSS() as peak:
        out = embed(ws, "base:text", precision="fp32", batch_size=64, shard_size=shard_size, force=True)
    seconds = time.perf_counter() - t0
    info = json.loads((out / "info.json").read_text())
    return {"n_items": n, "shard_size": shard_size, "n_files": len(info["files"]), "load_s": round(load_s, 1),
            "embed_s": round(seconds, 1), "items_per_s": round(n / seconds, 1), "rss_start_mib": round(start_rss),
            "rss_after_dataset_mib": round(data_rss), "rss_peak_embed_mib": round(peak.peak),
            "embed_increase_mib": round(peak.peak - data_rss)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--shard-size", type=int, default=4096)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--dir", type=Path, default=None, help="Work folder (default: a temporary one).")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.dir, args.shard_size)))
        return
    sizes = [2_000, 8_000] if args.smoke else args.sizes
    rows = []
    with tempfile.TemporaryDirectory(prefix="earec-embed-scale-") as tmp, LoadSampler() as load:
        root = args.dir or Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "EAREC_LOAD_PLUGINS": "text,behavior,sasrec"}
        for n in sizes:
            proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--dir", str(root),
                                   "--shard-size", str(args.shard_size)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"size {n} failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    result = {"machine": machine(), "argv": sys.argv[1:], "rows": rows, "load": load.summary()}
    write_json(OUT_DIR / f"embed_scale{'-smoke' if args.smoke else ''}.json", result)


if __name__ == "__main__":
    main()
