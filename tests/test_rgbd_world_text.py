"""RGB-D world text encoders: tokenizer over the caption vocabulary, tiny CLIP and T5."""

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from rgbd_world.world import scenes as W  # noqa: E402
from rgbd_world.training.text import build_text_encoders, build_tokenizer, load_text_encoders, vocabulary  # noqa: E402


def test_tokenizer_round_trip_without_unknown_words():
    clip, t5 = build_tokenizer("clip"), build_tokenizer("t5")
    unk = vocabulary()["<unk>"]
    for i in range(100):
        caption = W.scene(i, size=16, supersample=1).caption
        ids = t5(caption).input_ids
        assert unk not in ids and ids[-1] == t5.eos_token_id
        assert t5.decode(ids, skip_special_tokens=True) == caption
        cids = clip(caption).input_ids
        assert cids[0] == clip.bos_token_id and cids[-1] == clip.eos_token_id and cids[1:-1] == ids[:-1]
    assert t5("A Red SPHERE").input_ids == t5("a red sphere").input_ids
    assert t5("a pink sphere").input_ids[1] == unk
    with pytest.raises(ValueError, match="kind"):
        build_tokenizer("bert")


@pytest.fixture(scope="module")
def encoders_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("te")
    build_text_encoders(root / "a", clip_dim=32, t5_dim=48, seed=0)
    build_text_encoders(root / "b", clip_dim=32, t5_dim=48, seed=0)
    build_text_encoders(root / "c", clip_dim=32, t5_dim=48, seed=1)
    return root


def test_weights_are_deterministic_by_seed(encoders_dir):
    for sub in ("clip", "t5"):
        a, b, c = (load_file(encoders_dir / r / sub / "model.safetensors") for r in "abc")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a if a[k].numel() > 1)


def test_trainer_loader_reads_the_folders_and_shapes_match(encoders_dir):
    enc = load_text_encoders(encoders_dir / "a")
    captions = ["a red sphere left of a blue cube", "a blue sphere left of a red cube", ""]
    t5, pooled = enc.encode(captions)
    assert t5.shape == (3, 32, 48) and pooled.shape == (3, 32)
    assert t5.dtype == pooled.dtype == torch.float32 and torch.isfinite(t5).all()
    assert not torch.allclose(pooled[0], pooled[1], atol=1e-3)  # word order matters to CLIP
    assert not torch.allclose(t5[0], t5[1], atol=1e-3)
    alone_t5, alone_pooled = enc.encode(captions[:1])
    torch.testing.assert_close(alone_pooled[0], pooled[0], atol=1e-5, rtol=1e-5)  # batch-independent
    torch.testing.assert_close(alone_t5[0], t5[0], atol=1e-5, rtol=1e-5)


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of heads"):
        build_text_encoders(tmp_path, clip_dim=33, t5_dim=48)
    with pytest.raises(FileNotFoundError, match="rgbd_world.training.text"):
        load_text_encoders(tmp_path / "missing")


def test_caption_word_groups_hold_exactly_the_words_of_the_tokenizer():
    from rgbd_world.training.text import SPECIAL_TOKENS, caption_word_groups

    words = [w for _, group in caption_word_groups() for phrase in group for w in phrase.split()]
    assert sorted(set(words)) == sorted(set(vocabulary()) - set(SPECIAL_TOKENS))


def test_readme_lists_the_caption_vocabulary_of_the_code():
    from pathlib import Path

    from rgbd_world.training.text import vocabulary_markdown

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert vocabulary_markdown() in readme, "README.md's caption vocabulary differs from the code: paste `python -m rgbd_world.training.text --vocabulary`"


@pytest.mark.parametrize("enabled_before", [True, False])
def test_loading_shows_no_transformers_progress_bars_and_restores_the_setting(encoders_dir, capfd, enabled_before):
    from transformers.utils import logging as hf_logging

    (hf_logging.enable_progress_bar if enabled_before else hf_logging.disable_progress_bar)()
    try:
        load_text_encoders(encoders_dir / "a")
        assert hf_logging.is_progress_bar_enabled() == enabled_before
    finally:
        hf_logging.enable_progress_bar()
    assert "Loading weights" not in capfd.readouterr().err
