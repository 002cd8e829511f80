"""Tokenizer, tiny model and model-directory I/O."""

import random
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from sftrl import cards
from sftrl.modeling import (
    EOS,
    PAD,
    ROLE_MARKERS,
    UNK,
    ModelDirError,
    TinyModelConfig,
    build_tiny_model,
    build_tokenizer,
    check_model_dir,
    freeze_beyond_text,
    is_hub_id,
    load_model,
    main,
    save_model,
)
from sftrl.spectral.weights import ModelWeights

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = TinyModelConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128, max_position_embeddings=128)


def compact_texts(n: int = 40) -> list[str]:
    """Real compact prompts, reference answers and feedback turns, ID and OOD."""
    rng = random.Random(1)
    texts = []
    for i in range(n):
        rule = cards.RULES["id" if i % 2 else "ood"]
        hand = cards.deal(rng, rule, 24)
        formula = rng.choice(cards.solutions(hand, rule, 24))
        episode = cards.Episode(hand, rule, 24, "compact")
        episode.step("numbers 1 2 3 ; 1 + 2 = 3")
        texts += [cards.prompt(hand, rule, 24, "compact"), cards.answer(hand, rule, formula, 24, "compact")]
        texts += [m["content"] for m in episode.messages[2:]]
    return texts


@pytest.fixture(scope="module")
def texts():
    return compact_texts()


@pytest.fixture(scope="module")
def tokenizer(texts):
    return build_tokenizer(texts)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_model(build_tiny_model(tokenizer, SMALL, seed=0), tokenizer, path)
    return path


def test_compact_texts_round_trip_word_for_word(tokenizer, texts):
    assert any(t.startswith("fail") for t in texts), "feedback turns are part of the sample"
    for text in texts:
        ids = tokenizer(text).input_ids
        assert tokenizer.unk_token_id not in ids, text
        assert len(ids) == len(text.split()), "one token per word"
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_every_integer_in_range_is_one_token_even_unseen():
    tokenizer = build_tokenizer([], max_number=50)
    for n in (-50, -3, 0, 7, 50):
        assert tokenizer.convert_tokens_to_ids(str(n)) != tokenizer.unk_token_id
    assert tokenizer("51").input_ids == [tokenizer.unk_token_id]


def test_vocabulary_does_not_depend_on_text_order(texts):
    assert build_tokenizer(texts).get_vocab() == build_tokenizer(texts[::-1]).get_vocab()


def test_special_tokens(tokenizer):
    assert (tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token) == (PAD, EOS, UNK)
    ids = {tokenizer.convert_tokens_to_ids(t) for t in [PAD, EOS, UNK, *ROLE_MARKERS.values()]}
    assert len(ids) == 6, "six distinct special tokens"
    text = "<|user|> target 24 <|end|>"
    assert tokenizer(text).input_ids[0] == tokenizer.convert_tokens_to_ids("<|user|>")
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == "target 24"
    assert tokenizer.padding_side == "left"


@pytest.mark.parametrize("with_system", [False, True])
def test_chat_template_prompt_is_token_prefix_and_answer_ends_with_eos(tokenizer, texts, with_system):
    prompt = [
        {"role": "user", "content": texts[0]},
        {"role": "assistant", "content": texts[1]},
        {"role": "user", "content": texts[2]},
    ]
    if with_system:
        prompt.insert(0, {"role": "system", "content": "target 24"})
    completion = [{"role": "assistant", "content": texts[1]}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(prompt + completion, return_dict=True)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    answer_ids = full_ids[len(prompt_ids) :]
    assert answer_ids == [*tokenizer(texts[1]).input_ids, tokenizer.eos_token_id]
    assert prompt_ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_tiny_model_defaults_are_about_three_million_parameters(tokenizer):
    model = build_tiny_model(tokenizer, TinyModelConfig(), seed=0)
    assert 2.5e6 < model.num_parameters() < 4e6
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_same_seed_same_weights(tokenizer):
    a, b = (build_tiny_model(tokenizer, SMALL, seed=3) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=False))


def test_save_load_round_trip_gives_identical_logits(model_dir, tokenizer, texts):
    model, loaded_tokenizer = load_model(model_dir)
    original = build_tiny_model(tokenizer, SMALL, seed=0)
    batch = loaded_tokenizer(texts[:4], return_tensors="pt", padding=True)
    assert loaded_tokenizer.padding_side == "left"
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, original(**batch).logits)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


@pytest.fixture(scope="module")
def vision_model_dir(tmp_path_factory, tokenizer, tiny_mllama):
    """A Llama 3.2 Vision-like checkpoint in bfloat16, as released (vision tower and all)."""
    path = tmp_path_factory.mktemp("models") / "mllama"
    model = tiny_mllama(tokenizer).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_vision_language_checkpoint_loads_in_its_own_class_with_what_text_skips_frozen(vision_model_dir):
    """AutoModelForCausalLM would give MllamaForCausalLM: no vision tower, other tensor names."""
    model, _ = load_model(vision_model_dir, dtype="bfloat16")
    assert type(model).__name__ == "MllamaForConditionalGeneration"
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    assert frozen == set(freeze_beyond_text(model))
    assert any(name.startswith("model.vision_model.") for name in frozen)
    assert any(name.startswith("model.multi_modal_projector.") for name in frozen)
    assert any(name.startswith("model.language_model.layers.1.cross_attn.") for name in frozen)
    text_layers = ("model.language_model.layers.0.", "model.language_model.layers.2.")
    assert not any(name.startswith(text_layers) for name in frozen)
    assert not any("embed_tokens" in name or "lm_head" in name for name in frozen)


def test_a_vision_language_checkpoint_is_saved_in_its_own_layout(vision_model_dir, tokenizer, tmp_path, texts):
    """What a stage saves pairs tensor by tensor with the base (spectra, restoration), and loads back the same."""
    model, loaded_tokenizer = load_model(vision_model_dir, dtype="bfloat16")
    save_model(model, loaded_tokenizer, tmp_path / "saved")
    base, saved = (ModelWeights(path) for path in (vision_model_dir, tmp_path / "saved"))
    assert {n: i.shape for n, i in saved.infos.items()} == {n: i.shape for n, i in base.infos.items()}
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in saved.names
    assert all(saved.get(name).equal(base.get(name)) for name in base.names)
    reloaded, _ = load_model(tmp_path / "saved", dtype="bfloat16")
    batch = loaded_tokenizer(texts[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)


def test_plain_auto_tokenizer_reads_the_saved_tokenizer_unchanged(model_dir, texts):
    """Other tools (vLLM, TRL given a path) load with AutoTokenizer; it must not swap the pipeline."""
    auto = AutoTokenizer.from_pretrained(model_dir)
    assert auto.decode(auto(texts[1]).input_ids, skip_special_tokens=True) == texts[1]


def test_check_model_dir_names_everything_missing(tmp_path, model_dir):
    with pytest.raises(ModelDirError, match="does not exist"):
        check_model_dir(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelDirError) as error:
        check_model_dir(empty)
    assert all(word in str(error.value) for word in (str(empty), "config.json", "weights", "tokenizer"))

    no_weights = tmp_path / "no_weights"
    shutil.copytree(model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelDirError, match="no weights") as error:
        load_model(no_weights)
    assert "tokenizer" not in str(error.value) and "config.json" not in str(error.value)

    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(model_dir, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ModelDirError, match="no tokenizer files"):
        check_model_dir(no_tokenizer)


def test_save_model_is_atomic(tmp_path, tokenizer):
    class Broken(Exception):
        pass

    model = build_tiny_model(tokenizer, SMALL, seed=0)
    target = tmp_path / "model"
    original = tokenizer.save_pretrained
    tokenizer.save_pretrained = lambda *a, **k: (_ for _ in ()).throw(Broken())
    try:
        with pytest.raises(Broken):
            save_model(model, tokenizer, target)
    finally:
        tokenizer.save_pretrained = original
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_hub_ids_pass_through_but_paths_do_not(tmp_path):
    assert is_hub_id("Qwen/Qwen2.5-7B-Instruct")
    assert not is_hub_id("results/tiny/models/base")
    assert not is_hub_id(str(tmp_path))
    assert not is_hub_id("./base")


def test_load_model_rejects_unknown_dtype(model_dir):
    with pytest.raises(ValueError, match="dtype"):
        load_model(model_dir, dtype="float8")


def test_check_command(tmp_path, model_dir, capsys):
    main(["check", str(model_dir)])
    assert "complete" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(model_dir), str(tmp_path)])
    assert exit_.value.code == 1 and str(tmp_path) in capsys.readouterr().err
