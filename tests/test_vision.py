"""The vision modality plugin on a small real multi-modal fixture (``tests/fixtures/vision-shop``:
scikit-image photos as product images).  Tiny CLIP vision towers are built in-process from a
config and saved as local HF folders, so the plugin loads them exactly as it loads a real
checkpoint (``--modality-option vision.encoder=PATH``)."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from earec_core.modality import ModalityContext  # noqa: E402
from earec_core.data import load_dataset, resolve_media_path  # noqa: E402
from earec_core.errors import DataError, EarecError  # noqa: E402
from earec_core.prompt import IGNORE_INDEX, PromptBuilder, PromptError, collate  # noqa: E402
from earec_vision import VisionModality  # noqa: E402
from earec_vision.images import open_image, to_rgb  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "vision-shop"


def save_tiny_clip(path: Path, *, image_size: int, patch_size: int, hidden: int, layers: int, heads: int,
                   full_clip: bool = False) -> Path:
    """A randomly initialised CLIP vision tower + a CLIPImageProcessor for its input size."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, image_size=image_size, patch_size=patch_size,
                              projection_dim=16)
    if full_clip:  # the layout of real checkpoints such as openai/clip-vit-large-patch14-336
        text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        model = CLIPModel(CLIPConfig(vision_config=vision.to_dict(), text_config=text, projection_dim=16))
    else:
        model = CLIPVisionModel(vision)
    model.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """16 patches of width 32 per image, 2 layers."""
    return save_tiny_clip(tmp_path_factory.mktemp("clip"), image_size=32, patch_size=8, hidden=32, layers=2, heads=4)


@pytest.fixture(scope="module")
def shop():
    return load_dataset(FIXTURE)


def prepare(dataset, run_dir: Path, **options) -> tuple[VisionModality, dict]:
    modality = VisionModality(**options)
    facts = modality.prepare(ModalityContext(dataset=dataset, encoders_dir=run_dir / "encoders"))
    return modality, facts


# -- registration -------------------------------------------------------------------------------------
def test_vision_is_registered_through_its_entry_point():
    from importlib.metadata import entry_points

    from earec_core.plugins import registry

    assert any(ep.name == "vision" and ep.value == "earec_vision" for ep in entry_points(group="earec"))
    assert registry().modality("vision") is VisionModality
    assert VisionModality.placeholder == "<image>"


# -- the fixture ---------------------------------------------------------------------------------------
def test_fixture_is_small_real_and_loads_with_images(shop):
    files = sorted((FIXTURE / "images").iterdir())
    assert len(files) == 46 and all(f.stat().st_size <= 30_000 for f in files)
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    assert shop.stats["items"] == 48 and shop.directory == FIXTURE
    item = shop.catalog["p01"]
    assert item.media == {"image": "images/p01.jpg"} and "image" not in item.attributes
    assert item.attributes["category"] == "Space" and item.related
    assert "image" not in shop.catalog["p47"].media  # the gift card has no picture


# -- encoder features ----------------------------------------------------------------------------------
def test_patch_features_are_the_chosen_layer_without_cls(shop, tiny_clip, tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionModel

    mod, facts = prepare(shop, tmp_path, encoder=str(tiny_clip), features="patch", layer=-2)
    assert (mod.tokens_per_item, mod.feature_dim) == (16, 32)
    assert facts["with_features"] == 46 and facts["without_image"] == 2 and facts["skipped"] == {}
    ids = ["p01", "p38", "p43"]  # JPEG, RGBA PNG, animated GIF
    feats = mod.encode(ids)
    assert feats.shape == (3, 16, 32) and feats.dtype == torch.float32
    # the same numbers straight from transformers: hidden_states[-2], CLS (position 0) dropped
    model = CLIPVisionModel.from_pretrained(tiny_clip).eval()
    image, _, _ = open_image(FIXTURE / "images" / "p01.jpg")
    pixels = CLIPImageProcessor.from_pretrained(tiny_clip)(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][0, 1:]
    torch.testing.assert_close(feats[0], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(feats[0], feats[1])


def test_pooled_features_are_one_token(shop, tiny_clip, tmp_path):
    mod, facts = prepare(shop, tmp_path, encoder=str(tiny_clip), features="pooled")
    assert mod.encode(["p01", "p02"]).shape == (2, 1, 32) and facts["tokens_per_item"] == 1
    frag = mod.fragment(shop.catalog["p01"])
    assert frag.text.count("<image>") == len(frag.slot_items) and frag.slot_items[0] == "p01"


def test_a_full_clip_checkpoint_loads_its_vision_tower(shop, tmp_path):
    path = save_tiny_clip(tmp_path / "full", image_size=32, patch_size=16, hidden=16, layers=2, heads=2, full_clip=True)
    mod, _ = prepare(shop, tmp_path / "run", encoder=str(path), features="patch")
    assert mod.encode(["p05"]).shape == (1, 4, 16)


def test_features_are_deterministic_cached_and_restored(shop, tiny_clip, tmp_path):
    a, _ = prepare(shop, tmp_path / "a", encoder=str(tiny_clip), batch_size=16)
    b, _ = prepare(shop, tmp_path / "b", encoder=str(tiny_clip), batch_size=16)
    c, _ = prepare(shop, tmp_path / "c", encoder=str(tiny_clip), batch_size=5)
    ids = shop.catalog.ids[:46]
    assert torch.equal(a.encode(ids), b.encode(ids))
    torch.testing.assert_close(a.encode(ids), c.encode(ids), rtol=1e-4, atol=1e-5)  # batching: float noise only
    restored = VisionModality(encoder=str(tiny_clip))
    restored.load(tmp_path / "a" / "encoders" / "vision")
    assert torch.equal(restored.encode(ids), a.encode(ids)) and restored.tokens_per_item == 16
    assert restored.fragment(shop.catalog["p47"]) is None  # no image: modality left out of its prompt


def test_missing_or_bad_encoder_is_a_clear_error(shop, tmp_path):
    with pytest.raises(EarecError, match="vision.encoder="):
        prepare(shop, tmp_path)
    with pytest.raises(EarecError, match="not found"):
        prepare(shop, tmp_path, encoder=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EarecError, match="no config.json"):
        prepare(shop, tmp_path, encoder=str(tmp_path / "empty"))


def test_bad_options_are_clear_errors(shop, tiny_clip, tmp_path):
    with pytest.raises(EarecError, match="features='cls'"):
        prepare(shop, tmp_path, encoder=str(tiny_clip), features="cls")
    with pytest.raises(EarecError, match="layer=7 is out of range"):
        prepare(shop, tmp_path, encoder=str(tiny_clip), layer=7)


# -- bad images ----------------------------------------------------------------------------------------
def _bomb_png(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))


@pytest.fixture
def shop_with_bad_images(tmp_path) -> Path:
    """The fixture with a dozen items' images replaced by every kind of bad (and odd-but-valid) file."""
    root = tmp_path / "vision-shop"
    shutil.copytree(FIXTURE, root)
    img = root / "images"
    good = (img / "p01.jpg").read_bytes()
    (img / "zero.jpg").write_bytes(b"")
    (img / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (img / "corrupt.jpg").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    _bomb_png(img / "bomb.png", 100_000, 100_000)
    Image.new("CMYK", (40, 30), (0, 200, 200, 0)).save(img / "cmyk.jpg")
    Image.fromarray(np.tile(np.arange(0, 65536, 1024, dtype=np.uint16), (20, 1))).save(img / "deep16.png")
    pal = Image.new("P", (20, 20))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(img / "palette.png", transparency=1)
    (tmp_path / "outside.jpg").write_bytes(good)
    replace = {"p02": "images/nope.jpg", "p03": "images/zero.jpg", "p04": "images/truncated.jpg",
               "p05": "images/corrupt.jpg", "p06": "images/bomb.png", "p07": "../outside.jpg",
               "p08": "/etc/hosts", "p09": "images/cmyk.jpg", "p10": "images/deep16.png",
               "p11": "images/palette.png", "p12": "images"}
    item_file = root / "vision-shop.item"
    lines = item_file.read_text(encoding="utf-8").splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        cols = line.split("\t")
        if cols[0] in replace:
            cols[-1] = replace[cols[0]]
        out.append("\t".join(cols))
    item_file.write_text("\n".join(out) + "\n", encoding="utf-8")
    return root


def test_bad_images_are_counted_and_skipped_never_crash(shop_with_bad_images, tiny_clip, tmp_path, caplog):
    ds = load_dataset(shop_with_bad_images)
    with caplog.at_level("WARNING", logger="earec.vision"):
        mod, facts = prepare(ds, tmp_path / "run", encoder=str(tiny_clip), features="pooled")
    assert facts["skipped"] == {"missing": 2, "empty_file": 1, "unreadable": 2, "too_large": 1, "unsafe_path": 2}
    assert facts["with_features"] == 46 - 8 and facts["without_image"] == 2
    assert "8 of 46 images skipped" in caplog.text
    for iid in ("p02", "p03", "p04", "p05", "p06", "p07", "p08", "p12"):
        assert not mod.has_image(iid) and mod.fragment(ds.catalog[iid]) is None
    for iid in ("p09", "p10", "p11", "p38", "p43"):  # CMYK, 16-bit, palette+transparency, RGBA, animated GIF
        assert mod.has_image(iid) and torch.isfinite(mod.encode([iid])).all()
    # a bad image never becomes a related-item slot either
    for item in ds.catalog:
        frag = mod.fragment(item)
        assert frag is None or all(mod.has_image(i) for i in frag.slot_items)
    written = json.loads(json.dumps(facts))  # what the workspace writes to facts.json
    assert written["skipped_examples"]


def test_pixel_limit_is_an_option(tiny_clip, tmp_path):
    Image.new("RGB", (200, 100), "blue").save(tmp_path / "wide.png")
    assert open_image(tmp_path / "wide.png", max_pixels=10_000)[1] == "too_large"
    assert open_image(tmp_path / "wide.png", max_pixels=20_000)[0].size == (200, 100)


def test_odd_modes_become_sensible_rgb(tmp_path):
    deep = Image.fromarray(np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (4, 1)))
    rgb = np.asarray(to_rgb(deep))
    assert rgb.shape == (4, 256, 3) and rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 254 and rgb[0, 128, 0] == 128  # scaled, not clipped white
    assert np.asarray(to_rgb(Image.fromarray(np.full((3, 3), 7.5, dtype=np.float32)))).max() == 0  # flat float
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red: white product background
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first, reason, _ = open_image(tmp_path / "anim.gif")
    assert reason is None and np.asarray(first)[0, 0].tolist() == [255, 0, 0]  # the first frame


def test_media_paths_cannot_escape_the_dataset_folder(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    assert resolve_media_path(tmp_path / "data", "images/a.jpg") == (tmp_path / "data" / "images" / "a.jpg").resolve()
    for bad in ("../secret.jpg", "images/../../secret.jpg", "/etc/passwd", ""):
        with pytest.raises(DataError):
            resolve_media_path(tmp_path / "data", bad)


# -- prompts under a token budget ---------------------------------------------------------------------
def test_576_patch_tokens_per_image_keep_the_answer_and_as_many_related_images_as_fit(tmp_path, tokenizer,
                                                                                       tiny_llm_dir):
    """The reference lost the answer to truncation for 4+ images at 576 tokens with a 2048 limit."""
    from transformers import AutoModelForCausalLM

    from earec_core.align import anchor_loss

    clip = save_tiny_clip(tmp_path / "clip576", image_size=96, patch_size=4, hidden=8, layers=1, heads=2)
    ds = load_dataset(FIXTURE, n_related=5)
    mod, _ = prepare(ds, tmp_path / "run", encoder=str(clip), features="patch", n_related=5)
    assert mod.tokens_per_item == 576
    item = next(it for it in ds.catalog if mod.has_image(it.id) and sum(map(mod.has_image, it.related)) >= 4)
    builder = PromptBuilder(tokenizer, {"vision": mod}, max_length=2048)
    sample = builder.build(item, with_answer=True)
    assert len(sample.input_ids) <= 2048
    answer = [t for t in sample.labels if t != IGNORE_INDEX]
    assert answer[-1] == tokenizer.eos_token_id and tokenizer.decode(answer[:-1]) == item.anchor
    assert sample.input_ids[-len(answer):] == answer
    # 3 images (own + 2 related) = 1728 slot positions fit; a 4th (2304) cannot
    assert [s.item_id for s in sample.slots][0] == item.id and len(sample.slots) == 3
    assert all(s.k == 576 for s in sample.slots)
    roomy = PromptBuilder(tokenizer, {"vision": mod}, max_length=4096).build(item, with_answer=True)
    assert len(roomy.slots) == 1 + min(5, sum(map(mod.has_image, item.related)))
    # and it trains: splice 3 x 576 projected patch tokens into a tiny Llama, finite loss on the answer
    llm = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    projector = mod.build_projector(mod.feature_dim, llm.config.hidden_size)
    batch = collate([sample], tokenizer.pad_token_id)
    assert batch.slot_positions["vision"].numel() == 3 * 576
    with torch.no_grad():
        assert torch.isfinite(anchor_loss(llm, batch, {"vision": mod}, {"vision": projector}))


def test_related_images_are_dropped_one_at_a_time(shop, tiny_clip, tmp_path, tokenizer):
    mod, _ = prepare(shop, tmp_path, encoder=str(tiny_clip), features="patch", n_related=3)
    item = next(it for it in shop.catalog if mod.has_image(it.id) and sum(map(mod.has_image, it.related)) >= 3)
    full = PromptBuilder(tokenizer, {"vision": mod}, max_length=4096).build(item, with_answer=True)
    assert len(full.slots) == 4
    sizes = []
    for budget in range(len(full.input_ids), 0, -2):
        try:
            sample = PromptBuilder(tokenizer, {"vision": mod}, max_length=budget).build(item, with_answer=True)
        except PromptError:  # not even the item's own image fits any more
            break
        assert len(sample.input_ids) <= budget and sample.slots[0].item_id == item.id
        assert [s.item_id for s in sample.slots] == [s.item_id for s in full.slots][: len(sample.slots)]
        sizes.append(len(sample.slots))
    assert sizes == sorted(sizes, reverse=True) and set(sizes) == {4, 3, 2, 1}  # one related image at a time


# -- CLI -----------------------------------------------------------------------------------------------
def test_earec_align_vision_through_the_cli(tiny_clip, tiny_llm_dir, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from earec_core.cli import cli

    run_dir = tmp_path / "run"
    args = ["align", "--modality", "vision", "--run-dir", run_dir, "--dataset", FIXTURE, "--llm", tiny_llm_dir,
            "--quiet", "--k-core", "3", "--align-items", "8", "--batch-size", "8",
            "--modality-option", f"vision.encoder={tiny_clip}", "--modality-option", "vision.features=patch",
            "--modality-option", "vision.layer=-2"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = run_dir / "adapters" / "vision"
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    proj = load_file(str(out / "projector.safetensors"))
    assert proj["0.weight"].shape == (64, 32)  # mlp2x_gelu: d_enc 32 -> LLM width 64
    info = json.loads((out / "modality.json").read_text())
    assert info["tokens_per_item"] == 16 and info["feature_dim"] == 32 and info["train_log"]["samples"] == 8
    assert info["options"] == {"encoder": str(tiny_clip), "features": "patch", "layer": -2}
    facts = json.loads((run_dir / "encoders" / "vision" / "facts.json").read_text())
    assert facts["with_features"] == 46 and facts["skipped"] == {}
    settings = json.loads((run_dir / "run.json").read_text())
    assert settings["modality_options"]["vision"]["encoder"] == str(tiny_clip)


def test_modality_options_merge_into_run_json(tmp_path):
    from click import BadParameter

    from earec_core.cli import _modality_options
    from earec_core.workspace import Workspace

    (tmp_path / "run.json").write_text(json.dumps({"modality_options": {"vision": {"encoder": "/m/clip"},
                                                                         "behavior": {"n_related": 2}}}))
    given = _modality_options(["vision.features=pooled", "vision.layer=-3", "text.max_chars=200"])
    merged = Workspace(tmp_path, progress=False, modality_options=given)["modality_options"]
    assert merged == {"vision": {"encoder": "/m/clip", "features": "pooled", "layer": -3},
                      "behavior": {"n_related": 2}, "text": {"max_chars": 200}}
    assert json.loads((tmp_path / "run.json").read_text())["modality_options"] == merged
    with pytest.raises(BadParameter):
        _modality_options(["features=pooled"])


# -- open_clip (only where the package is installed) ---------------------------------------------------
def test_open_clip_checkpoint_when_installed(shop, tmp_path):
    open_clip = pytest.importorskip("open_clip")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "earec-tiny-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    model = open_clip.create_model("earec-tiny-vit")
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    patch, _ = prepare(shop, tmp_path / "a", encoder=str(tmp_path / "tiny.pt"), open_clip_model="earec-tiny-vit",
                       features="patch")
    pooled, _ = prepare(shop, tmp_path / "b", encoder=str(tmp_path / "tiny.pt"), open_clip_model="earec-tiny-vit",
                        features="pooled")
    assert patch.encode(["p01"]).shape == (1, 16, 32) and pooled.encode(["p01"]).shape == (1, 1, 16)


def test_a_corrupt_feature_cache_is_an_artifact_error(shop, tiny_clip, tmp_path):
    from earec_core.errors import ArtifactError

    prepare(shop, tmp_path, encoder=str(tiny_clip), features="pooled")
    cache = tmp_path / "encoders" / "vision" / "features.safetensors"
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="delete it to recompute"):
        VisionModality().load(cache.parent)
    with pytest.raises(ArtifactError, match="cache missing"):
        VisionModality().load(tmp_path / "elsewhere")
