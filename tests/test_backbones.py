"""The backbone registry: building, embedding, heads, BatchNorm, weights offline and import."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advisor import backbones as B
from advisor.backbones import (
    UnknownBackboneError,
    WeightsUnavailableError,
    backbone_info,
    get_backbone,
    import_weights,
    list_backbones,
    weights_status,
)

# A spread of architectures: residual, plain VGG (no BatchNorm), depthwise, 1x1-conv head, timm.
SMALL = ["resnet18", "vgg16", "mobilenet_v3_small", "squeezenet1_0", "efficientnet_lite0"]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub folder with no weights in it, and no network allowed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() -> $TORCH_HOME/hub
    monkeypatch.setenv(B.OFFLINE_ENV, "1")
    return tmp_path / "hub"


def test_registry_has_every_torchvision_classifier_and_lite():
    import torchvision

    names = list_backbones()
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(names)
    assert {"efficientnet_lite0", "resnet18", "vgg16"} <= set(names)
    assert names == sorted(names)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownBackboneError) as err:
        get_backbone("resnet19", weights=None)
    text = str(err.value)
    assert "resnet19" in text and "resnet18" in text and "efficientnet_lite0" in text


@pytest.mark.parametrize("name", SMALL)
def test_random_weights_build_embed_and_replace_head(name):
    bb = get_backbone(name, weights=None)
    info = backbone_info(name)
    assert bb.pretrained is False and bb.weights == "random"
    assert bb.embedding_dim == info.embedding_dim > 0
    size = 64 if name != "squeezenet1_0" else 96
    with torch.no_grad():
        emb, logits = bb.embed(torch.randn(2, 3, size, size))
    assert emb.shape == (2, bb.embedding_dim)
    assert logits.shape == (2, 1000)
    head = bb.replace_head(7)
    assert bb.head is head
    with torch.no_grad():
        assert bb.forward(torch.randn(2, 3, size, size)).shape == (2, 7)
    head_ids = {id(p) for p in bb.head_parameters()}
    assert head_ids and not head_ids & {id(p) for p in bb.backbone_parameters()}
    assert (len(bb.batchnorm_layers()) > 0) == info.has_batchnorm


def test_vgg16_has_no_batchnorm_and_resnet18_stages():
    assert backbone_info("vgg16").has_batchnorm is False
    bb = get_backbone("resnet18", weights=None)
    stages = [bb.stage_of(n) for n, _ in bb.batchnorm_layers()]
    assert len(stages) == 20
    assert list(dict.fromkeys(stages)) == ["bn1", "layer1", "layer2", "layer3", "layer4"]


def test_preprocessing_comes_from_the_weights():
    import torchvision

    bb = get_backbone("resnet18", weights=None)
    expected = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert bb.preprocessing.mean == tuple(expected.mean)
    assert bb.preprocessing.image_size == expected.crop_size[0] == 224
    small = bb.preprocessing.at_size(112)
    assert small.image_size == 112 and small.resize_size == 128  # keeps 224/256
    from PIL import Image

    x = bb.eval_transform(112)(Image.new("RGB", (300, 200), (255, 0, 0)))
    assert x.shape == (3, 112, 112) and x.dtype == torch.float32


def test_lite0_real_weights_classify_a_cat():
    from skimage import data as skdata
    from PIL import Image

    bb = get_backbone("efficientnet_lite0")
    assert bb.pretrained and weights_status("efficientnet_lite0") == "bundled"
    x = bb.eval_transform()(Image.fromarray(skdata.chelsea())).unsqueeze(0)
    with torch.no_grad():
        probs = bb.forward(x).softmax(-1)[0]
    top = bb.categories[int(probs.argmax())]
    assert top in {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
    cat_mass = sum(float(probs[bb.categories.index(c)]) for c in ("tabby", "tiger cat", "Egyptian cat"))
    assert cat_mass > 0.5
    # the same weights see espresso in a cup of coffee: the ImageNet head is wired right
    x = bb.eval_transform()(Image.fromarray(skdata.coffee())).unsqueeze(0)
    with torch.no_grad():
        assert bb.categories[int(bb.forward(x).argmax())] == "espresso"


IMAGENET_VAL = Path(__file__).parent / "data" / "imagenet_val"


@pytest.mark.slow
@pytest.mark.parametrize("name, floor", [("efficientnet_lite0", 0.78), ("efficientnet_lite1", 0.85),
                                         ("efficientnet_lite2", 0.84)])
def test_offline_backbones_classify_real_imagenet_photos(name, floor):
    """ImageNet top-1 on 153 real ImageNet photos (hymenoptera's val: ants, class 310; bees, 309),
    through the registry's own preprocessing. With ImageNet's mean/std instead of the [-1, 1]
    scaling these TensorFlow checkpoints expect, lite0 falls to 0.67."""
    from advisor.data import load_image

    files = sorted(IMAGENET_VAL.glob("n*/*.jpg"))
    assert len(files) == 153
    labels = torch.tensor([int(f.parent.name[1:4]) for f in files])
    bb = get_backbone(name)
    tf = bb.preprocessing.eval_transform()
    with torch.inference_mode():
        preds = torch.cat([bb.forward(torch.stack([tf(load_image(f)) for f in files[i:i + 32]])).argmax(1)
                           for i in range(0, len(files), 32)])
    top1 = float((preds == labels).float().mean())
    assert top1 >= floor, f"{name}: ImageNet top-1 {top1:.3f} < {floor}"  # measured 0.804 / 0.882 / 0.850


def test_missing_weights_offline_give_a_clear_error(empty_hub):
    assert weights_status("resnet18") == "needs download"
    with pytest.raises(WeightsUnavailableError) as err:
        get_backbone("resnet18")
    text = str(err.value)
    assert "resnet18" in text and str(empty_hub) in text
    assert "efficientnet_lite0" in text  # says which backbones work offline
    assert "advisor weights import resnet18" in text


def test_import_weights_checks_then_caches(empty_hub, tmp_path):
    torch.manual_seed(3)
    source = get_backbone("resnet18", weights=None)
    file = tmp_path / "my_resnet18.pth"
    torch.save(source.model.state_dict(), file)
    dest = import_weights("resnet18", file)
    assert dest == B.weights_path("resnet18") and dest.is_file()
    assert weights_status("resnet18") == "cached"
    loaded = get_backbone("resnet18")  # the real torchvision path, served from the hub cache
    assert loaded.pretrained
    assert torch.equal(loaded.model.conv1.weight, source.model.conv1.weight)


def test_import_weights_refuses_a_wrong_checkpoint(empty_hub, tmp_path):
    file = tmp_path / "vgg.pth"
    torch.save(get_backbone("squeezenet1_0", weights=None).model.state_dict(), file)
    with pytest.raises(WeightsUnavailableError, match="does not fit resnet18"):
        import_weights("resnet18", file)
    assert not B.weights_path("resnet18").exists()
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="not a loadable"):
        import_weights("resnet18", bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_weights("resnet18", tmp_path / "missing.pth")
