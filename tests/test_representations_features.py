"""Features of two models on the same prompts: pooling, batching, next-token metrics, refusals."""

import numpy as np
import pytest
import torch

from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.representations import features
from sftrl.representations.features import FeatureConfig, IncomparableModels

WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "cards",
    "make",
    "24",
    "with",
    "each",
]
TINY = TinyModelConfig(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([" ".join(WORDS)])


def conversations(n, seed=0):
    rng = np.random.default_rng(seed)
    return [[{"role": "user", "content": " ".join(rng.choice(WORDS, size=rng.integers(3, 14)))}] for _ in range(n)]


def test_user_turn_ends_with_the_users_text(tokenizer):
    conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "four cards make 24"}]
    assert features.user_turn_text(tokenizer, conversation) == "<|system|> be brief <|end|><|user|> four cards make 24"


def test_user_turn_of_a_template_that_trims_messages():
    """Llama 3's template trims each message: the turn still ends at the user's last word."""

    class Trimming:
        def apply_chat_template(self, conversation, tokenize, add_generation_prompt):
            return "".join(f"<|{m['role']}|>\n\n{m['content'].strip()}<|eot|>" for m in conversation)

    conversation = [{"role": "user", "content": "four cards make 24\n"}]
    assert features.user_turn_text(Trimming(), conversation) == "<|user|>\n\nfour cards make 24"


def test_a_template_that_drops_the_users_text_is_refused():
    class Dropping:
        def apply_chat_template(self, conversation, tokenize, add_generation_prompt):
            return "<|user|><|eot|>"

    with pytest.raises(ValueError, match="cannot find the end of the user turn"):
        features.user_turn_text(Dropping(), [{"role": "user", "content": "four cards"}])


def test_pooled_features_do_not_depend_on_the_batch(tokenizer):
    """Left padding with position ids from the mask: each prompt's features are those it has alone."""
    model = build_tiny_model(tokenizer, TINY, seed=0).eval()
    other = build_tiny_model(tokenizer, TINY, seed=1).eval()
    prompts = conversations(9)
    cfg = FeatureConfig(positions=4, top_k=5, batch_size=4)
    batched = features.compare_pair((model, other), (tokenizer, tokenizer), prompts, cfg)
    for i, conversation in enumerate(prompts):
        ids = tokenizer(
            features.user_turn_text(tokenizer, conversation), add_special_tokens=False, return_tensors="pt"
        )["input_ids"]
        with torch.inference_mode():
            states = model.model(input_ids=ids).last_hidden_state[0, -4:]
        np.testing.assert_allclose(batched["a"][i], states.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    assert batched["a"].shape == (9, 32) and batched["js"].shape == (9,)
    assert np.all(batched["js"] > 0) and np.all(batched["js"] <= 1)


def test_a_model_against_itself_has_zero_divergence_and_full_overlap(tokenizer):
    model = build_tiny_model(tokenizer, TINY, seed=0).eval()
    out = features.compare_pair((model, model), (tokenizer, tokenizer), conversations(5), FeatureConfig(batch_size=2))
    np.testing.assert_array_equal(out["a"], out["b"])
    assert out["js"] == pytest.approx(np.zeros(5), abs=1e-12)
    assert out["topk"] == pytest.approx(np.ones(5))


def test_next_token_metrics_of_known_distributions():
    logits_a = torch.log(torch.tensor([[0.5, 0.5, 1e-30, 1e-30]]))
    logits_b = torch.log(torch.tensor([[1e-30, 1e-30, 0.5, 0.5]]))
    js, overlap = features.next_token_metrics(logits_a, logits_b, top_k=2)
    assert js.item() == pytest.approx(1.0, abs=1e-9)  # disjoint supports: 1 bit
    assert overlap.item() == 0.0


def test_pair_features_of_saved_models(tokenizer, tmp_path, tiny_mllama):
    """A Llama and a vision-language model both give their text decoder's pooled states."""
    for name, model in (("llama", build_tiny_model(tokenizer, TINY, seed=0)), ("mllama", tiny_mllama(tokenizer))):
        save_model(model, tokenizer, tmp_path / name)
        prompts = {"ood": (["u0", "u1", "u2"], conversations(3))}
        out = features.pair_features(
            (name, name), (tmp_path / name, tmp_path / name), prompts, FeatureConfig(), dtype="float32", device="cpu"
        )
        assert list(out["ood"]["uids"]) == ["u0", "u1", "u2"]
        np.testing.assert_array_equal(out["ood"]["a"], out["ood"]["b"])


def test_incomparable_models_are_refused_naming_both(tokenizer, tmp_path):
    save_model(build_tiny_model(tokenizer, TINY, seed=0), tokenizer, tmp_path / "small")
    wide = TinyModelConfig(**{**TINY.__dict__, "hidden_size": 64})
    save_model(build_tiny_model(tokenizer, wide, seed=0), tokenizer, tmp_path / "wide")
    other_tokenizer = build_tokenizer(["entirely different words here"])
    save_model(build_tiny_model(other_tokenizer, TINY, seed=0), other_tokenizer, tmp_path / "other")
    shape = {name: features.model_shape(tmp_path / name) for name in ("small", "wide", "other")}
    with pytest.raises(IncomparableModels, match=r"small and wide.*hidden size: 32 vs 64"):
        features.check_comparable(("small", shape["small"]), ("wide", shape["wide"]))
    with pytest.raises(IncomparableModels, match=r"small and other.*tokenizer"):
        features.check_comparable(("small", shape["small"]), ("other", shape["other"]))
    features.check_comparable(("small", shape["small"]), ("small again", features.model_shape(tmp_path / "small")))
    with pytest.raises(IncomparableModels, match="small and wide"):
        features.pair_features(
            ("small", "wide"),
            (tmp_path / "small", tmp_path / "wide"),
            {},
            FeatureConfig(),
            dtype="float32",
            device="cpu",
        )
